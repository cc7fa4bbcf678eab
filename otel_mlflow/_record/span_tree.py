"""Pure conversion: the finished spans of one trace -> the nested ``span_tree.json`` nodes.

No I/O. JSON-valued attributes (messages, inputs/outputs, metadata, tool arguments/results) are
stored parsed, so the tree reads as data rather than quoted JSON text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan

from otel_mlflow._common import semconv as A
from otel_mlflow._record.span_facts import (
    span_attrs,
    duration_ms,
    end_ns,
    iso,
    load_json,
    span_id_hex,
    start_ns,
)

_JSON_ATTRIBUTES = frozenset(
    {
        A.GEN_AI_INPUT_MESSAGES,
        A.GEN_AI_OUTPUT_MESSAGES,
        A.GEN_AI_SYSTEM_INSTRUCTIONS,
        A.INPUT,
        A.OUTPUT,
        A.LC_METADATA,
        A.GEN_AI_TOOL_CALL_ARGUMENTS,
        A.GEN_AI_TOOL_CALL_RESULT,
    }
)


def _attr_value(key: str, value: Any) -> Any:
    if key in _JSON_ATTRIBUTES:
        return load_json(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def _node(span: ReadableSpan) -> dict[str, Any]:
    attrs = span_attrs(span)
    status = span.status
    return {
        "name": span.name,
        "span_id": span_id_hex(span.context.span_id),
        "parent_id": span_id_hex(span.parent.span_id) if span.parent is not None else None,
        "kind": span.kind.name if span.kind is not None else None,
        "start_time": iso(start_ns(span)),
        "end_time": iso(end_ns(span)) if span.end_time else None,
        "start_time_ns": start_ns(span),
        "end_time_ns": span.end_time,
        "duration_ms": round(duration_ms(span), 3),
        "status": {
            "code": status.status_code.name if status is not None else "UNSET",
            "description": status.description if status is not None else None,
        },
        "attributes": {k: _attr_value(k, v) for k, v in attrs.items()},
        "events": [
            {
                "name": ev.name,
                "time": iso(ev.timestamp),
                "time_ns": ev.timestamp,
                "attributes": {k: _attr_value(k, v) for k, v in (ev.attributes or {}).items()},
            }
            for ev in span.events
        ],
        "children": [],
    }


def build_tree(spans: Sequence[ReadableSpan]) -> list[dict[str, Any]]:
    """Nested span dicts; a span whose parent is not in the trace becomes a top-level node."""
    ordered = sorted(spans, key=start_ns)
    nodes = {span.context.span_id: _node(span) for span in ordered}
    roots: list[dict[str, Any]] = []
    for span in ordered:
        node = nodes[span.context.span_id]
        parent = span.parent
        own_id = span.context.span_id
        if parent is not None and parent.span_id in nodes and parent.span_id != own_id:
            nodes[parent.span_id]["children"].append(node)
        else:
            roots.append(node)
    return roots
