"""Pure conversion: LLM spans -> rows of ``llm_calls.json`` (readable input/output text, usage).

``messages_text`` turns the GenAI parts-schema message JSON into the text a person reads in
MLflow's table view; ``table_row`` builds one row in ``TABLE_COLUMNS`` order. No I/O.

Reasoning parts (thought summaries) are left out of ``output`` and read in the ``reasoning``
column; media parts read as a placeholder, ``[image/png, 12 KB]`` (inline, with its size) or
``[application/pdf, gs://bucket/doc.pdf]`` (a reference); the bytes are never on the span.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan

from otel_mlflow._common import semconv as A
from otel_mlflow._record.span_facts import (
    span_attrs,
    duration_ms,
    is_error,
    load_json,
    num,
    span_id_hex,
    trace_id_hex,
)

_REASONING_MARK = '"reasoning"'  # in the JSON text of any output with a reasoning part
_MEDIA_PARTS = frozenset({"blob", "uri", "file"})
_REASONING = "reasoning"


def _size_text(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{round(size / 1024)} KB"
    return f"{size / (1024 * 1024):.1f} MB"


def _media_text(part: Mapping[str, Any]) -> str:
    """``[image/png, 12 KB]``, ``[video/mp4, gs://b/clip.mp4]``, ``[application/pdf, file f1]``."""
    ptype = part.get("type")
    what = part.get("mime_type") or part.get("modality") or ptype
    if ptype == "blob":
        size = part.get("size")
        detail = _size_text(size) if isinstance(size, int) else "inline"
    elif ptype == "uri":
        detail = str(part.get("uri"))
    else:
        detail = "file " + str(part.get("file_id"))
    return f"[{what}, {detail}]"


def _part_text(part: Any) -> str:
    if not isinstance(part, Mapping):
        return part if isinstance(part, str) else json.dumps(part, ensure_ascii=False)
    ptype = part.get("type")
    if ptype in _MEDIA_PARTS:
        return _media_text(part)
    if ptype == _REASONING:
        return ""  # read in the reasoning column, never in the answer
    if ptype == "text" or (ptype is None and "content" in part):
        content = part.get("content")
        return content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
    if ptype == "tool_call":
        args = part.get("arguments")
        args_text = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
        return f"tool_call {part.get('name', '')}({args_text})"
    if ptype == "tool_call_response":
        resp = part.get("response", part.get("result"))
        text = resp if isinstance(resp, str) else json.dumps(resp, ensure_ascii=False)
        return f"tool_result: {text}"
    return json.dumps(part, ensure_ascii=False)


def _message_text(message: Any) -> tuple[str, str]:
    if not isinstance(message, Mapping):
        return "", _part_text(message)
    parts = message.get("parts")
    if isinstance(parts, list):
        text = "\n".join(t for t in (_part_text(p) for p in parts) if t)
    elif "content" in message:
        text = _part_text({"type": "text", "content": message.get("content")})
    else:
        text = json.dumps(message, ensure_ascii=False)
    return str(message.get("role") or ""), text


def reasoning_text(raw: Any) -> str | None:
    """The reasoning parts (thought summaries) of a ``gen_ai.output.messages`` JSON value."""
    msgs = load_json(raw)
    if not isinstance(msgs, list):
        return None
    texts = [
        part["content"]
        for message in msgs if isinstance(message, Mapping)
        for part in (message.get("parts") if isinstance(message.get("parts"), list) else ())
        if isinstance(part, Mapping) and part.get("type") == _REASONING
        and isinstance(part.get("content"), str) and part["content"]
    ]
    return "\n\n".join(texts) or None


def messages_text(raw: Any, system: Any = None) -> str | None:
    """Readable text of a ``gen_ai.*.messages`` JSON attribute (plus system instructions).

    One message reads as its bare text; several read as ``role: text`` blocks. Unparseable
    content is returned as it is; None when there is nothing.
    """
    blocks: list[tuple[str, str]] = []
    sys_val = load_json(system)
    if sys_val:
        items = sys_val if isinstance(sys_val, list) else [sys_val]
        blocks.append(("system", "\n".join(_part_text(p) for p in items)))
    msgs = load_json(raw)
    if msgs is None and not blocks:
        return None
    if isinstance(msgs, list):
        blocks.extend(_message_text(m) for m in msgs)
    elif isinstance(msgs, str):
        blocks.append(("", msgs))
    elif msgs is not None:
        blocks.append(_message_text(msgs))
    if len(blocks) == 1:
        return blocks[0][1]
    return "\n\n".join(f"{role}: {text}" if role else text for role, text in blocks)


def _finish_reason(span: ReadableSpan) -> str | None:
    reasons = span_attrs(span).get(A.GEN_AI_RESPONSE_FINISH_REASONS)
    if reasons is None:
        return None
    if isinstance(reasons, str):
        return reasons
    return ",".join(str(r) for r in reasons) or None


def model_of(span: ReadableSpan) -> str | None:
    attrs = span_attrs(span)
    model = attrs.get(A.GEN_AI_RESPONSE_MODEL) or attrs.get(A.GEN_AI_REQUEST_MODEL)
    return str(model) if model else None


def _error_text(span: ReadableSpan) -> str | None:
    if not is_error(span):
        return None
    attrs = span_attrs(span)
    etype = attrs.get(A.ERROR_TYPE)
    message = attrs.get(A.ERROR_MESSAGE) or (span.status.description if span.status else None)
    if etype and message:
        return f"{etype}: {message}"
    return str(etype or message or "error")


def _int_or_none(value: Any) -> int | None:
    number = num(value)
    return None if number is None else int(number)


def request_text(root_input: Any) -> str | None:
    """The ``request`` column: the LangChain root run's input variables as compact JSON text
    (``{"question": "..."}``), a plain string input as itself; None without content."""
    value = load_json(root_input)
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "), default=str)


def table_row(
    span: ReadableSpan, *, request: str | None = None, cost_usd: float | None = None
) -> tuple[Any, ...]:
    """One ``llm_calls.json`` row; ``request`` is the trace's (``request_text``), ``cost_usd``
    the call's (``otel_mlflow._record.cost``)."""
    attrs = span_attrs(span)
    ttft = num(attrs.get(A.TTFT_MS))
    in_tok = _int_or_none(attrs.get(A.GEN_AI_USAGE_INPUT_TOKENS))
    out_tok = _int_or_none(attrs.get(A.GEN_AI_USAGE_OUTPUT_TOKENS))
    out_raw = attrs.get(A.GEN_AI_OUTPUT_MESSAGES)
    if not isinstance(out_raw, str):
        out_raw = ""
    return (
        request,
        trace_id_hex(span.context.trace_id),
        span_id_hex(span.context.span_id),
        span.name,
        model_of(span),
        messages_text(attrs.get(A.GEN_AI_INPUT_MESSAGES), attrs.get(A.GEN_AI_SYSTEM_INSTRUCTIONS)),
        messages_text(attrs.get(A.GEN_AI_OUTPUT_MESSAGES)),
        reasoning_text(out_raw) if _REASONING_MARK in out_raw else None,
        _error_text(span),
        round(duration_ms(span), 3),
        None if ttft is None else round(ttft, 3),
        in_tok,
        out_tok,
        _int_or_none(attrs.get(A.USAGE_TOTAL_TOKENS)),
        None if cost_usd is None else round(cost_usd, 10),
        _finish_reason(span),
    )
