"""Pure conversion: an OTLP trace payload -> the payload MLflow's Traces view renders best.

MLflow ingests any OTLP span and translates the GenAI semantic conventions itself
(``mlflow/tracing/otel/translation/genai_semconv.py``): ``gen_ai.operation.name`` becomes the span
type for chat / text_completion / execute_tool / invoke_agent, ``gen_ai.input.messages`` /
``gen_ai.output.messages`` the inputs / outputs and ``gen_ai.usage.*`` the token usage. What it
cannot know about are otel_mlflow's own keys, so this module adds MLflow's reserved span
attributes where MLflow would otherwise show nothing:

1. ``mlflow.spanType``: from ``gen_ai.operation.name`` (invoke_workflow -> CHAIN, retrieval ->
   RETRIEVER, ...), else from the LangChain run type. Never overrides a value already present.
2. ``mlflow.spanInputs`` / ``mlflow.spanOutputs``: the JSON of ``otel_mlflow.input`` /
   ``otel_mlflow.output`` (chains, tools, retrievers) as structured values so MLflow shows
   objects, not quoted JSON text. On LLM spans, ``gen_ai.system_instructions`` +
   ``gen_ai.input.messages`` become ``{"messages": [{"role", "content"}, ...]}`` (system prompt
   first) and ``gen_ai.output.messages`` ``{"choices": [{"message": ...}]}``: the chat forms
   MLflow renders as a conversation and extracts plain-text previews from. The root span's values
   become the trace's request / response preview. Absent content (capture off) stays absent.
3. ``mlflow.chat.tokenUsage`` on LLM spans: input / output / cache-read tokens and the total as
   the provider reported it (``otel_mlflow.usage.total_tokens``); MLflow would otherwise recompute
   input + output, which undercounts Gemini's thinking tokens.
4. ``mlflow.llm.cost`` on priced LLM spans (``add_costs``, called when the record is built, with
   the figures of the run's ``cost.*`` metrics): ``{"input_cost", "output_cost", "total_cost"}``
   in USD, MLflow's own form (``mlflow.tracing.constant.CostKey``). MLflow's store prices a span
   itself only when it has no ``mlflow.llm.cost`` but has token usage and a model
   (``mlflow.tracing.otel.translation.translate_span_when_storing``), and that pricing first
   downloads MLflow's model catalog (``MLFLOW_MODEL_CATALOG_URI``): seconds per request on an
   offline server. An LLM span with usage but no price gets ``mlflow.llm.model`` = "" instead
   (MLflow then skips pricing: no model, no cost; the span keeps ``gen_ai.request.model``), so
   the Traces view shows the same cost as the run, and no upload waits on a download.
5. ``mlflow.traceTag.otel_mlflow.langchain.run_id`` on the root span (``add_costs``): MLflow
   turns it into the trace tag ``otel_mlflow.langchain.run_id``, by which ``log_feedback`` finds
   the trace of a LangChain run id after a restart.
6. A span whose parent is not in the payload (a LangChain root under a web request span exported
   elsewhere) becomes a root in MLflow's copy, with the original parent id kept in
   ``otel_mlflow.otel.parent_span_id``: MLflow marks a trace complete only when it sees a root.

Only MLflow's copy changes: trace ids, span ids, names, times, events and every original attribute
are kept, so the Traces view, the run's ``span_tree.json`` and any OTLP backend agree on ids.
No I/O and no MLflow import here; ``otel_mlflow._sink.traces`` does the writing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan

from otel_mlflow._common import semconv as A

# MLflow's reserved span attribute keys (mlflow.tracing.constant.SpanAttributeKey), spelled out
# so this module stays free of MLflow imports.
MLFLOW_SPAN_TYPE = "mlflow.spanType"
MLFLOW_SPAN_INPUTS = "mlflow.spanInputs"
MLFLOW_SPAN_OUTPUTS = "mlflow.spanOutputs"
MLFLOW_CHAT_USAGE = "mlflow.chat.tokenUsage"
MLFLOW_LLM_COST = "mlflow.llm.cost"
MLFLOW_LLM_MODEL = "mlflow.llm.model"
MLFLOW_TRACE_TAG_PREFIX = "mlflow.traceTag."
TRACE_TAG_LC_RUN_ID = "otel_mlflow.langchain.run_id"
ORIGINAL_PARENT_SPAN_ID = "otel_mlflow.otel.parent_span_id"
MLFLOW_TRACE_ID_PREFIX = "tr-"

# mlflow.entities.SpanType values.
_TYPE_BY_OPERATION: dict[str, str] = {
    A.OP_CHAT: "CHAT_MODEL",
    A.OP_TEXT_COMPLETION: "LLM",
    A.OP_EXECUTE_TOOL: "TOOL",
    A.OP_INVOKE_AGENT: "AGENT",
    A.OP_INVOKE_WORKFLOW: "CHAIN",
    A.OP_RETRIEVAL: "RETRIEVER",
}
_TYPE_BY_RUN_TYPE: dict[str, str] = {
    A.RUN_CHAIN: "CHAIN",
    A.RUN_LLM: "LLM",
    A.RUN_CHAT_MODEL: "CHAT_MODEL",
    A.RUN_TOOL: "TOOL",
    A.RUN_RETRIEVER: "RETRIEVER",
}

# Nesting cap when turning decoded JSON into AnyValue (recursion guard for hostile payloads).
_MAX_DEPTH = 64


@dataclass(frozen=True)
class MlflowTracePayload:
    """One trace's spans ready for MLflow: the rewritten request and what to link."""

    request: ExportTraceServiceRequest
    otel_trace_ids: tuple[str, ...]  # 32 hex chars each, in first-seen order
    span_count: int

    @property
    def mlflow_trace_ids(self) -> tuple[str, ...]:
        return tuple(mlflow_trace_id(t) for t in self.otel_trace_ids)


