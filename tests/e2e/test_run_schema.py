"""The run schema, read back through MlflowClient from a REAL ``mlflow server`` and from the
embedded default store (``sqlite:///mlflow.db`` in the working directory).

The app is a real LangChain app traced by ``OtelTracer``: ``prompt | chat model | parser`` plus a
real ``@tool`` call inside a named ``RunnableLambda``, and one invocation that fails after the
model call. The chat model is LangChain's ``GenericFakeChatModel`` (no network) reporting itself as
Gemini on Vertex AI, with ``usage_metadata`` so token sums can be checked.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableConfig, RunnableLambda
from langchain_core.tools import tool
from mlflow.tracking import MlflowClient
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

import otel_mlflow._record as R
from otel_mlflow._export.exporter import MlflowSpanExporter
from otel_mlflow._sink.runs import MlflowWriter
from otel_mlflow._tracing.handler import OtelTracer

USAGE = [
    {"input_tokens": 12, "output_tokens": 5, "total_tokens": 20,
     "input_token_details": {"cache_read": 2}, "output_token_details": {"reasoning": 3}},
    {"input_tokens": 8, "output_tokens": 4, "total_tokens": 12},
]


class FakeGemini(GenericFakeChatModel):
    """GenericFakeChatModel that reports itself like ChatVertexAI (provider, model, params)."""

    model: str = "gemini-2.5-flash"
    temperature: float = 0.2
    max_output_tokens: int = 128

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
        return {"ls_provider": "google_vertexai", "ls_model_name": self.model,
                "ls_model_type": "chat", "ls_temperature": self.temperature,
                "ls_max_tokens": self.max_output_tokens}


@tool
def weather(city: str) -> str:
    """Today's weather in a city."""
    return f"{city}: sunny"


def build_app(replies: list[AIMessage]) -> Any:
    model = FakeGemini(messages=iter(replies))
    chain = (ChatPromptTemplate.from_messages([("system", "Answer in one word"),
                                               ("human", "{question}")])
             | model | StrOutputParser())

    def run(inputs: dict[str, Any], config: RunnableConfig) -> str:
        answer = chain.invoke(inputs, config)
        report = weather.invoke({"city": answer}, config)
        if inputs.get("fail"):
            raise ValueError("the app failed after the model call")
        return report

    return RunnableLambda(run).with_config(run_name="weather_app")


@pytest.fixture(params=["server", "embedded"])
def tracking_uri(request: pytest.FixtureRequest) -> str:
    if request.param == "server":
        return str(request.getfixturevalue("mlflow_server").url)
    return str(request.getfixturevalue("embedded_tracking_uri"))


@pytest.fixture
def pipeline(tracking_uri: str, tmp_path: Path) -> Iterator[tuple[OtelTracer, TracerProvider,
                                                                MlflowSpanExporter, str]]:
    experiment = f"schema-{uuid.uuid4().hex[:8]}"
    exporter = MlflowSpanExporter(tracking_uri, experiment, grace_seconds=0.2,
                                  spool_dir=str(tmp_path / "spool"))
    provider = TracerProvider(resource=Resource.create({"service.name": "weather-svc"}))
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=50))
    yield OtelTracer(provider), provider, exporter, experiment
    provider.shutdown()


def _drain(provider: TracerProvider, exporter: MlflowSpanExporter) -> None:
    assert provider.force_flush()
    assert exporter.force_flush(120_000), exporter.delivery.stats


def _runs(client: MlflowClient, experiment: str) -> list[Any]:
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None
    return client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])


def _artifact(client: MlflowClient, run_id: str, path: str, tmp: Path) -> Any:
    local = client.download_artifacts(run_id, path, str(tmp))
    return json.loads(Path(local).read_text(encoding="utf-8"))


