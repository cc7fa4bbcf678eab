"""Content capture off removes all content; secrets never appear, even with content on.

A canary string is placed in chat messages, chain inputs and outputs, prompt-template variables,
tool arguments and results, retrieved documents, metadata values and error messages of real
LangChain runnables (a prompt | chat model | parser chain, ``@tool`` tools, a retriever and a real
``create_agent`` agent). Every exported byte is then searched: the spans as OTLP protobuf (span
names, attributes, events, status), the MLflow store written by the real ``MlflowSpanExporter``
(the embedded sqlite file and every artifact file), the spool files of the same records, and the
log output.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import tool
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import SecretStr

from otel_mlflow._export.exporter import MlflowSpanExporter
from otel_mlflow._record import build_record, encode_otlp
from otel_mlflow._delivery.spool import Spool
from otel_mlflow._tracing.handler import OtelTracer
from otel_mlflow.testing.gemini_emulator import GeminiEmulator
from tests._support.fake_models import FakeChatModel, agent_responder

CANARY = "CANARY-q7Zx"
# Secrets no value pattern knows: only key-based redaction can hide them.
PLAIN_SECRETS = {
    "google_api_key": "plain-secret-one-5521",
    "api_key": "plain-secret-two-9034",
    "authorization": "plain-secret-three-7711",
    "password": "plain-secret-four-3388",
    "x-api-key": "plain-secret-five-6402",
}
# Secrets recognised by their shape, wherever they appear (also in free text).
GOOGLE_KEY = "AIzaSyC4mP9xQ2vL8nR5tW1yB6kJ3hF0dG7sE2a"
BEARER = "Bearer ya29.c0AfH6SMBabc123def456ghi789"


class SecretiveModel(FakeChatModel):
    """A chat model whose constructor kwargs hold credentials, like a provider integration."""

    google_api_key: SecretStr | None = None
    api_key: str | None = None
    default_headers: dict[str, str] = {}

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {**super()._identifying_params, "api_key": self.api_key,
                "default_headers": self.default_headers}


class CanaryRetriever(BaseRetriever):
    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        return [Document(page_content=f"doc about {CANARY} for {query}",
                         metadata={"source": f"src-{CANARY}"})]


@tool
def lookup(topic: str) -> str:
    """Look a topic up."""
    return f"facts on {topic}: {CANARY}-result"


def _provider(tmp_path: Path, tracking_uri: str) -> tuple[TracerProvider, InMemorySpanExporter,
                                                           MlflowSpanExporter]:
    memory = InMemorySpanExporter()
    mlflow_exporter = MlflowSpanExporter(
        tracking_uri, "content-capture", spool_dir=str(tmp_path / "spool"), grace_seconds=0.0,
        retry_max_seconds=5.0,
    )
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    provider.add_span_processor(SimpleSpanProcessor(mlflow_exporter))
    return provider, memory, mlflow_exporter


@pytest.fixture
def store_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh sqlite store per test, artifacts beside it.

    An absolute path: MLflow caches stores by URI, so the relative ``sqlite:///mlflow.db`` of a
    previous test would keep pointing at that test's directory.
    """
    monkeypatch.chdir(tmp_path)
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def _run_app(tracer: OtelTracer) -> None:
    """Every kind of content, each carrying the canary (and some secrets)."""
    config: dict[str, Any] = {
        "callbacks": [tracer],
        "metadata": {"note": f"meta {CANARY}", "nested": {"deep": [f"x{CANARY}"]},
                     **PLAIN_SECRETS, "headers": {"Authorization": BEARER}},
    }
    prompt = ChatPromptTemplate.from_messages(
        [("system", "You are {persona}."), ("human", "{question} (key {key})")]
    )
    model = SecretiveModel(google_api_key=SecretStr(PLAIN_SECRETS["google_api_key"]),
                           api_key=PLAIN_SECRETS["api_key"],
                           default_headers={"Authorization": BEARER})
    chain = prompt | model.bind(api_key=PLAIN_SECRETS["api_key"],
                                headers={"x-api-key": PLAIN_SECRETS["x-api-key"]}) \
        | StrOutputParser()
    answer = chain.invoke(
        {"persona": f"persona {CANARY}", "question": f"question {CANARY}", "key": GOOGLE_KEY},
        config=config,
    )
    assert CANARY in answer  # the echo model repeats the question

    chain.batch([{"persona": "p", "question": f"batch {CANARY}", "key": "k"}], config=config)
    list(chain.stream({"persona": "p", "question": f"stream {CANARY}", "key": "k"},
                      config=config))

    RunnableLambda(lambda topic: lookup.invoke({"topic": topic}), name="tool_step").invoke(
        f"tool-arg {CANARY}", config=config)
    CanaryRetriever().invoke(f"query {CANARY}", config=config)

    def fail(_: Any) -> Any:
        raise ValueError(f"error payload {CANARY} password={PLAIN_SECRETS['password']}")

    with pytest.raises(ValueError):
        RunnableLambda(fail, name="failing_step").invoke({"x": CANARY}, config=config)

    agent = create_agent(
        FakeChatModel(responder=agent_responder("lookup", {"topic": f"agent {CANARY}"})),
        [lookup], name="canary_agent",
    )
    agent.invoke({"messages": [("user", f"agent question {CANARY}")]}, config=config)


