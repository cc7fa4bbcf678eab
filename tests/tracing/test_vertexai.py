"""The real ``ChatVertexAI`` client (REST) against the local Gemini emulator, traced by OtelTracer.

What the spans say is checked against what the emulator received and answered: request
parameters, usage from ``usageMetadata`` (cache reads, thinking tokens, total as reported), the
prompt text, tool calls, errors, streaming (TTFT only when streamed) and non-ASCII text.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from google.api_core import exceptions as google_exceptions
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.tools import tool
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from otel_mlflow._common import semconv as attrs
from otel_mlflow._tracing.handler import OtelTracer
from otel_mlflow.testing.gemini_emulator import GeminiEmulator, ReceivedRequest, Usage

MODEL = "gemini-2.0-flash"
PARAMS: dict[str, Any] = {"temperature": 0.3, "top_p": 0.9, "top_k": 20, "max_tokens": 64}


class Traced:
    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = OtelTracer(tracer_provider=self.provider)
        self.config: Any = {"callbacks": [self.tracer]}

    def chat_spans(self) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans()
                if (s.attributes or {}).get(attrs.GEN_AI_OPERATION_NAME) == attrs.OP_CHAT]


@pytest.fixture
def traced() -> Iterator[Traced]:
    pipe = Traced()
    yield pipe
    pipe.provider.shutdown()


def attr(span: ReadableSpan, key: str) -> Any:
    return (span.attributes or {}).get(key)


def part_texts(value: Any) -> list[str]:
    """Every text part's content in a GenAI parts-schema JSON value (messages or instructions)."""
    texts: list[str] = []
    if isinstance(value, dict):
        if value.get("type") == "text" and isinstance(value.get("content"), str):
            texts.append(value["content"])
        for item in value.values():
            if isinstance(item, (dict, list)):
                texts.extend(part_texts(item))
    elif isinstance(value, list):
        for item in value:
            texts.extend(part_texts(item))
    return texts


def input_texts(span: ReadableSpan) -> list[str]:
    raw = attr(span, attrs.GEN_AI_INPUT_MESSAGES)
    assert isinstance(raw, str), f"no {attrs.GEN_AI_INPUT_MESSAGES} on {span.name}"
    return part_texts(json.loads(raw))


def output_texts(span: ReadableSpan) -> list[str]:
    raw = attr(span, attrs.GEN_AI_OUTPUT_MESSAGES)
    assert isinstance(raw, str), f"no {attrs.GEN_AI_OUTPUT_MESSAGES} on {span.name}"
    return part_texts(json.loads(raw))


def assert_request_matches_span(request: ReceivedRequest, span: ReadableSpan) -> None:
    """The prompt the emulator received is the prompt the span records."""
    assert input_texts(span) == request.texts
    if request.system_instruction is not None:
        raw = attr(span, attrs.GEN_AI_SYSTEM_INSTRUCTIONS)
        assert isinstance(raw, str)
        assert part_texts(json.loads(raw)) == [request.system_instruction]


def assert_chat_basics(span: ReadableSpan) -> None:
    assert span.name == f"chat {MODEL}"
    assert attr(span, attrs.GEN_AI_PROVIDER_NAME) == attrs.PROVIDER_GCP_VERTEX_AI
    assert attr(span, attrs.GEN_AI_REQUEST_MODEL) == MODEL
    assert attr(span, attrs.LC_RUN_TYPE) == attrs.RUN_CHAT_MODEL


def assert_params(span: ReadableSpan) -> None:
    assert attr(span, attrs.GEN_AI_REQUEST_TEMPERATURE) == pytest.approx(PARAMS["temperature"])
    assert attr(span, attrs.GEN_AI_REQUEST_TOP_P) == pytest.approx(PARAMS["top_p"])
    assert attr(span, attrs.GEN_AI_REQUEST_TOP_K) == pytest.approx(PARAMS["top_k"])
    assert attr(span, attrs.GEN_AI_REQUEST_MAX_TOKENS) == PARAMS["max_tokens"]


