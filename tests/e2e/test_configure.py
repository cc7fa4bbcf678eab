"""``configure()``: provider choice, resource, MLflow + OTLP processors, idempotency, and the
hand-written two-``BatchSpanProcessor`` setup producing the same result (real SDK, real chain,
embedded sqlite store, real OTLP/HTTP receiver)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from mlflow import MlflowClient
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.util._once import Once

import otel_mlflow
from otel_mlflow._export.providers import configured_providers
from otel_mlflow._setup import _exporters, _traces_url, configure
from otel_mlflow._export.exporter import MlflowSpanExporter
from otel_mlflow._tracing.handler import OtelTracer
from otel_mlflow.instrumentation import LangChainInstrumentor, active_tracer
from tests._support.fake_models import FakeChatModel
from tests._support.otlp_receiver import OtlpReceiver

FAST = {"grace_seconds": 0.05}


@pytest.fixture
def fresh_global(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No global SDK provider (the API's set-once guard reset); restored after the test."""
    monkeypatch.setattr(trace, "_TRACER_PROVIDER_SET_ONCE", Once())
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", None)
    yield
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        current.shutdown()


@pytest.fixture
def clean_otel_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for var in (
        "OTEL_SERVICE_NAME",
        "OTEL_RESOURCE_ATTRIBUTES",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    ):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as rec:
        yield rec


def kinds(provider: TracerProvider) -> list[str]:
    return sorted(type(e).__name__ for e in _exporters(provider))


def chain() -> Any:
    prompt = ChatPromptTemplate.from_messages(
        [("system", "Answer briefly."), ("human", "What is {topic}?")]
    )
    return prompt | FakeChatModel(responses=["Tokyo is the capital of Japan"]) | StrOutputParser()


# --- provider, resource, processors -----------------------------------------------------------


def test_new_global_provider_with_resource_from_env_and_argument(
    fresh_global: None, clean_otel_env: pytest.MonkeyPatch, embedded_tracking_uri: str
) -> None:
    clean_otel_env.setenv("OTEL_SERVICE_NAME", "from-env")
    clean_otel_env.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test,team=ml")
    tracer = configure(**FAST)
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    assert isinstance(tracer, OtelTracer)
    attrs = provider.resource.attributes
    assert attrs["service.name"] == "from-env"
    assert attrs["deployment.environment"] == "test" and attrs["team"] == "ml"
    assert kinds(provider) == ["MlflowSpanExporter"]  # no OTLP env, no OTLP exporter


def test_service_name_argument_beats_env(
    clean_otel_env: pytest.MonkeyPatch, fresh_global: None, embedded_tracking_uri: str
) -> None:
    clean_otel_env.setenv("OTEL_SERVICE_NAME", "from-env")
    configure(service_name="from-arg", set_global=True, **FAST)
    assert trace.get_tracer_provider().resource.attributes["service.name"] == "from-arg"  # type: ignore[attr-defined]


def test_set_global_false_leaves_the_global_provider_alone(
    fresh_global: None, clean_otel_env: pytest.MonkeyPatch, embedded_tracking_uri: str
) -> None:
    tracer = configure(set_global=False, **FAST)
    assert not isinstance(trace.get_tracer_provider(), TracerProvider)
    assert tracer is not None


def test_extends_an_existing_global_provider_and_is_idempotent(
    fresh_global: None, clean_otel_env: pytest.MonkeyPatch, embedded_tracking_uri: str
) -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": "app"}))
    trace.set_tracer_provider(provider)
    first = configure(**FAST)
    second = configure(**FAST)
    assert first is second
    assert kinds(provider) == ["MlflowSpanExporter"]
    # a different content switch gets its own tracer on the same provider, still one exporter
    third = configure(capture_content=False, **FAST)
    assert third is not first
    assert kinds(provider) == ["MlflowSpanExporter"]


def test_configured_providers_lists_the_providers_it_extended(
    clean_otel_env: pytest.MonkeyPatch, embedded_tracking_uri: str
) -> None:
    provider = TracerProvider()
    try:
        assert provider not in configured_providers()
        configure(tracer_provider=provider, set_global=False, **FAST)
        assert provider in configured_providers()
    finally:
        provider.shutdown()


def test_does_not_add_a_second_mlflow_exporter_to_a_hand_built_provider(
    clean_otel_env: pytest.MonkeyPatch, embedded_tracking_uri: str
) -> None:
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(MlflowSpanExporter(**FAST)))
    try:
        configure(tracer_provider=provider, set_global=False, **FAST)
        assert kinds(provider) == ["MlflowSpanExporter"]
    finally:
        provider.shutdown()