def test_one_run_per_trace_with_the_schema(
    pipeline, tracking_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tracer, provider, exporter, experiment = pipeline
    app = build_app([AIMessage(content="Tokyo", usage_metadata=USAGE[0]),
                     AIMessage(content="Kyoto", usage_metadata=USAGE[1])])
    out = app.invoke({"question": "日本の首都は？"},
                     config={"callbacks": [tracer], "tags": ["prod"],
                             "metadata": {"user": "u-42"}})
    assert out == "Tokyo: sunny"
    with pytest.raises(ValueError):
        app.invoke({"question": "Second city?", "fail": True}, config={"callbacks": [tracer]})
    _drain(provider, exporter)

    client = MlflowClient(tracking_uri)
    runs = _runs(client, experiment)
    assert len(runs) == 2
    ok, failed = runs
    assert ok.info.run_name == "invoke_workflow weather_app" and ok.info.status == "FINISHED"
    assert failed.info.status == "FAILED"
    tags = ok.data.tags
    assert re.fullmatch(r"[0-9a-f]{32}", tags[R.TAG_TRACE_ID])
    assert tags[R.TAG_TRACE_ID] != failed.data.tags[R.TAG_TRACE_ID]
    assert tags[R.TAG_SERVICE_NAME] == "weather-svc"
    assert tags[R.TAG_STATUS] == "OK" and failed.data.tags[R.TAG_STATUS] == "ERROR"
    assert failed.data.tags[R.TAG_ERROR_TYPE] == "ValueError"
    assert tags[R.TAG_MODELS] == "gemini-2.5-flash"
    assert tags[R.TAG_PROVIDERS] == "gcp.vertex_ai"
    assert tags[R.TAG_LC_TAGS] == "prod"
    assert tags["langchain.metadata.user"] == "u-42"
    assert json.loads(tags[R.TAG_LOGGED_ARTIFACTS]) == [{"path": "llm_calls.json",
                                                         "type": "table"}]
    assert R.TAG_PARTIAL not in tags
    # The lambda's closure holds the chain, so its prompt template is part of the version.
    assert re.fullmatch(r"[0-9a-f]{12}", ok.data.params.pop("prompt.prompt"))
    assert ok.data.params == {"model": "gemini-2.5-flash", "temperature": "0.2",
                              "max_tokens": "128"}
    assert tags[R.TAG_CHAIN_VERSION] == failed.data.tags[R.TAG_CHAIN_VERSION]

    m = ok.data.metrics
    assert m[R.M_LLM_CALLS] == 1 and m[R.M_TOOL_CALLS] == 1 and m[R.M_ERRORS] == 0
    assert (m[R.M_TOKENS_INPUT], m[R.M_TOKENS_OUTPUT], m[R.M_TOKENS_TOTAL]) == (12, 5, 20)
    assert (m[R.M_TOKENS_REASONING], m[R.M_TOKENS_CACHE_READ]) == (3, 2)
    assert m[R.M_RETRIEVER_CALLS] == 0
    # weather_app, the inner sequence, prompt, model, parser, tool
    assert m[R.M_SPANS] == 6
    assert 0 < m[R.M_LLM_DURATION] == m[R.M_LLM_DURATION_MAX] <= m[R.M_TRACE_DURATION]
    assert R.M_LLM_TTFT not in m  # invoke, not streamed
    fm = failed.data.metrics
    assert fm[R.M_ERRORS] >= 1 and fm[R.M_TOKENS_TOTAL] == 12

    table = _artifact(client, ok.info.run_id, "llm_calls.json", tmp_path / "a")
    assert table["columns"] == list(R.TABLE_COLUMNS)
    assert len(table["data"]) == 1
    row = dict(zip(table["columns"], table["data"][0]))
    assert "日本の首都は？" in row["input"] and "Answer in one word" in row["input"]
    assert row["output"] == "Tokyo" and row["model"] == "gemini-2.5-flash"
    assert (row["input_tokens"], row["output_tokens"], row["total_tokens"]) == (12, 5, 20)
    assert row["trace_id"] == tags[R.TAG_TRACE_ID]
    # MLflow itself reads it as a table (the evaluation / artifact views use this path);
    # load_table searches runs through the fluent API, hence the env var.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    frame = client.load_table(ok.info.experiment_id, "llm_calls.json",
                              run_ids=[ok.info.run_id, failed.info.run_id])
    assert sorted(frame["output"].tolist()) == ["Kyoto", "Tokyo"]

    tree = _artifact(client, ok.info.run_id, "span_tree.json", tmp_path / "b")
    assert tree["trace_id"] == tags[R.TAG_TRACE_ID]
    (root,) = tree["spans"]
    assert root["name"] == "invoke_workflow weather_app" and root["parent_id"] is None
    assert [c["name"] for c in root["children"]] == ["RunnableSequence", "execute_tool weather"]
    seq = root["children"][0]
    assert [c["name"] for c in seq["children"]] == [
        "ChatPromptTemplate", "chat gemini-2.5-flash", "StrOutputParser"]
    chat = seq["children"][1]
    assert chat["parent_id"] == seq["span_id"]
    assert chat["attributes"]["gen_ai.usage.input_tokens"] == 12
    assert "日本の首都は？" in json.dumps(chat, ensure_ascii=False)
    failed_tree = _artifact(client, failed.info.run_id, "span_tree.json", tmp_path / "c")
    assert failed_tree["spans"][0]["status"]["code"] == "ERROR"
    assert any(ev["name"] == "exception" for ev in failed_tree["spans"][0]["events"])