def mlflow_trace_id(otel_trace_id_hex: str) -> str:
    """MLflow's id for an OTel trace (``tr-`` + 32 hex), as its OTLP ingestion derives it."""
    return MLFLOW_TRACE_ID_PREFIX + otel_trace_id_hex


def add_costs(
    request: ExportTraceServiceRequest,
    costs: Mapping[bytes, tuple[float, float] | None],
    *,
    root_span_id: bytes | None = None,
    lc_run_id: str | None = None,
) -> None:
    """Write each LLM span's cost (rule 4) and the LangChain run id trace tag (rule 5).

    ``costs`` maps the 8-byte span id of every LLM span with token usage to its
    ``(input_usd, output_usd)``, or None when it has no price.
    """
    for span in _iter_spans(request):
        if span.span_id in costs:
            keys = {kv.key for kv in span.attributes}
            if MLFLOW_LLM_COST in keys:
                continue
            cost = costs[span.span_id]
            if cost is None:
                if MLFLOW_LLM_MODEL not in keys:
                    _add(span, MLFLOW_LLM_MODEL, "")
            else:
                _add(span, MLFLOW_LLM_COST, {
                    "input_cost": cost[0], "output_cost": cost[1], "total_cost": cost[0] + cost[1],
                })
        if lc_run_id and span.span_id == root_span_id:
            _add(span, MLFLOW_TRACE_TAG_PREFIX + TRACE_TAG_LC_RUN_ID, lc_run_id)


def prepare_for_mlflow(otlp: bytes) -> MlflowTracePayload:
    """Parse a serialized ``ExportTraceServiceRequest`` and add MLflow's reserved attributes.

    Raises ``ValueError`` for bytes that are not a request with at least one span (the caller
    cannot make such a payload valid by retrying).
    """
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(otlp)
    except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError or RuntimeWarning types
        raise ValueError(f"not an OTLP ExportTraceServiceRequest: {exc}") from exc
    spans = list(_iter_spans(request))
    if not spans:
        raise ValueError("OTLP payload holds no spans")

    present = {(s.trace_id, s.span_id) for s in spans}
    trace_ids: dict[str, None] = {}
    for span in spans:
        if len(span.trace_id) != 16 or len(span.span_id) != 8:
            raise ValueError("OTLP span with an invalid trace or span id")
        trace_ids.setdefault(span.trace_id.hex(), None)
        _enrich_span(span, present)
    return MlflowTracePayload(request, tuple(trace_ids), len(spans))


