"""Environment variables and their parsing.

Every knob resolves in one order: constructor argument > environment variable > default, once,
when the component is built. This module is the one place for environment variable names (ours,
MLflow's, OTLP's), the defaults more than one component shares, the parsers, the tracking-URI
rule and the package version lookup; each component documents which of them it reads (and
``docs/configuration.md`` lists them all). ``tests/common/test_settings.py`` keeps copies out.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
from collections.abc import Iterator, Mapping
from importlib.metadata import PackageNotFoundError, version

_logger = logging.getLogger(__name__)

# MLflow's own variables (read, never written).
MLFLOW_TRACKING_URI = "MLFLOW_TRACKING_URI"
MLFLOW_EXPERIMENT_NAME = "MLFLOW_EXPERIMENT_NAME"
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
MLFLOW_HTTP_REQUEST_MAX_RETRIES = "MLFLOW_HTTP_REQUEST_MAX_RETRIES"
MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR = "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"
MLFLOW_HTTP_REQUEST_TIMEOUT = "MLFLOW_HTTP_REQUEST_TIMEOUT"
# ``otel-mlflow replay`` sets these unless the user did (the CLI's only env writes). MLflow's
# HTTP client retries a refused connection for minutes by default (7 retries, backoff factor 2);
# a replay stops at the first connection failure and leaves the rest for the next run, so it
# only needs a short retry.
REPLAY_HTTP_DEFAULTS = {
    MLFLOW_HTTP_REQUEST_MAX_RETRIES: "2",
    MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR: "1",
    MLFLOW_HTTP_REQUEST_TIMEOUT: "30",
}

# Standard OTLP exporter variables (``configure`` reads them to decide whether to add OTLP; the
# OTLP exporter itself reads the rest: headers, timeout, compression, TLS).
OTLP_TRACES_ENDPOINT = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
OTLP_ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
OTLP_TRACES_PROTOCOL = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
OTLP_PROTOCOL = "OTEL_EXPORTER_OTLP_PROTOCOL"
DEFAULT_OTLP_PROTOCOL = "http/protobuf"
# MLflow's switch between its own tracer provider and the global one.
MLFLOW_USE_DEFAULT_TRACER_PROVIDER = "MLFLOW_USE_DEFAULT_TRACER_PROVIDER"

# Base of the default spool directory (XDG Base Directory spec; ``~/.cache`` when unset).
XDG_CACHE_HOME = "XDG_CACHE_HOME"
# google-genai's backend switch, read (never set) to name the provider of ChatGoogleGenerativeAI
GOOGLE_GENAI_USE_VERTEXAI = "GOOGLE_GENAI_USE_VERTEXAI"

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
APP_VERSION = "OTEL_MLFLOW_APP_VERSION"  # tracer: overrides the computed chain version
REGISTER_PROMPTS = "OTEL_MLFLOW_REGISTER_PROMPTS"  # writer: register unknown prompt templates
# exporter: user price map overriding genai-prices, JSON text or the path of a JSON file
PRICES = "OTEL_MLFLOW_PRICES"
# log_feedback: how long feedback for a trace not yet in MLflow is held before it is dropped
FEEDBACK_HOLD_SECONDS = "OTEL_MLFLOW_FEEDBACK_HOLD_SECONDS"
# Tail sampling (exporter): share of OK traces written, decided per trace from its id.
SAMPLE_RATIO = "OTEL_MLFLOW_SAMPLE_RATIO"
KEEP_SLOWER_THAN_MS = "OTEL_MLFLOW_KEEP_SLOWER_THAN_MS"  # traces slower than this always written
# ``otel-mlflow receive`` (the OTLP/HTTP receiver).
RECEIVER_HOST = "OTEL_MLFLOW_RECEIVER_HOST"
RECEIVER_PORT = "OTEL_MLFLOW_RECEIVER_PORT"
RECEIVER_TOKEN = "OTEL_MLFLOW_RECEIVER_TOKEN"  # bearer token senders must present
RECEIVER_MAX_BODY_BYTES = "OTEL_MLFLOW_RECEIVER_MAX_BODY_BYTES"  # compressed and decompressed
RECEIVER_MAX_BACKLOG_BYTES = "OTEL_MLFLOW_RECEIVER_MAX_BACKLOG_BYTES"  # span log on disk -> 429
SPAN_TREE_HTML = "OTEL_MLFLOW_SPAN_TREE_HTML"  # bool: write the span_tree.html waterfall page

# Defaults shared by more than one component (exporter and delivery).
# Writer threads: MLflow requests are I/O-bound; 4 measured faster than 2 or 8 against a local
# one-worker server (benchmarks/exporter_throughput.py).
DEFAULT_WORKERS = 4
DEFAULT_SHUTDOWN_TIMEOUT_SECONDS = 10.0
DEFAULT_RETRY_MAX_SECONDS = 30.0

# Exporter defaults (resolved by ``otel_mlflow._export.settings.ExporterSettings``).
RUN_MODE_TRACE = "trace"
RUN_MODE_ACTIVE = "active"
RUN_MODES = frozenset({RUN_MODE_TRACE, RUN_MODE_ACTIVE})
DEFAULT_GRACE_SECONDS = 1.0
DEFAULT_TRACE_TIMEOUT_SECONDS = 300.0
# ~14 KB per buffered 4-span trace of short prompts (benchmarks/soak.py); traces with long
# prompts hold more. 2,000 keeps a full buffer in the tens of MB while leaving room for 1,000+
# traces/s under the default 1 s grace.
DEFAULT_MAX_BUFFERED_TRACES = 2_000
DEFAULT_MAX_SPANS_PER_TRACE = 10_000
DEFAULT_PARENT_WAIT_SECONDS = 10.0
# Tail sampling defaults: every trace written; no latency rule.
DEFAULT_SAMPLE_RATIO = 1.0
# Receiver defaults. 4318 is the OTLP/HTTP port; loopback unless told otherwise.
DEFAULT_RECEIVER_HOST = "127.0.0.1"
DEFAULT_RECEIVER_PORT = 4318
# 20 MiB: the OTel Collector's own default ``max_request_body_size`` for its OTLP receiver.
DEFAULT_RECEIVER_MAX_BODY_BYTES = 20 * 1024 * 1024
DEFAULT_RECEIVER_MAX_BACKLOG_BYTES = 1024 * 1024 * 1024
# A receiver's grace after a trace's root arrives: the senders' BatchSpanProcessor exports every
# 5 s (OTEL_BSP_SCHEDULE_DELAY), so another process's spans of the same trace may come that late.
DEFAULT_RECEIVER_GRACE_SECONDS = 6.0

DIST_NAME = "otel-mlflow"
_UNKNOWN_VERSION = "0.0.0"

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


def env_optional_float(name: str) -> float | None:
    """A number, or None when unset (or not a number, with a warning)."""
    if env_str(name) is None:
        return None
    value = env_float(name, float("nan"))
    return None if value != value else value


def env_list(name: str) -> list[str]:
    value = env_str(name)
    if value is None:
        return []
    return [part.strip() for part in value.split(",") if part.strip()]


def env_price_map(name: str = PRICES) -> dict[str, object] | None:
    """The user price map from ``name``: JSON text (``{...}``) or the path of a JSON file.

    None when unset; a value that cannot be read or parsed is logged and ignored (the table's
    prices stay in force), never raised.
    """
    value = env_str(name)
    if value is None:
        return None
    try:
        if value.lstrip().startswith("{"):
            text = value
        else:
            with open(os.path.expanduser(value), encoding="utf-8") as handle:
                text = handle.read()
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return data
    except (OSError, ValueError) as exc:
        _logger.warning("otel_mlflow: %s is neither a JSON object nor a readable JSON file (%s); "
                        "ignored", name, exc)
        return None
@contextlib.contextmanager
def env_defaults(defaults: Mapping[str, str]) -> Iterator[None]:
    """Set the ``defaults`` that are unset, for the ``with`` block only (restored after).

    ``otel-mlflow compare`` reads MLflow inside it with ``REPLAY_HTTP_DEFAULTS``, so a caller of
    ``cli.main(["compare", ...])`` in its own process keeps its environment as it was.
    """
    added = [name for name in defaults if name not in os.environ]
    for name in added:
        os.environ[name] = defaults[name]
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


def resolve_tracking_uri(tracking_uri: str | None) -> str:
    """Argument > ``MLFLOW_TRACKING_URI`` > ``sqlite:///mlflow.db`` (MLflow's own default)."""
    return tracking_uri or env_str(MLFLOW_TRACKING_URI) or DEFAULT_TRACKING_URI


def resolve_experiment_name(experiment_name: str | None) -> str | None:
    """Argument > ``MLFLOW_EXPERIMENT_NAME`` > None (MLflow's "Default" experiment)."""
    return experiment_name or env_str(MLFLOW_EXPERIMENT_NAME)


@functools.cache
def package_version() -> str:
    """The installed ``otel-mlflow`` version; ``0.0.0`` when running from a source tree."""
    try:
        return version(DIST_NAME)
    except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
        return _UNKNOWN_VERSION
