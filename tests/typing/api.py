"""The public API under ``mypy --strict`` (not collected by pytest: no ``test_`` prefix).

Only names from ``otel_mlflow`` and ``otel_mlflow.instrumentation`` are used, the way an app
would. CI runs ``mypy --strict tests/typing/api.py``; a signature change that breaks typed user
code fails there.
"""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExportResult

import otel_mlflow
from otel_mlflow import MlflowSpanExporter, OtelTracer, configure, fault_counts, flush
from otel_mlflow.instrumentation import LangChainInstrumentor


def by_hand() -> OtelTracer:
    exporter = MlflowSpanExporter(
        "sqlite:///mlflow.db",
        "my-app",
        run_mode="auto",
        link_traces=True,
        grace_seconds=0.5,
        workers=2,
        spool_dir="/tmp/otel-mlflow-spool",
        shutdown_timeout_seconds=10.0,
    )
    result: SpanExportResult = exporter.export([])
    assert result in (SpanExportResult.SUCCESS, SpanExportResult.FAILURE)
    ok: bool = exporter.force_flush(1000)
    assert isinstance(ok, bool)
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return OtelTracer(provider, capture_content=False, max_attribute_chars=4096,
                      redact_keys=["session_cookie"], redact_patterns=[r"sk-[A-Za-z0-9]+"])


def one_call() -> OtelTracer:
    tracer: OtelTracer = configure(experiment_name="my-app", service_name="svc", otlp=False)
    return tracer


def scripts() -> None:
    import uuid
    from concurrent.futures import Future

    pending: Future[str] = otel_mlflow.log_feedback(uuid.uuid4(), "helpful", True,
                                                    rationale="clear", source="user-1")
    otel_mlflow.log_feedback("6f1c4f9e-2a47-4a8e-9d8a-2b4f7c1e0a11", "stars", 4)
    assert isinstance(pending, Future)
    MlflowSpanExporter(prices={"my-model": {"input_mtok": 0.2, "output_mtok": 0.6}})
    done: bool = flush(30.0)
    counts: dict[str, int] = fault_counts()
    version: str = otel_mlflow.__version__
    assert isinstance(done, bool) and isinstance(counts, dict) and version


def everything() -> None:
    instrumentor = LangChainInstrumentor()
    instrumentor.instrument(capture_content=True)
    instrumentor.uninstrument()
