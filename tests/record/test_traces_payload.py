"""The payload for MLflow's Traces view: chat spans show the system prompt, previews read as text.

Pure: OTLP bytes from the real OTel SDK in, rewritten protobuf out; no MLflow, no I/O.
"""

from __future__ import annotations

import json
from typing import Any

from google.protobuf.json_format import MessageToDict
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_mlflow._common import semconv as A
from otel_mlflow._record.traces_payload import (
    MLFLOW_SPAN_INPUTS,
    MLFLOW_SPAN_OUTPUTS,
    chat_inputs,
    chat_outputs,
    prepare_for_mlflow,
)

SYSTEM = [{"type": "text", "content": "Answer in Japanese."}]
USER = [{"role": "user", "parts": [{"type": "text", "content": "東京の天気は?"}]}]
ASSISTANT = [{"role": "assistant", "parts": [{"type": "text", "content": "晴れです"}],
              "finish_reason": "stop"}]


def _decode(value: dict[str, Any]) -> Any:
    """MessageToDict of an AnyValue -> the plain value."""
    if "kvlistValue" in value:
        return {kv["key"]: _decode(kv.get("value", {})) for kv in value["kvlistValue"].get("values", [])}
    if "arrayValue" in value:
        return [_decode(v) for v in value["arrayValue"].get("values", [])]
    if "intValue" in value:
        return int(value["intValue"])
    for key in ("stringValue", "boolValue", "doubleValue"):
        if key in value:
            return value[key]
    return None


def _chat_span_attrs(**attributes: Any) -> dict[str, Any]:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    span = provider.get_tracer("t").start_span(
        "chat gemini-2.5-flash",
        attributes={A.GEN_AI_OPERATION_NAME: A.OP_CHAT, A.LC_RUN_TYPE: A.RUN_CHAT_MODEL,
                    **attributes},
    )
    span.end()
    payload = prepare_for_mlflow(encode_spans(memory.get_finished_spans()).SerializeToString())
    (otlp_span,) = [s for rs in payload.request.resource_spans for ss in rs.scope_spans
                    for s in ss.spans]
    return {kv.key: _decode(MessageToDict(kv.value)) for kv in otlp_span.attributes}


def test_chat_inputs_put_the_system_prompt_first() -> None:
    attrs = _chat_span_attrs(**{
        A.GEN_AI_SYSTEM_INSTRUCTIONS: json.dumps(SYSTEM, ensure_ascii=False),
        A.GEN_AI_INPUT_MESSAGES: json.dumps(USER, ensure_ascii=False),
    })
    assert attrs[MLFLOW_SPAN_INPUTS] == {"messages": [
        {"role": "system", "content": "Answer in Japanese."},
        {"role": "user", "content": "東京の天気は?"},
    ]}
    # The GenAI attributes themselves are kept as they were.
    assert json.loads(attrs[A.GEN_AI_SYSTEM_INSTRUCTIONS]) == SYSTEM


def test_chat_outputs_are_a_chat_completion_with_plain_text() -> None:
    attrs = _chat_span_attrs(**{A.GEN_AI_OUTPUT_MESSAGES: json.dumps(ASSISTANT, ensure_ascii=False)})
    assert attrs[MLFLOW_SPAN_OUTPUTS] == {"choices": [
        {"index": 0, "message": {"role": "assistant", "content": "晴れです"}, "finish_reason": "stop"}
    ]}


def test_chat_inputs_without_system_instructions_hold_only_the_messages() -> None:
    attrs = _chat_span_attrs(**{A.GEN_AI_INPUT_MESSAGES: json.dumps(USER, ensure_ascii=False)})
    assert attrs[MLFLOW_SPAN_INPUTS] == {"messages": [{"role": "user", "content": "東京の天気は?"}]}


def test_a_system_message_already_in_the_messages_is_not_repeated() -> None:
    messages = [{"role": "system", "parts": [{"type": "text", "content": "Be brief."}]}, *USER]
    assert chat_inputs(messages, SYSTEM)["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "東京の天気は?"},
    ]


def test_tool_calls_and_tool_responses_keep_their_ids() -> None:
    messages = [
        {"role": "assistant", "parts": [
            {"type": "tool_call", "id": "c1", "name": "get_weather", "arguments": {"city": "東京"}}
        ]},
        {"role": "tool", "parts": [{"type": "tool_call_response", "id": "c1", "response": "sunny"}]},
    ]
    assert chat_inputs(messages, None)["messages"] == [
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "c1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "東京"}'}}
        ]},
        {"role": "tool", "content": "sunny", "tool_call_id": "c1"},
    ]


def test_values_not_shaped_as_genai_messages_pass_unchanged() -> None:
    assert chat_inputs("plain prompt", SYSTEM) == "plain prompt"
    assert chat_outputs({"x": 1}) == {"x": 1}
    assert chat_inputs(None, SYSTEM) is None