def test_streamed_call_reports_time_to_first_token(pipeline, tracking_uri: str) -> None:
    tracer, provider, exporter, experiment = pipeline
    model = FakeGemini(messages=iter([AIMessage(content="one two three")]))
    chunks = list((model | StrOutputParser()).stream("hi", config={"callbacks": [tracer]}))
    assert "".join(chunks) == "one two three"
    _drain(provider, exporter)
    (run,) = _runs(MlflowClient(tracking_uri), experiment)
    assert run.data.metrics[R.M_LLM_TTFT] >= 0
    assert run.data.metrics[R.M_LLM_CALLS] == 1


def _record(trace_hex: str) -> R.TraceRecord:
    return R.TraceRecord(
        trace_id=trace_hex, run_name="replayed", target_run_id=None, experiment_id=None,
        tags={R.TAG_TRACE_ID: trace_hex, R.TAG_STATUS: "OK"}, params={"model": "m"},
        metrics={R.M_LLM_CALLS: 1.0}, table=R.Table(rows=((trace_hex, "ab" * 8, "chat m", "m",
                                                            "q", "a", None, None, 1.0, None, 1, 1,
                                                            2,
                                                            "stop"),)),
        tree={"trace_id": trace_hex, "spans": []}, otlp=b"", start_time_ms=1_700_000_000_000,
        end_time_ms=1_700_000_000_500, status="OK",
    )


def test_retries_and_replays_never_duplicate_and_complete_half_written_runs(
    tracking_uri: str, tmp_path: Path
) -> None:
    experiment = f"idem-{uuid.uuid4().hex[:8]}"
    writer = MlflowWriter(tracking_uri, experiment, link_traces=False)
    client = MlflowClient(tracking_uri)
    first = _record(uuid.uuid4().hex)
    writer.write(first)
    writer.write(first, attempt=1)  # a retry after e.g. a lost response
    MlflowWriter(tracking_uri, experiment, False, lookup_existing=True).write(first)  # replay
    # A half-written run: created (with the trace id tag) but never finished.
    second = _record(uuid.uuid4().hex)
    exp_id = writer.experiment_id()
    half = client.create_run(exp_id, tags={R.TAG_TRACE_ID: second.trace_id})
    MlflowWriter(tracking_uri, experiment, False).write(second, attempt=1)
    runs = _runs(client, experiment)
    assert len(runs) == 2
    by_trace = {r.data.tags[R.TAG_TRACE_ID]: r for r in runs}
    completed = by_trace[second.trace_id]
    assert completed.info.run_id == half.info.run_id
    assert completed.info.status == "FINISHED" and completed.data.metrics[R.M_LLM_CALLS] == 1
    assert completed.data.tags[R.TAG_STATUS] == "OK"
    assert {a.path for a in client.list_artifacts(completed.info.run_id)} == {
        "llm_calls.json", "span_tree.json", "span_tree.html"}
    history = client.get_metric_history(by_trace[first.trace_id].info.run_id, R.M_LLM_CALLS)
    assert len(history) == 1  # the retried metric point was not logged twice
