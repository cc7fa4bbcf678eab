"""otel_mlflow: LangChain runs as OpenTelemetry GenAI spans, written to MLflow.

Quick start::

    import otel_mlflow
    tracer = otel_mlflow.configure()          # TracerProvider + MLflow exporter (+ OTLP from env)
    chain.invoke(inputs, config={"callbacks": [tracer]})
    otel_mlflow.flush()                       # scripts: wait until MLflow has everything

See ``docs/`` for the configuration reference and the span / run schema.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from otel_mlflow._setup import configure
from otel_mlflow._export.exporter import MlflowSpanExporter, flush
from otel_mlflow._common.faults import fault_counts
from otel_mlflow._tracing.handler import OtelTracer

try:
    __version__ = version("otel-mlflow")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "MlflowSpanExporter",
    "OtelTracer",
    "configure",
    "fault_counts",
    "flush",
    "__version__",
]
