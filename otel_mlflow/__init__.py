"""otel_mlflow: LangChain runs as OpenTelemetry GenAI spans, written to MLflow.

Quick start::

    import otel_mlflow
    tracer = otel_mlflow.configure()          # TracerProvider + MLflow exporter (+ OTLP from env)
    chain.invoke(inputs, config={"callbacks": [tracer]})
    otel_mlflow.flush()                       # scripts: wait until MLflow has everything
    otel_mlflow.log_feedback(run_id, "helpful", True)   # feedback on a LangChain root run id

See ``docs/`` for the configuration reference and the span / run schema.
"""

from __future__ import annotations

from otel_mlflow._setup import configure
from otel_mlflow._export.exporter import MlflowSpanExporter
from otel_mlflow._export.providers import flush
from otel_mlflow._common.faults import fault_counts
from otel_mlflow._feedback import log_feedback
from otel_mlflow._common.settings import package_version
from otel_mlflow._tracing.handler import OtelTracer

__version__ = package_version()

__all__ = [
    "MlflowSpanExporter",
    "OtelTracer",
    "configure",
    "fault_counts",
    "flush",
    "log_feedback",
    "__version__",
]