def _iter_spans(request: ExportTraceServiceRequest) -> Iterator[ProtoSpan]:
    for resource_spans in request.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            yield from scope_spans.spans


def _enrich_span(span: ProtoSpan, present: set[tuple[bytes, bytes]]) -> None:
    attrs = {kv.key: kv.value for kv in span.attributes}

    if span.parent_span_id and (span.trace_id, span.parent_span_id) not in present:
        _add(span, ORIGINAL_PARENT_SPAN_ID, span.parent_span_id.hex())
        span.parent_span_id = b""

    operation = _string(attrs.get(A.GEN_AI_OPERATION_NAME))
    if MLFLOW_SPAN_TYPE not in attrs:
        span_type = _TYPE_BY_OPERATION.get(operation or "") or _TYPE_BY_RUN_TYPE.get(
            _string(attrs.get(A.LC_RUN_TYPE)) or ""
        )
        if span_type:
            _add(span, MLFLOW_SPAN_TYPE, span_type)

    is_llm = operation in A.LLM_OPERATIONS
    if MLFLOW_SPAN_INPUTS not in attrs:
        if is_llm and A.INPUT not in attrs:
            value = chat_inputs(
                _json_attr(attrs.get(A.GEN_AI_INPUT_MESSAGES)),
                _json_attr(attrs.get(A.GEN_AI_SYSTEM_INSTRUCTIONS)),
            )
        else:
            value = _json_attr(attrs.get(A.INPUT))
        if value is not None:
            _add(span, MLFLOW_SPAN_INPUTS, value)
    if MLFLOW_SPAN_OUTPUTS not in attrs:
        if is_llm and A.OUTPUT not in attrs:
            value = chat_outputs(_json_attr(attrs.get(A.GEN_AI_OUTPUT_MESSAGES)))
        else:
            value = _json_attr(attrs.get(A.OUTPUT))
        if value is not None:
            _add(span, MLFLOW_SPAN_OUTPUTS, value)

    if is_llm and MLFLOW_CHAT_USAGE not in attrs and (usage := _token_usage(attrs)):
        _add(span, MLFLOW_CHAT_USAGE, usage)


def chat_inputs(messages: Any, system_instructions: Any) -> Any:
    """GenAI input messages (+ system instructions) -> ``{"messages": [...]}`` in chat format.

    MLflow renders ``{"messages": [{"role", "content"}]}`` as a chat and takes the trace's
    request preview from the root span's last user message, so a model called directly previews
    as plain text. The system instructions become the first message (they are not in
    ``gen_ai.input.messages``). Values not shaped as GenAI messages are returned unchanged.
    """
    if not _is_genai_messages(messages):
        return messages
    out: list[dict[str, Any]] = []
    system_text = _parts_text(system_instructions) if isinstance(system_instructions, list) else (
        system_instructions if isinstance(system_instructions, str) else None
    )
    if system_text and not any(m.get("role") == "system" for m in messages):
        out.append({"role": "system", "content": system_text})
    out.extend(_chat_message(m) for m in messages)
    return {"messages": out}


def chat_outputs(messages: Any) -> Any:
    """GenAI output messages -> ``{"choices": [...]}``, MLflow's chat-completion response form."""
    if not _is_genai_messages(messages):
        return messages
    choices = []
    for index, message in enumerate(messages):
        choice: dict[str, Any] = {"index": index, "message": _chat_message(message)}
        if message.get("finish_reason") is not None:
            choice["finish_reason"] = message["finish_reason"]
        choices.append(choice)
    return {"choices": choices}


def _is_genai_messages(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(m, Mapping) and "role" in m and isinstance(m.get("parts"), list) for m in value
    )


def _parts_text(parts: Sequence[Any]) -> str:
    texts = [
        str(p.get("content", ""))
        for p in parts
        if isinstance(p, Mapping) and p.get("type") == "text"
    ]
    return "\n".join(texts)