def assert_usage(span: ReadableSpan, usage: Usage) -> None:
    assert attr(span, attrs.GEN_AI_USAGE_INPUT_TOKENS) == usage.prompt
    assert attr(span, attrs.GEN_AI_USAGE_OUTPUT_TOKENS) == usage.candidates
    assert attr(span, attrs.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS) == usage.cached
    assert attr(span, attrs.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS) == usage.thoughts
    assert attr(span, attrs.USAGE_TOTAL_TOKENS) == usage.total


# Gemini's total includes thinking tokens: 12 + 3 + 25 = 40, never recomputed as 12 + 3.
USAGE = Usage(prompt=12, candidates=3, total=40, cached=4, thoughts=25)


def test_invoke(traced: Traced, gemini_emulator: GeminiEmulator) -> None:
    gemini_emulator.queue_text("Bonjour", usage=USAGE, finish_reason="STOP")
    llm = gemini_emulator.chat_model(MODEL, **PARAMS)
    message = llm.invoke([SystemMessage("Answer in French."), HumanMessage("Say hello")],
                         config=traced.config)
    assert message.content == "Bonjour"

    (span,) = traced.chat_spans()
    (request,) = gemini_emulator.requests
    assert_chat_basics(span)
    assert_params(span)
    assert_usage(span, USAGE)
    assert_request_matches_span(request, span)
    assert request.generation_config["topK"] == PARAMS["top_k"]
    assert output_texts(span) == ["Bonjour"]
    assert attr(span, attrs.GEN_AI_RESPONSE_MODEL) == MODEL
    reasons = attr(span, attrs.GEN_AI_RESPONSE_FINISH_REASONS)
    assert reasons is not None and [r.lower() for r in reasons] == ["stop"]
    assert attr(span, attrs.TTFT_MS) is None
    assert not attr(span, attrs.STREAMED)
    assert span.status.status_code is not StatusCode.ERROR


def test_stream_records_ttft_and_usage(traced: Traced, gemini_emulator: GeminiEmulator) -> None:
    gemini_emulator.queue_text("one two three four five six", usage=USAGE, stream_chunks=3,
                               chunk_delay_seconds=0.05)
    llm = gemini_emulator.chat_model(MODEL, **PARAMS)
    text = "".join(str(c.content) for c in llm.stream("count", config=traced.config))
    assert text == "one two three four five six"

    (span,) = traced.chat_spans()
    assert_chat_basics(span)
    assert_params(span)
    assert_usage(span, USAGE)
    assert_request_matches_span(gemini_emulator.requests[0], span)
    assert "".join(output_texts(span)) == text
    assert attr(span, attrs.STREAMED) is True
    ttft = attr(span, attrs.TTFT_MS)
    duration_ms = ((span.end_time or 0) - (span.start_time or 0)) / 1e6
    assert isinstance(ttft, float) and 0 < ttft <= duration_ms
    # Two more chunks followed the first one 50 ms apart each.
    assert duration_ms - ttft >= 90


def test_batch_pairs_each_prompt_with_its_reply(
    traced: Traced, gemini_emulator: GeminiEmulator
) -> None:
    prompts = ["alpha question", "beta question", "gamma question"]
    replies = gemini_emulator.chat_model(MODEL).batch(prompts, config=traced.config)
    assert sorted(str(r.content) for r in replies) == sorted(f"Echo: {p}" for p in prompts)

    spans = traced.chat_spans()
    assert len(spans) == 3
    for span in spans:
        (prompt,) = input_texts(span)
        assert output_texts(span) == [f"Echo: {prompt}"]
        # The emulator's derived usage: words in, words out, total = in + out.
        assert attr(span, attrs.GEN_AI_USAGE_INPUT_TOKENS) == 2
        assert attr(span, attrs.GEN_AI_USAGE_OUTPUT_TOKENS) == 3
        assert attr(span, attrs.USAGE_TOTAL_TOKENS) == 5
    assert sorted(p for s in spans for p in input_texts(s)) == sorted(prompts)
    assert len({s.context.trace_id for s in spans}) == 3  # each call is its own root


