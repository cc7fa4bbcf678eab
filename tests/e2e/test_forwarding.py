"""Forwarding: one set of spans -> the primary MLflow server (run + Traces view), a SECOND real
``mlflow server`` through its OTLP endpoint, and an OTLP/HTTP receiver; the same trace and span
ids everywhere. Also: otel_mlflow's own MLflow / OTLP calls are never traced, even with
``requests`` instrumented in the process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import tool
from mlflow import MlflowClient
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.requests import RequestsInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

import otel_mlflow
from otel_mlflow._setup import configure
from tests._support.fake_models import FakeChatModel
from tests._support.mlflow_server import MlflowServer
from tests._support.otlp_receiver import OtlpReceiver


@pytest.fixture(scope="module")
def second_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """A second real ``mlflow server``, receiving spans only through ``POST /v1/traces``."""
    server = MlflowServer(
        root=Path(tmp_path_factory.mktemp("second_mlflow")),
        env={"MLFLOW_MODEL_CATALOG_URI": ""},  # offline: no model-catalog download on ingest
    ).start()
    yield server
    server.stop()


@tool
def word_count(text: str) -> int:
    """Count the words in a text."""
    return len(text.split())


def app() -> Any:
    prompt = ChatPromptTemplate.from_messages([("human", "Summarise: {text}")])
    model = FakeChatModel(responses=["短い 要約 です"])
    count = RunnableLambda(lambda summary: {"summary": summary, "words": word_count.invoke(summary)})
    return prompt | model | StrOutputParser() | count


def tree_ids(nodes: list[dict[str, Any]]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for node in nodes:
        out[node["span_id"]] = node["parent_id"]
        out.update(tree_ids(node["children"]))
    return out


def test_same_trace_and_span_ids_in_every_backend(
    mlflow_server: MlflowServer, second_server: MlflowServer, tmp_path: Path
) -> None:
    primary = MlflowClient(mlflow_server.url)
    secondary = MlflowClient(second_server.url)
    forward_experiment = secondary.create_experiment("forwarded")
    provider = TracerProvider(resource=Resource.create({"service.name": "forwarding-test"}))
    instrumented = RequestsInstrumentor()
    with OtlpReceiver() as receiver:
        try:
            tracer = configure(
                tracer_provider=provider,
                tracking_uri=mlflow_server.url,
                experiment_name="forwarding",
                otlp_endpoint=receiver.url,
                set_global=False,
                grace_seconds=0.05,
                spool_dir=str(tmp_path / "spool"),
            )
            provider.add_span_processor(
                BatchSpanProcessor(
                    OTLPSpanExporter(
                        endpoint=second_server.url + "/v1/traces",
                        headers={"x-mlflow-experiment-id": forward_experiment},
                    )
                )
            )
            # An app that instruments requests: every HTTP call in the process is a candidate.
            instrumented.instrument(tracer_provider=provider)
            with provider.get_tracer("app").start_as_current_span("app-own-http"):
                requests.get(mlflow_server.url + "/health", timeout=10).raise_for_status()

            result = app().invoke({"text": "a long text " * 5}, config={"callbacks": [tracer]})
            assert result == {"summary": "短い 要約 です", "words": 3}
            provider.force_flush()
            assert otel_mlflow.flush(60)
            provider.force_flush()  # anything the exporter's own calls could have produced
        finally:
            instrumented.uninstrument()
            provider.shutdown()

        received = receiver.spans

    # primary: the run and its span tree
    experiment = primary.get_experiment_by_name("forwarding")
    assert experiment is not None
    runs = primary.search_runs([experiment.experiment_id])
    (run,) = [r for r in runs if r.info.run_name.startswith("invoke_workflow")]
    trace_id = run.data.tags["otel.trace_id"]
    tree = json.loads(Path(primary.download_artifacts(run.info.run_id, "span_tree.json")).read_text())
    assert tree["trace_id"] == trace_id
    expected = tree_ids(tree["spans"])
    assert len(expected) >= 5  # workflow, prompt, chat, parser, lambda, tool

    # the OTLP receiver: same trace, same span ids and parents
    got = {s.span_id: s.parent_span_id for s in received if s.trace_id == trace_id}
    assert got == expected
    assert {s.resource["service.name"] for s in received} == {"forwarding-test"}

    # the second server, through its OTLP endpoint
    forwarded_ids = {t.info.trace_id for t in secondary.search_traces(locations=[forward_experiment])}
    assert "tr-" + trace_id in forwarded_ids
    spans = secondary.get_trace("tr-" + trace_id).data.spans
    assert {s.span_id: s.parent_id for s in spans} == expected

    # the primary's Traces view, linked to the run
    (linked,) = primary.search_traces(locations=[experiment.experiment_id], run_id=run.info.run_id)
    assert linked.info.trace_id == "tr-" + trace_id
    linked_spans = primary.get_trace(linked.info.trace_id).data.spans
    assert {s.span_id: s.parent_id for s in linked_spans} == expected

    # no feedback: the only HTTP span anywhere is the app's own call
    http = [s for s in received if s.trace_id != trace_id]
    assert sorted(s.name for s in http) == ["GET", "app-own-http"]
    get = next(s for s in http if s.name == "GET")
    assert "/health" in str(get.attributes.get("url.full") or get.attributes.get("http.url"))
    app_traces = {s.trace_id for s in http}
    assert len(app_traces) == 1
    assert forwarded_ids == {"tr-" + trace_id} | {"tr-" + t for t in app_traces}


# --- coexistence with MLflow's own tracing (documented in otel_mlflow._setup) ---------------

COEXIST_APP = """
import logging, os, sys
logging.basicConfig(level=logging.WARNING)
import mlflow
import otel_mlflow
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from tests._support.fake_models import FakeChatModel