@pytest.mark.parametrize("var", ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"])
def test_otlp_exporter_from_standard_env_vars(
    var: str, clean_otel_env: pytest.MonkeyPatch, embedded_tracking_uri: str, receiver: OtlpReceiver
) -> None:
    clean_otel_env.setenv(var, receiver.url if var.endswith("OTLP_ENDPOINT") else receiver.endpoint)
    provider = TracerProvider()
    try:
        configure(tracer_provider=provider, set_global=False, **FAST)
        configure(tracer_provider=provider, set_global=False, **FAST)
        assert kinds(provider) == ["MlflowSpanExporter", "OTLPSpanExporter"]
        with provider.get_tracer("t").start_as_current_span("hello"):
            pass
        provider.force_flush()
        assert [s.name for s in receiver.wait_for(lambda s: len(s) >= 1)] == ["hello"]
    finally:
        provider.shutdown()


def test_otlp_false_wins_over_env_and_otlp_endpoint_argument_adds_one(
    clean_otel_env: pytest.MonkeyPatch, embedded_tracking_uri: str, receiver: OtlpReceiver
) -> None:
    clean_otel_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    off = TracerProvider()
    on = TracerProvider()
    try:
        configure(tracer_provider=off, otlp=False, set_global=False, **FAST)
        assert kinds(off) == ["MlflowSpanExporter"]
        clean_otel_env.delenv("OTEL_EXPORTER_OTLP_ENDPOINT")
        configure(tracer_provider=on, otlp_endpoint=receiver.url, set_global=False, **FAST)
        assert kinds(on) == ["MlflowSpanExporter", "OTLPSpanExporter"]
        with on.get_tracer("t").start_as_current_span("via-argument"):
            pass
        on.force_flush()
        assert receiver.wait_for(lambda s: len(s) >= 1)[0].name == "via-argument"
    finally:
        off.shutdown()
        on.shutdown()


def test_traces_url() -> None:
    assert _traces_url("http://h:4318") == "http://h:4318/v1/traces"
    assert _traces_url("http://h:4318/") == "http://h:4318/v1/traces"
    assert _traces_url("http://h:4318/custom/path") == "http://h:4318/custom/path"


def test_instrument_true_traces_runs_without_callbacks(
    clean_otel_env: pytest.MonkeyPatch, embedded_tracking_uri: str, receiver: OtlpReceiver
) -> None:
    provider = TracerProvider()
    try:
        tracer = configure(
            tracer_provider=provider, otlp_endpoint=receiver.url, set_global=False,
            instrument=True, **FAST,
        )
        assert active_tracer() is tracer
        chain().invoke({"topic": "Tokyo"})  # no callbacks passed
        provider.force_flush()
        spans = receiver.wait_for(lambda s: any(x.name.startswith("chat ") for x in s))
        assert any(s.name.startswith("invoke_workflow") for s in spans)
    finally:
        LangChainInstrumentor().uninstrument()
        provider.shutdown()
    assert active_tracer() is None


# --- configure() == the same pipeline by hand -------------------------------------------------


def _run_summary(tracking_uri: str) -> dict[str, Any]:
    client = MlflowClient(tracking_uri)
    (run,) = client.search_runs(["0"])
    table_path = client.download_artifacts(run.info.run_id, "llm_calls.json")
    table = json.loads(Path(table_path).read_text())
    volatile = {"trace_id", "span_id", "duration_ms", "ttft_ms"}
    columns = table["columns"]
    rows = [
        {c: v for c, v in zip(columns, row) if c not in volatile} for row in table["data"]
    ]
    return {
        "trace_id": run.data.tags["otel.trace_id"],
        "name": run.info.run_name,
        "status": run.info.status,
        "params": run.data.params,
        "metrics": {k: v for k, v in run.data.metrics.items() if "duration" not in k},
        # Ids each store or run makes up (the trace, the LoggedModel, the LangChain run) differ.
        "tags": {k: v for k, v in run.data.tags.items()
                 if k.startswith(("otel_mlflow.", "otel.service")) and "trace_id" not in k
                 and k not in ("otel_mlflow.model_id", "otel_mlflow.langchain.run_id")},
        "rows": rows,
    }


def _spans_summary(receiver: OtlpReceiver) -> list[tuple[str, tuple[str, ...]]]:
    return sorted((s.name, tuple(sorted(s.attributes))) for s in receiver.spans)


def test_configure_equals_two_batch_span_processors_by_hand(
    tmp_path: Path, clean_otel_env: pytest.MonkeyPatch
) -> None:
    uri_a = f"sqlite:///{tmp_path / 'a.db'}"
    uri_b = f"sqlite:///{tmp_path / 'b.db'}"
    resource = Resource.create({"service.name": "same-app"})
    with OtlpReceiver() as recv_a, OtlpReceiver() as recv_b:
        provider_a = TracerProvider(resource=resource)
        tracer_a = configure(
            tracer_provider=provider_a, tracking_uri=uri_a, otlp_endpoint=recv_a.url,
            set_global=False, **FAST,
        )
        provider_b = TracerProvider(resource=resource)
        provider_b.add_span_processor(BatchSpanProcessor(MlflowSpanExporter(uri_b, **FAST)))
        provider_b.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=recv_b.endpoint)))
        tracer_b = OtelTracer(provider_b)

        for tracer, provider in ((tracer_a, provider_a), (tracer_b, provider_b)):
            out = chain().invoke({"topic": "Tokyo"}, config={"callbacks": [tracer]})
            assert out == "Tokyo is the capital of Japan"
            provider.force_flush()
        assert otel_mlflow.flush(30)
        recv_a.wait_for(lambda s: len(s) >= 3)
        recv_b.wait_for(lambda s: len(s) >= 3)
        provider_a.shutdown()
        provider_b.shutdown()

        summary_a, summary_b = _run_summary(uri_a), _run_summary(uri_b)
        # each pipeline's run and its OTLP backend speak of the same trace
        assert {s.trace_id for s in recv_a.spans} == {summary_a.pop("trace_id")}
        assert {s.trace_id for s in recv_b.spans} == {summary_b.pop("trace_id")}
        assert summary_a == summary_b
        assert summary_a["metrics"]["llm.calls"] == 1
        assert summary_a["rows"] and "Tokyo" in json.dumps(summary_a["rows"], ensure_ascii=False)
        assert _spans_summary(recv_a) == _spans_summary(recv_b)
        assert len(recv_a.spans) >= 3