def test_tool_calling_reply(traced: Traced, gemini_emulator: GeminiEmulator) -> None:
    @tool
    def get_weather(city: str) -> str:
        """Current weather for a city."""
        return f"Sunny in {city}"

    gemini_emulator.queue_function_call("get_weather", {"city": "Kyoto"},
                                        usage=Usage(prompt=30, candidates=5))
    llm = gemini_emulator.chat_model(MODEL).bind_tools([get_weather])
    message = llm.invoke("What's the weather in Kyoto?", config=traced.config)
    assert message.tool_calls[0]["name"] == "get_weather"

    (span,) = traced.chat_spans()
    assert_chat_basics(span)
    assert gemini_emulator.requests[0].tool_names == ["get_weather"]
    output = json.loads(attr(span, attrs.GEN_AI_OUTPUT_MESSAGES))
    calls = [part for message_ in output for part in message_.get("parts", [])
             if part.get("type") == "tool_call"]
    assert len(calls) == 1
    assert calls[0]["name"] == "get_weather"
    arguments = calls[0].get("arguments")
    if isinstance(arguments, str):
        arguments = json.loads(arguments)
    assert arguments == {"city": "Kyoto"}
    assert attr(span, attrs.GEN_AI_USAGE_INPUT_TOKENS) == 30
    assert attr(span, attrs.USAGE_TOTAL_TOKENS) == 35


def test_http_500_error(traced: Traced, gemini_emulator: GeminiEmulator) -> None:
    llm = gemini_emulator.chat_model(MODEL)
    gemini_emulator.queue_error(500, "the backend fell over")
    with pytest.raises(google_exceptions.InternalServerError) as untraced:
        llm.invoke("fail")
    gemini_emulator.queue_error(500, "the backend fell over")
    with pytest.raises(google_exceptions.InternalServerError) as traced_error:
        llm.invoke("fail", config=traced.config)
    # The app sees the same exception with or without tracing.
    assert type(traced_error.value) is type(untraced.value)
    assert str(traced_error.value) == str(untraced.value)

    (span,) = traced.chat_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert attr(span, attrs.ERROR_TYPE) == "InternalServerError"
    assert "the backend fell over" in (attr(span, attrs.ERROR_MESSAGE) or "")
    assert any(event.name == "exception" for event in span.events)


def test_japanese_prompt_stays_readable(traced: Traced, gemini_emulator: GeminiEmulator) -> None:
    prompt = "日本の首都はどこですか?"
    gemini_emulator.queue_text("東京です。", usage=Usage(prompt=9, candidates=4))
    assert gemini_emulator.chat_model(MODEL).invoke(prompt, config=traced.config).content == \
        "東京です。"

    (span,) = traced.chat_spans()
    assert_request_matches_span(gemini_emulator.requests[0], span)
    assert input_texts(span) == [prompt]
    assert output_texts(span) == ["東京です。"]
    raw_in = attr(span, attrs.GEN_AI_INPUT_MESSAGES)
    raw_out = attr(span, attrs.GEN_AI_OUTPUT_MESSAGES)
    assert prompt in raw_in and "\\u" not in raw_in
    assert "東京です。" in raw_out and "\\u" not in raw_out


def test_ainvoke(traced: Traced, gemini_emulator: GeminiEmulator) -> None:
    gemini_emulator.queue_text("async answer", usage=USAGE)

    async def main() -> str:
        llm = gemini_emulator.chat_model(MODEL, async_transport=True, **PARAMS)
        return str((await llm.ainvoke("async question", config=traced.config)).content)

    assert asyncio.run(main()) == "async answer"
    (span,) = traced.chat_spans()
    assert_chat_basics(span)
    assert_params(span)
    assert_usage(span, USAGE)
    assert_request_matches_span(gemini_emulator.requests[0], span)
    assert attr(span, attrs.TTFT_MS) is None


def test_astream(traced: Traced, gemini_emulator: GeminiEmulator) -> None:
    gemini_emulator.queue_text("streamed asynchronously", usage=USAGE, stream_chunks=2)

    async def main() -> str:
        llm = gemini_emulator.chat_model(MODEL, async_transport=True)
        return "".join([str(c.content) async for c in llm.astream("go", config=traced.config)])

    assert asyncio.run(main()) == "streamed asynchronously"
    (span,) = traced.chat_spans()
    assert_chat_basics(span)
    assert_usage(span, USAGE)
    assert "".join(output_texts(span)) == "streamed asynchronously"
    assert attr(span, attrs.STREAMED) is True
    assert isinstance(attr(span, attrs.TTFT_MS), float)
    assert gemini_emulator.requests[0].stream
