"""Environment variables and their parsing.

Every knob resolves in one order: constructor argument > environment variable > default, once,
when the component is built. This module holds the names and the parsers; each component
documents which of them it reads (and ``docs/configuration.md`` lists them all).
"""

from __future__ import annotations

import logging
import os

_logger = logging.getLogger(__name__)

# MLflow's own variables (read, never written).
MLFLOW_TRACKING_URI = "MLFLOW_TRACKING_URI"
MLFLOW_EXPERIMENT_NAME = "MLFLOW_EXPERIMENT_NAME"
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"

# Standard GenAI content switch.
CAPTURE_MESSAGE_CONTENT = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"

# otel_mlflow's own variables.
RUN_MODE = "OTEL_MLFLOW_RUN_MODE"  # "trace" (one run per trace) | "active" (use active run only)
LINK_TRACES = "OTEL_MLFLOW_LINK_TRACES"  # bool, MLflow Traces view link
GRACE_SECONDS = "OTEL_MLFLOW_GRACE_SECONDS"  # wait after root end for late children
# wait for the local parent span of a LangChain root (a web request span) before writing
PARENT_WAIT_SECONDS = "OTEL_MLFLOW_PARENT_WAIT_SECONDS"
TRACE_TIMEOUT_SECONDS = "OTEL_MLFLOW_TRACE_TIMEOUT_SECONDS"  # root never ends -> partial run
MAX_BUFFERED_TRACES = "OTEL_MLFLOW_MAX_BUFFERED_TRACES"
MAX_SPANS_PER_TRACE = "OTEL_MLFLOW_MAX_SPANS_PER_TRACE"
WORKERS = "OTEL_MLFLOW_WORKERS"
SPOOL_DIR = "OTEL_MLFLOW_SPOOL_DIR"
SPOOL_MAX_BYTES = "OTEL_MLFLOW_SPOOL_MAX_BYTES"
SHUTDOWN_TIMEOUT_SECONDS = "OTEL_MLFLOW_SHUTDOWN_TIMEOUT_SECONDS"
RETRY_MAX_SECONDS = "OTEL_MLFLOW_RETRY_MAX_SECONDS"
RUN_TTL_SECONDS = "OTEL_MLFLOW_RUN_TTL_SECONDS"  # tracer: open LangChain runs ended after this
MAX_OPEN_RUNS = "OTEL_MLFLOW_MAX_OPEN_RUNS"  # tracer: hard cap of the run_id map
MAX_ATTRIBUTE_CHARS = "OTEL_MLFLOW_MAX_ATTRIBUTE_CHARS"  # cap for one JSON content attribute
DEFER_CONTENT = "OTEL_MLFLOW_DEFER_CONTENT"  # tracer: content JSON written on first read of a span
REDACT_KEYS = "OTEL_MLFLOW_REDACT_KEYS"  # comma-separated extra key regexes
REDACT_PATTERNS = "OTEL_MLFLOW_REDACT_PATTERNS"  # comma-separated extra value regexes

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def env_str(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    if value is None or not value.strip():
        return default
    return value.strip()


def env_bool(name: str, default: bool) -> bool:
    value = env_str(name)
    if value is None:
        return default
    low = value.lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    _logger.warning("otel_mlflow: %s=%r is not a boolean; using %s", name, value, default)
    return default


def env_float(name: str, default: float) -> float:
    value = env_str(name)
    if value is None:
        return default
    try:
        return float(value)
    except ValueError:
        _logger.warning("otel_mlflow: %s=%r is not a number; using %s", name, value, default)
        return default


def env_int(name: str, default: int) -> int:
    value = env_str(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        _logger.warning("otel_mlflow: %s=%r is not an integer; using %s", name, value, default)
        return default


def env_list(name: str) -> list[str]:
    value = env_str(name)
    if value is None:
        return []
    return [part.strip() for part in value.split(",") if part.strip()]
