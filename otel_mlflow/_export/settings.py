"""``ExporterSettings``: every knob of ``MlflowSpanExporter``, resolved once, frozen.

Each field resolves in one order: constructor argument > environment variable > default. The
names, defaults and parsers live in ``otel_mlflow._common.settings``; this module only applies
the order and the bounds (negative durations become 0, caps at least 1, an unknown run mode
falls back to ``trace`` with a warning). ``docs/configuration.md`` lists every variable.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TypeVar

from otel_mlflow._common import settings as _config

_logger = logging.getLogger("otel_mlflow._export.exporter")

_T = TypeVar("_T")


def _pick(value: _T | None, fallback: _T) -> _T:
    return fallback if value is None else value


@dataclass(frozen=True)
class ExporterSettings:
    """The resolved exporter configuration (see ``resolve``)."""

    tracking_uri: str
    experiment_name: str | None
    run_mode: str
    link_traces: bool
    grace_seconds: float
    trace_timeout_seconds: float
    parent_wait_seconds: float
    max_buffered_traces: int
    max_spans_per_trace: int
    workers: int
    spool_dir: str | None
    spool_max_bytes: int | None
    shutdown_timeout_seconds: float
    retry_max_seconds: float
    sample_ratio: float = _config.DEFAULT_SAMPLE_RATIO
    keep_slower_than_ms: float | None = None

    @classmethod
    def resolve(
        cls,
        tracking_uri: str | None = None,
        experiment_name: str | None = None,
        *,
        run_mode: str | None = None,
        link_traces: bool | None = None,
        grace_seconds: float | None = None,
        trace_timeout_seconds: float | None = None,
        parent_wait_seconds: float | None = None,
        max_buffered_traces: int | None = None,
        max_spans_per_trace: int | None = None,
        workers: int | None = None,
        spool_dir: str | None = None,
        spool_max_bytes: int | None = None,
        shutdown_timeout_seconds: float | None = None,
        retry_max_seconds: float | None = None,
        sample_ratio: float | None = None,
        keep_slower_than_ms: float | None = None,
    ) -> ExporterSettings:
        """Argument > env var > default for every field."""
        mode = (run_mode or _config.env_str(_config.RUN_MODE) or _config.RUN_MODE_TRACE).lower()
        if mode not in _config.RUN_MODES:
            _logger.warning(
                "otel_mlflow: unknown run_mode %r; using %r", mode, _config.RUN_MODE_TRACE
            )
            mode = _config.RUN_MODE_TRACE
        return cls(
            tracking_uri=_config.resolve_tracking_uri(tracking_uri),
            experiment_name=_config.resolve_experiment_name(experiment_name),
            run_mode=mode,
            link_traces=_pick(link_traces, _config.env_bool(_config.LINK_TRACES, True)),
            grace_seconds=max(0.0, _pick(grace_seconds, _config.env_float(
                _config.GRACE_SECONDS, _config.DEFAULT_GRACE_SECONDS))),
            trace_timeout_seconds=max(0.0, _pick(trace_timeout_seconds, _config.env_float(
                _config.TRACE_TIMEOUT_SECONDS, _config.DEFAULT_TRACE_TIMEOUT_SECONDS))),
            parent_wait_seconds=max(0.0, _pick(parent_wait_seconds, _config.env_float(
                _config.PARENT_WAIT_SECONDS, _config.DEFAULT_PARENT_WAIT_SECONDS))),
            max_buffered_traces=max(1, int(_pick(max_buffered_traces, _config.env_int(
                _config.MAX_BUFFERED_TRACES, _config.DEFAULT_MAX_BUFFERED_TRACES)))),
            max_spans_per_trace=max(1, int(_pick(max_spans_per_trace, _config.env_int(
                _config.MAX_SPANS_PER_TRACE, _config.DEFAULT_MAX_SPANS_PER_TRACE)))),
            workers=int(_pick(workers, _config.env_int(_config.WORKERS, _config.DEFAULT_WORKERS))),
            spool_dir=spool_dir or _config.env_str(_config.SPOOL_DIR),
            spool_max_bytes=spool_max_bytes,
            shutdown_timeout_seconds=max(0.0, _pick(shutdown_timeout_seconds, _config.env_float(
                _config.SHUTDOWN_TIMEOUT_SECONDS, _config.DEFAULT_SHUTDOWN_TIMEOUT_SECONDS))),
            retry_max_seconds=_pick(retry_max_seconds, _config.env_float(
                _config.RETRY_MAX_SECONDS, _config.DEFAULT_RETRY_MAX_SECONDS)),
            sample_ratio=min(1.0, max(0.0, float(_pick(sample_ratio, _config.env_float(
                _config.SAMPLE_RATIO, _config.DEFAULT_SAMPLE_RATIO))))),
            keep_slower_than_ms=_pick(
                keep_slower_than_ms, _config.env_optional_float(_config.KEEP_SLOWER_THAN_MS)),
        )