def _chat_message(message: Mapping[str, Any]) -> dict[str, Any]:
    """One GenAI message (role + parts) -> one chat message (role + content, tool calls)."""
    parts = message.get("parts") or []
    role = message.get("role")
    chat: dict[str, Any] = {"role": role, "content": _parts_text(parts)}
    tool_calls = []
    for part in parts:
        if not isinstance(part, Mapping):
            continue
        kind = part.get("type")
        if kind == "tool_call":
            arguments = part.get("arguments")
            tool_calls.append({
                "id": part.get("id"),
                "type": "function",
                "function": {
                    "name": part.get("name"),
                    "arguments": arguments if isinstance(arguments, str)
                    else json.dumps(arguments, ensure_ascii=False, default=str),
                },
            })
        elif kind == "tool_call_response":
            chat["role"] = "tool"
            chat["tool_call_id"] = part.get("id")
            response = part.get("response")
            chat["content"] = response if isinstance(response, str) else json.dumps(
                response, ensure_ascii=False, default=str
            )
    if tool_calls:
        chat["tool_calls"] = tool_calls
    if message.get("name"):
        chat["name"] = message["name"]
    return chat


def _token_usage(attrs: Mapping[str, AnyValue]) -> dict[str, int]:
    input_tokens = _int(attrs.get(A.GEN_AI_USAGE_INPUT_TOKENS))
    output_tokens = _int(attrs.get(A.GEN_AI_USAGE_OUTPUT_TOKENS))
    total = _int(attrs.get(A.USAGE_TOTAL_TOKENS))
    if total is None and input_tokens is not None and output_tokens is not None:
        total = input_tokens + output_tokens
    usage: dict[str, int] = {}
    if input_tokens is not None:
        usage["input_tokens"] = input_tokens
    if output_tokens is not None:
        usage["output_tokens"] = output_tokens
    if total is not None:
        usage["total_tokens"] = total
    cache_read = _int(attrs.get(A.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS))
    if usage and cache_read is not None:
        usage["cache_read_input_tokens"] = cache_read
    return usage


def _string(value: AnyValue | None) -> str | None:
    if value is not None and value.WhichOneof("value") == "string_value":
        return value.string_value
    return None


def _int(value: AnyValue | None) -> int | None:
    if value is None:
        return None
    kind = value.WhichOneof("value")
    if kind == "int_value":
        return int(value.int_value)
    if kind == "double_value" and value.double_value.is_integer():
        return int(value.double_value)
    if kind == "string_value":
        try:
            return int(value.string_value)
        except ValueError:
            return None
    return None


def _json_attr(value: AnyValue | None) -> Any:
    """Decode a JSON-text attribute; text that is not JSON is shown as the text itself."""
    text = _string(value)
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _add(span: ProtoSpan, key: str, value: Any) -> None:
    kv = span.attributes.add()
    kv.key = key
    _set_any_value(kv.value, value, 0)


def _set_any_value(target: AnyValue, value: Any, depth: int) -> None:
    """Set ``target`` from a decoded-JSON value (None, bool, int, float, str, list, dict)."""
    if depth > _MAX_DEPTH:
        target.string_value = json.dumps(value, ensure_ascii=False, default=str)
    elif value is None:
        # An unset AnyValue is OTLP's null; MLflow decodes it back to None.
        return
    elif isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, int):
        if -(2**63) <= value < 2**63:
            target.int_value = value
        else:
            target.string_value = str(value)
    elif isinstance(value, float):
        target.double_value = value
    elif isinstance(value, str):
        target.string_value = _utf8(value)
    elif isinstance(value, Mapping):
        kvlist = target.kvlist_value
        kvlist.SetInParent()
        for key, item in value.items():
            kv = kvlist.values.add()
            kv.key = _utf8(str(key))
            _set_any_value(kv.value, item, depth + 1)
    elif isinstance(value, Sequence):
        array = target.array_value
        array.SetInParent()
        for item in value:
            _set_any_value(array.values.add(), item, depth + 1)
    else:
        target.string_value = str(value)


def _utf8(text: str) -> str:
    """``text`` if it encodes as UTF-8; lone surrogates (from JSON ``\\ud800`` escapes) -> U+FFFD."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in text)
    return text
