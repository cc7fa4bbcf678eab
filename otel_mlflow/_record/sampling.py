"""Tail sampling: whether a complete trace is written, decided from its spans and trace id.

A trace is KEPT, in priority order, when:

1. any of its spans has status ERROR (errors are always written);
2. ``keep_slower_than_ms`` is set and the trace lasted longer (first span start to last span
   end);
3. its trace id falls under the ratio: ``trace_id & (2**64 - 1) < round(ratio * 2**64)``, the
   rule of the OpenTelemetry SDK's ``TraceIdRatioBased`` sampler (lower 64 bits of the id). It
   is deterministic: every process and receiver that sees the trace makes the same decision,
   and a head sampler ``TraceIdRatioBased(r)`` upstream keeps exactly the traces this rule
   keeps at the same ``r``.

Otherwise it is dropped (counted by the exporter). ``ratio >= 1`` keeps everything, ``<= 0``
keeps only rules 1-2. Pure: no I/O, no MLflow import.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan

from otel_mlflow._record.span_facts import end_ns, is_error, start_ns

_ID_LIMIT = (1 << 64) - 1


def ratio_bound(ratio: float) -> int:
    """The SDK's ``TraceIdRatioBased.get_bound_for_rate``: ids below it are kept."""
    return round(min(max(ratio, 0.0), 1.0) * (_ID_LIMIT + 1))


def in_ratio(trace_id: int, ratio: float) -> bool:
    return ratio >= 1.0 or (trace_id & _ID_LIMIT) < ratio_bound(ratio)


def keep_trace(
    spans: Sequence[ReadableSpan], ratio: float, keep_slower_than_ms: float | None = None
) -> bool:
    """True when the trace is written (see the module doc)."""
    if ratio >= 1.0 or not spans:
        return True
    if any(is_error(span) for span in spans):
        return True
    if keep_slower_than_ms is not None:
        started = min(start_ns(span) for span in spans)
        ended = max(end_ns(span) for span in spans)
        if (ended - started) / 1e6 > keep_slower_than_ms:
            return True
    return in_ratio(spans[0].context.trace_id, ratio)


def format_ratio(ratio: float) -> str:
    """The ``otel_mlflow.sample_ratio`` tag value: the ratio, clamped to [0, 1], shortest text."""
    return repr(min(max(float(ratio), 0.0), 1.0))
