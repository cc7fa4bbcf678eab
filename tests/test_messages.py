"""LangChain messages / generations -> GenAI parts schema, over real payloads."""

from __future__ import annotations

import json
from typing import Any

from langchain_core.messages import (
    AIMessage,
    ChatMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.outputs import ChatGeneration, Generation
from langchain_core.prompts import ChatPromptTemplate

from otel_mlflow import _messages as MSG
from tests._support.fake_models import FakeChatModel
from tests._support.recording import Recorder


def test_real_prompt_messages_split_system_and_keep_japanese() -> None:
    prompt = ChatPromptTemplate.from_messages(
        [("system", "あなたは丁寧な助手です。"), ("user", "{q}")]
    )
    recorder = Recorder()
    (prompt | FakeChatModel()).invoke({"q": "東京の天気は？"}, config={"callbacks": [recorder]})
    (start,) = recorder.starts("on_chat_model_start")
    messages, system = MSG.chat_input(start.args[1][0])
    assert system == [{"type": "text", "content": "あなたは丁寧な助手です。"}]
    assert messages == [{"role": "user", "parts": [{"type": "text", "content": "東京の天気は？"}]}]
    assert "東京" in json.dumps(messages, ensure_ascii=False)


def test_real_generation_output_with_finish_reason() -> None:
    recorder = Recorder()
    FakeChatModel(responses=["こんにちは"]).invoke("hi", config={"callbacks": [recorder]})
    (end,) = [c for c in recorder.calls if c.event == "on_llm_end"]
    out = MSG.output_messages(end.args[0].generations[0])
    assert out == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": "こんにちは"}],
            "finish_reason": "STOP",
        }
    ]


def test_tool_call_round_trip_parts() -> None:
    history = [
        HumanMessage("weather?"),
        AIMessage(content="", tool_calls=[{"name": "w", "args": {"city": "Tokyo"}, "id": "c1"}]),
        ToolMessage(content="sunny", tool_call_id="c1"),
    ]
    messages, system = MSG.chat_input(history)
    assert system == []
    assert messages == [
        {"role": "user", "parts": [{"type": "text", "content": "weather?"}]},
        {
            "role": "assistant",
            "parts": [
                {"type": "tool_call", "id": "c1", "name": "w", "arguments": {"city": "Tokyo"}}
            ],
        },
        {"role": "tool", "parts": [{"type": "tool_call_response", "id": "c1", "response": "sunny"}]},
    ]


def test_content_blocks_table() -> None:
    table: list[tuple[Any, list[dict[str, Any]]]] = [
        ("", []),
        ("hi", [{"type": "text", "content": "hi"}]),
        ([{"type": "text", "text": "a"}, "b"],
         [{"type": "text", "content": "a"}, {"type": "text", "content": "b"}]),
        ([{"type": "image_url", "image_url": {"url": "https://x/y.png"}}],
         [{"type": "uri", "uri": "https://x/y.png"}]),
        ([{"type": "image_url", "image_url": "data:image/png;base64,QUJD"}],
         [{"type": "blob", "mime_type": "image/png", "content": "QUJD"}]),
        ([{"type": "image", "base64": "QUJD", "mime_type": "image/jpeg"}],
         [{"type": "blob", "modality": "image", "mime_type": "image/jpeg", "content": "QUJD"}]),
        ([{"type": "image", "url": "https://x"}],
         [{"type": "uri", "uri": "https://x", "modality": "image"}]),
        ([{"type": "reasoning", "reasoning": "hmm"}], [{"type": "reasoning", "content": "hmm"}]),
        ([{"type": "custom", "z": 1}], [{"type": "custom", "z": 1}]),
        ([7], [{"type": "text", "content": "7"}]),
        (None, []),
    ]
    for content, expected in table:
        assert MSG.content_parts(content) == expected, content


def test_roles_table() -> None:
    assert MSG.role_of(HumanMessage("x")) == "user"
    assert MSG.role_of(AIMessage("x")) == "assistant"
    assert MSG.role_of(SystemMessage("x")) == "system"
    assert MSG.role_of(ToolMessage("x", tool_call_id="1")) == "tool"
    assert MSG.role_of(ChatMessage(role="critic", content="x")) == "critic"
    assert MSG.role_of(object()) == "user"


def test_system_content_blocks_and_named_messages() -> None:
    messages, system = MSG.chat_input(
        [SystemMessage(content=[{"type": "text", "text": "rules"}]), HumanMessage("q", name="bob")]
    )
    assert system == [{"type": "text", "content": "rules"}]
    assert messages == [{"role": "user", "parts": [{"type": "text", "content": "q"}], "name": "bob"}]


def test_text_completion_prompts_and_plain_generations() -> None:
    assert MSG.prompt_input(["a", "b"]) == [
        {"role": "user", "parts": [{"type": "text", "content": "a"}]},
        {"role": "user", "parts": [{"type": "text", "content": "b"}]},
    ]
    out = MSG.output_messages(
        [Generation(text="t", generation_info={"finish_reason": "length"}), Generation(text="")]
    )
    assert out == [
        {"role": "assistant", "parts": [{"type": "text", "content": "t"}], "finish_reason": "length"},
        {"role": "assistant", "parts": []},
    ]


def test_finish_reason_priority() -> None:
    gen = ChatGeneration(
        message=AIMessage("x", response_metadata={"finish_reason": "STOP"}),
        generation_info={"finish_reason": "OTHER"},
    )
    assert MSG.generation_finish_reason(gen) == "STOP"
    gen = ChatGeneration(message=AIMessage("x"), generation_info={"finish_reason": "OTHER"})
    assert MSG.generation_finish_reason(gen) == "OTHER"
    assert MSG.generation_finish_reason(Generation(text="x")) is None