def _span_bytes(spans: tuple[ReadableSpan, ...]) -> bytes:
    # OTLP protobuf holds span names, attributes, events, links and status text; the JSON
    # view adds the Python-side representation for a readable failure message.
    readable = json.dumps([json.loads(s.to_json()) for s in spans], ensure_ascii=False)
    return encode_otlp(spans) + readable.encode("utf-8")


def _spool_bytes(spans: tuple[ReadableSpan, ...], directory: Path) -> bytes:
    by_trace: dict[int, list[ReadableSpan]] = {}
    for span in spans:
        by_trace.setdefault(span.context.trace_id, []).append(span)
    spool = Spool(directory, tracking_uri="sqlite:///unused.db")
    for trace_spans in by_trace.values():
        assert spool.put(build_record(trace_spans))
    spool.close()
    return _files_bytes(directory)


def _files_bytes(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


def _where(needle: str, haystack: bytes) -> str:
    at = haystack.find(needle.encode("utf-8"))
    return haystack[max(0, at - 200): at + 200].decode("utf-8", "replace") if at >= 0 else ""


def _exported(tmp_path: Path, tracking_uri: str, capture_content: bool,
              caplog: pytest.LogCaptureFixture) -> dict[str, bytes]:
    provider, memory, mlflow_exporter = _provider(tmp_path, tracking_uri)
    tracer = OtelTracer(provider, capture_content=capture_content)
    with caplog.at_level(logging.DEBUG):
        _run_app(tracer)
        assert mlflow_exporter.force_flush(60_000)
        provider.shutdown()
    spans = memory.get_finished_spans()
    assert len(spans) >= 15
    store = tmp_path / "store"
    store.mkdir()
    return {
        "spans": _span_bytes(spans),
        "mlflow": _files_bytes(Path.cwd()),  # embedded sqlite file + artifact directories
        "spool": _spool_bytes(spans, tmp_path / "spool-copy"),
        "logs": caplog.text.encode("utf-8"),
    }


def test_content_off_no_canary_in_any_exported_byte(
    store_uri: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    exported = _exported(tmp_path, store_uri, False, caplog)
    assert len(exported["mlflow"]) > 10_000  # the store was written
    for where, data in exported.items():
        assert CANARY.encode() not in data, f"{where}: ...{_where(CANARY, data)}..."


def test_content_on_canary_everywhere_but_no_secret(
    store_uri: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    exported = _exported(tmp_path, store_uri, True, caplog)
    for where in ("spans", "mlflow", "spool"):
        assert CANARY.encode() in exported[where], where
    for kind in ("question", "persona", "tool-arg", "result", "doc about", "error payload",
                 "agent question", "meta", "batch", "stream"):
        assert f"{kind} {CANARY}".encode() in exported["spans"] or \
            f"{kind}: {CANARY}".encode() in exported["spans"] or \
            f"{CANARY}-{kind}".encode() in exported["spans"], kind
    secrets = [*PLAIN_SECRETS.values(), GOOGLE_KEY, BEARER.split()[1]]
    for where, data in exported.items():
        for secret in secrets:
            assert secret.encode() not in data, f"{where}: {secret}: ...{_where(secret, data)}..."


def test_real_vertex_client_credentials_and_headers_never_exported(
    gemini_emulator: GeminiEmulator, store_uri: str, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    provider, memory, mlflow_exporter = _provider(tmp_path, store_uri)
    tracer = OtelTracer(provider, capture_content=True)
    llm = gemini_emulator.chat_model(
        "gemini-2.0-flash", additional_headers={"Authorization": BEARER,
                                                "x-api-key": PLAIN_SECRETS["x-api-key"]},
    )
    with caplog.at_level(logging.DEBUG):
        reply = llm.invoke(f"hello {CANARY} with {GOOGLE_KEY}",
                           config={"callbacks": [tracer],
                                   "metadata": {"api_key": PLAIN_SECRETS["api_key"]}})
        assert mlflow_exporter.force_flush(60_000)
        provider.shutdown()
    assert CANARY in str(reply.content)
    spans = memory.get_finished_spans()
    data = _span_bytes(spans) + _files_bytes(Path.cwd()) + caplog.text.encode()
    assert CANARY.encode() in data
    for secret in (PLAIN_SECRETS["x-api-key"], PLAIN_SECRETS["api_key"], GOOGLE_KEY,
                   BEARER.split()[1]):
        assert secret.encode() not in data, f"{secret}: ...{_where(secret, data)}..."
