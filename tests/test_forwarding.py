"""Forwarding: one set of spans -> the primary MLflow server (run + Traces view), a SECOND real
``mlflow server`` through its OTLP endpoint, and an OTLP/HTTP receiver; the same trace and span
ids everywhere. Also: otel_mlflow's own MLflow / OTLP calls are never traced, even with
``requests`` instrumented in the process."""

from __future__ import annotations

import json
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
from otel_mlflow._configure import configure
from tests._support.fake_models import FakeChatModel
from tests._support.mlflow_server import MlflowServer
from tests._support.otlp_receiver import OtlpReceiver


@pytest.fixture(scope="module")
def second_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """A second real ``mlflow server``, receiving spans only through ``POST /v1/traces``."""
    server = MlflowServer(root=Path(tmp_path_factory.mktemp("second_mlflow"))).start()
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
