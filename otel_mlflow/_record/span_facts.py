"""Pure facts about finished OpenTelemetry spans: ids as hex, roots, kinds, times, numbers.

Shared by the record builder, the LLM-call table and the span tree. No I/O, no MLflow import.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

from otel_mlflow._common import semconv as A

def trace_id_hex(trace_id: int) -> str:
    return format(trace_id, "032x")


def span_id_hex(span_id: int) -> str:
    return format(span_id, "016x")


def is_trace_root(span: ReadableSpan) -> bool:
    """A span without a parent, or whose parent lives in another process (remote)."""
    parent = span.parent
    return parent is None or bool(parent.is_remote)


def is_langchain_root(span: ReadableSpan) -> bool:
    return bool((span.attributes or {}).get(A.ROOT))


def span_attrs(span: ReadableSpan) -> Mapping[str, Any]:
    return span.attributes or {}


def is_llm(span: ReadableSpan) -> bool:
    attrs = span_attrs(span)
    if attrs.get(A.GEN_AI_OPERATION_NAME) in A.LLM_OPERATIONS:
        return True
    return attrs.get(A.LC_RUN_TYPE) in (A.RUN_LLM, A.RUN_CHAT_MODEL)


def is_tool(span: ReadableSpan) -> bool:
    attrs = span_attrs(span)
    return attrs.get(A.GEN_AI_OPERATION_NAME) == A.OP_EXECUTE_TOOL or (
        attrs.get(A.LC_RUN_TYPE) == A.RUN_TOOL
    )


def is_retriever(span: ReadableSpan) -> bool:
    attrs = span_attrs(span)
    return attrs.get(A.GEN_AI_OPERATION_NAME) == A.OP_RETRIEVAL or (
        attrs.get(A.LC_RUN_TYPE) == A.RUN_RETRIEVER
    )


def is_error(span: ReadableSpan) -> bool:
    return span.status is not None and span.status.status_code == StatusCode.ERROR


def start_ns(span: ReadableSpan) -> int:
    return span.start_time or 0


def end_ns(span: ReadableSpan) -> int:
    return span.end_time or span.start_time or 0


def duration_ms(span: ReadableSpan) -> float:
    return max(0, end_ns(span) - start_ns(span)) / 1e6


def num(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    return None


def iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc).isoformat()


def choose_root(spans: Sequence[ReadableSpan]) -> ReadableSpan | None:
    """The trace's root, or None for an empty list.

    Priority order: (1) the earliest span without a parent, else (2) the earliest span with a
    remote parent, else (3) the earliest span carrying ``otel_mlflow.root=True``, else (4) the
    earliest span (partial traces). (1) before (2): the spans of several processes (an OTLP
    receiver) have one true root, whatever the processes' clocks say.
    """
    if not spans:
        return None
    ordered = sorted(spans, key=start_ns)
    for span in ordered:
        if span.parent is None:
            return span
    for span in ordered:
        if is_trace_root(span):
            return span
    for span in ordered:
        if is_langchain_root(span):
            return span
    return ordered[0]


def load_json(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value
