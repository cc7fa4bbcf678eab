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
from hypothesis import given, settings
from hypothesis import strategies as st
from langchain_core.prompts import ChatPromptTemplate

from otel_mlflow._tracing.content import messages as MSG
from otel_mlflow._tracing.content.values import Content
from otel_mlflow._tracing.content.serialize import Serializer
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
         [{"type": "uri", "modality": "image", "uri": "https://x/y.png"}]),
        # Inline media: the size in bytes, never the data (QUJD is 3 bytes, QUI= 2).
        ([{"type": "image_url", "image_url": "data:image/png;base64,QUJD"}],
         [{"type": "blob", "modality": "image", "mime_type": "image/png", "size": 3}]),
        ([{"type": "image", "base64": "QUJD", "mime_type": "image/jpeg"}],
         [{"type": "blob", "modality": "image", "mime_type": "image/jpeg", "size": 3}]),
        ([{"type": "image", "url": "https://x"}],
         [{"type": "uri", "modality": "image", "uri": "https://x"}]),
        ([{"type": "audio", "source_type": "base64", "data": "QUI=", "mime_type": "audio/wav"}],
         [{"type": "blob", "modality": "audio", "mime_type": "audio/wav", "size": 2}]),
        ([{"type": "file", "base64": "QUJDQUJD", "mime_type": "application/pdf"}],
         [{"type": "blob", "modality": "file", "mime_type": "application/pdf", "size": 6}]),
        ([{"type": "file", "file_id": "files/abc", "mime_type": "application/pdf"}],
         [{"type": "file", "modality": "file", "mime_type": "application/pdf",
           "file_id": "files/abc"}]),
        ([{"type": "media", "file_uri": "gs://b/clip.mp4", "mime_type": "video/mp4"}],
         [{"type": "uri", "modality": "video", "mime_type": "video/mp4",
           "uri": "gs://b/clip.mp4"}]),
        ([{"type": "media", "data": b"\x00" * 10, "mime_type": "image/webp"}],
         [{"type": "blob", "modality": "image", "mime_type": "image/webp", "size": 10}]),
        ([{"type": "thinking", "thinking": "first, ...", "signature": "c2ln"}],
         [{"type": "reasoning", "content": "first, ..."}]),
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


# --- the direct JSON path (``_content.Content``) against the general one ----------------------
_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", "東京の天気は？ 🎉", "my key AIzaSyA1234567890abcdefghijklmnopqrstuv ok",
                     "password: hunter22", 'quote " back \\ nl \n', "\ud800 lone surrogate",
                     "x" * 1500, "QUJD" * 400, "data:image/png;base64," + "iVBOR" * 300]),
)
_args = st.dictionaries(st.sampled_from(["city", "n", "api_key", "nested"]),
                        st.one_of(st.integers(), _text, st.lists(st.integers(), max_size=3)),
                        max_size=3)
_call = st.builds(lambda name, args, ident: {"name": name, "args": args, "id": ident},
                  st.sampled_from(["get_weather", "add"]), _args,
                  st.one_of(st.none(), st.text(max_size=8)))
_blocks = st.lists(st.one_of(st.builds(lambda t: {"type": "text", "text": t}, _text),
                             st.just({"type": "image_url", "image_url": {"url": "http://x/y.png"}})),
                   max_size=2)
_message = st.one_of(
    st.builds(lambda c, n: HumanMessage(content=c, name=n), st.one_of(_text, _blocks),
              st.one_of(st.none(), st.sampled_from(["bob", "ア"]))),
    st.builds(lambda c: SystemMessage(content=c), st.one_of(_text, _blocks)),
    st.builds(lambda c, calls: AIMessage(content=c, tool_calls=calls), _text,
              st.lists(_call, max_size=2)),
    st.builds(lambda c, i: ToolMessage(content=c, tool_call_id=i), _text, st.text(max_size=8)),
    st.builds(lambda c: ChatMessage(role="critic", content=c), _text),
)


@settings(max_examples=200, deadline=None)
@given(messages=st.lists(_message, min_size=1, max_size=4), cap=st.sampled_from([256, 2000, 16384]))
def test_content_direct_json_equals_general_path(messages: list[Any], cap: int) -> None:
    """Every ``Content`` method gives exactly ``dumps`` of the ``_messages`` conversion."""
    ser = Serializer(max_chars=cap)
    content = Content(ser)
    memo: dict[int, Any] = {}
    for use_memo in (None, memo, memo):  # the second memo pass is served from the memo
        assert content.value(messages, use_memo) == ser.dumps(MSG.to_content(messages))
        assert content.value(messages[0], use_memo) == ser.dumps(MSG.to_content(messages[0]))
        data, system = MSG.chat_input(messages)
        assert content.chat_input(messages, use_memo) == (
            ser.dumps(data), ser.dumps(system) if system else None
        )
        generations = [ChatGeneration(message=m) for m in messages
                       if isinstance(m, AIMessage)]
        assert content.outputs(generations, None, use_memo) == ser.dumps(
            MSG.output_messages(generations)
        )


def test_content_memo_never_serves_a_replaced_content() -> None:
    content = Content(Serializer())
    memo: dict[int, Any] = {}
    message = HumanMessage("first")
    assert "first" in content.value([message], memo)
    message.content = "second"
    assert "second" in content.value([message], memo)
    reply = AIMessage("", tool_calls=[{"name": "f", "args": {"a": 1}, "id": "c1"}])
    assert '"a":1' in content.value(reply, memo)
    reply.tool_calls = [{"name": "f", "args": {"a": 2}, "id": "c1", "type": "tool_call"}]
    assert '"a":2' in content.value(reply, memo)


def test_content_of_a_real_prompt_value_and_reply_matches_general_path() -> None:
    prompt = ChatPromptTemplate.from_messages([("system", "あなたは助手です。"), ("user", "{q}")])
    recorder = Recorder()
    (prompt | FakeChatModel()).invoke({"q": "東京は？"}, config={"callbacks": [recorder]})
    ser = Serializer()
    content = Content(ser)
    prompt_value = [c for c in recorder.calls if c.event == "on_chain_end"][0].args[0]
    (end,) = [c for c in recorder.calls if c.event == "on_llm_end"]
    generations = end.args[0].generations[0]
    memo: dict[int, Any] = {}
    assert content.value(prompt_value, memo) == ser.dumps(MSG.to_content(prompt_value))
    assert content.outputs(generations, None, memo) == ser.dumps(MSG.output_messages(generations))
    assert "あなたは助手です。" in content.value(prompt_value, memo)


def test_a_streamed_model_reply_reads_as_one_text() -> None:
    # What langchain-google-genai's stream merges into with include_thoughts=True.
    merged = AIMessage(content=[{"type": "thinking", "thinking": "hmm", "index": 0},
                                {"type": "text", "text": "abc ", "index": 1}, "def ghi"])
    assert MSG.message_parts(merged) == [{"type": "reasoning", "content": "hmm"},
                                         {"type": "text", "content": "abc def ghi"}]
    # A user's separate text blocks stay separate.
    assert len(MSG.message_parts(HumanMessage(content=["a", "b"]))) == 2