uri = os.environ["APP_TRACKING_URI"]
mlflow.set_tracking_uri(uri)
mlflow.set_experiment("coexist")
if sys.argv[1] == "autolog":
    mlflow.langchain.autolog()
tracer = otel_mlflow.configure(tracking_uri=uri, experiment_name="coexist", grace_seconds=0.05)

@mlflow.trace
def helper(x):
    return x

helper(1)
chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | FakeChatModel() | StrOutputParser()
print(chain.invoke({"q": "hello"}, config={"callbacks": [tracer]}))
assert otel_mlflow.flush(60)
"""


def _run_coexist(tmp_path: Path, mode: str, receiver: OtlpReceiver, extra: dict[str, str]) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MLFLOW_"))}
    env.update(
        {
            "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
            "APP_TRACKING_URI": f"sqlite:///{tmp_path / 'coexist.db'}",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",  # MLflow's own default is gRPC
            "OTEL_MLFLOW_SPOOL_DIR": str(tmp_path / "spool"),
            "MLFLOW_MODEL_CATALOG_URI": "",  # offline: no model-catalog download for span costs
            **extra,
        }
    )
    script = tmp_path / "coexist_app.py"
    script.write_text(COEXIST_APP)
    proc = subprocess.run(
        [sys.executable, str(script), mode], cwd=tmp_path, env=env, capture_output=True,
        text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stderr


def _traces(uri: str) -> list[Any]:
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("coexist")
    assert experiment is not None
    return [client.get_trace(t.info.trace_id) for t in client.search_traces(locations=[experiment.experiment_id])]


def test_documented_setup_traces_each_langchain_run_once(tmp_path: Path) -> None:
    with OtlpReceiver() as receiver:
        _run_coexist(tmp_path, "plain", receiver, {"MLFLOW_ENABLE_OTLP_EXPORTER": "false"})
        spans = receiver.spans
    # the collector gets otel_mlflow's spans only, one LangChain trace
    assert {s.resource.get("telemetry.sdk.name") for s in spans} == {"opentelemetry"}
    assert len({s.trace_id for s in spans}) == 1
    assert sum(s.name.startswith("chat ") for s in spans) == 1
    # MLflow keeps both: the LangChain trace (linked to its run) and the @mlflow.trace one
    traces = _traces(f"sqlite:///{tmp_path / 'coexist.db'}")
    names = sorted(s.name for t in traces for s in t.data.spans if s.parent_id is None)
    assert len(traces) == 2 and names[0] == "helper" and names[1].startswith("invoke_workflow")


def test_autolog_with_otlp_env_traces_twice_and_is_warned_about(tmp_path: Path) -> None:
    with OtlpReceiver() as receiver:
        stderr = _run_coexist(tmp_path, "autolog", receiver, {})
        spans = receiver.spans
    assert "mlflow.langchain.autolog() is on" in stderr
    # MLflow's own tracing took the OTLP endpoint: its copy of the LangChain run (and the
    # @mlflow.trace span) went to the collector, beside otel_mlflow's
    by_sdk: dict[str, set[str]] = {}
    for s in spans:
        by_sdk.setdefault(str(s.resource.get("telemetry.sdk.name")), set()).add(s.name)
    assert "helper" in by_sdk["mlflow"]
    assert any(n.startswith("chat ") for n in by_sdk["opentelemetry"])
    assert len(by_sdk["mlflow"]) > 1  # the LangChain run a second time
