"""The real ``ChatGoogleGenerativeAI`` (langchain-google-genai over google-genai) against the
local emulator, traced by OtelTracer, on both backends: Vertex AI (``vertexai=True``: project,
location, a static token) and the Gemini Developer API (an API key).

Every call mode (invoke / stream / batch / ainvoke / astream) is checked against what the
emulator received and answered: provider, request model and parameters (thinking budget and
level included), response model, one finish reason per candidate, usage as reported (cached and
thinking tokens), TTFT only when streamed. Then thinking on and off, a 2 MB image (bounded
attributes, no bytes), grounding and safety ratings, a blocked prompt, an API error and a
stream that breaks midway. ADC lookups are refused (``no_adc``): nothing may look for Google
credentials. The ``llm_calls.json`` row of a span is built by ``_record.llm_table.table_row``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from typing import Any

import httpx
import pytest
from langchain_core.messages import HumanMessage, SystemMessage
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

import otel_mlflow._record as R
from otel_mlflow._common import semconv as attrs
from otel_mlflow._record.llm_table import table_row
from otel_mlflow.testing import GeminiEmulator, Grounding, Usage
from otel_mlflow.testing.gemini_emulator import EMULATOR_API_KEY
from tests.tracing.test_vertexai import Traced, attr, input_texts, output_texts, traced  # noqa: F401

MODEL = "gemini-2.5-flash"
PARAMS: dict[str, Any] = {"temperature": 0.3, "top_p": 0.9, "top_k": 20, "max_output_tokens": 64,
                          "thinking_budget": 128}
# Gemini's total includes thinking tokens: 12 + 3 + 25 = 40, never recomputed.
USAGE = Usage(prompt=12, candidates=3, total=40, cached=4, thoughts=25)
BACKENDS = {"vertex": (True, attrs.PROVIDER_GCP_VERTEX_AI),
            "gemini_api": (False, attrs.PROVIDER_GCP_GEMINI)}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest) -> tuple[bool, str]:
    return BACKENDS[request.param]


def llm(emulator: GeminiEmulator, backend: tuple[bool, str], **kwargs: Any) -> Any:
    return emulator.genai_chat_model(MODEL, vertexai=backend[0], **kwargs)


def row(span: ReadableSpan) -> dict[str, Any]:
    return dict(zip(R.TABLE_COLUMNS, table_row(span)))


def output_parts(span: ReadableSpan) -> list[dict[str, Any]]:
    return [part for message in json.loads(attr(span, attrs.GEN_AI_OUTPUT_MESSAGES))
            for part in message["parts"]]


def assert_backend_request(emulator: GeminiEmulator, backend: tuple[bool, str]) -> None:
    """Each request went where the real client sends it, authenticated as it would be."""
    for request in emulator.requests:
        if backend[0]:
            assert request.path.startswith(
                "/v1beta1/projects/test-project/locations/us-central1/publishers/google/models/")
            assert request.headers.get("authorization") == "Bearer emulator-token"
        else:
            assert request.path.startswith("/v1beta/models/")
            assert request.api_key == EMULATOR_API_KEY
        assert request.sse == request.stream  # google-genai streams server-sent events


def assert_chat(span: ReadableSpan, backend: tuple[bool, str], usage: Usage | None = USAGE,
                params: bool = True) -> None:
    assert span.name == f"chat {MODEL}"
    assert attr(span, attrs.GEN_AI_PROVIDER_NAME) == backend[1]
    assert attr(span, attrs.GEN_AI_REQUEST_MODEL) == MODEL
    assert attr(span, attrs.GEN_AI_RESPONSE_MODEL) == MODEL
    assert span.status.status_code is not StatusCode.ERROR
    if params:
        assert attr(span, attrs.GEN_AI_REQUEST_TEMPERATURE) == pytest.approx(0.3)
        assert attr(span, attrs.GEN_AI_REQUEST_TOP_P) == pytest.approx(0.9)
        assert attr(span, attrs.GEN_AI_REQUEST_TOP_K) == 20
        assert attr(span, attrs.GEN_AI_REQUEST_MAX_TOKENS) == 64
        assert attr(span, attrs.REQUEST_THINKING_BUDGET) == 128
    if usage is not None:
        assert attr(span, attrs.GEN_AI_USAGE_INPUT_TOKENS) == usage.prompt
        # LangChain's output tokens for this client: candidates + thoughts (3 + 25).
        assert attr(span, attrs.GEN_AI_USAGE_OUTPUT_TOKENS) == usage.candidates + (
            usage.thoughts or 0)
        assert attr(span, attrs.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS) == usage.thoughts
        assert attr(span, attrs.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS) == (usage.cached or 0)
        assert attr(span, attrs.USAGE_TOTAL_TOKENS) == usage.total
    assert attr(span, attrs.GEN_AI_RESPONSE_FINISH_REASONS) == ("STOP",)


def test_invoke(traced: Traced, genai_emulator: GeminiEmulator, backend: tuple[bool, str]) -> None:
    genai_emulator.queue_text("Bonjour", usage=USAGE)
    message = llm(genai_emulator, backend, **PARAMS).invoke(
        [SystemMessage("Answer in French."), HumanMessage("Say hello")], config=traced.config)
    assert message.content == "Bonjour"

    (span,) = traced.chat_spans()
    assert_chat(span, backend)
    assert_backend_request(genai_emulator, backend)
    (request,) = genai_emulator.requests
    assert input_texts(span) == request.texts == ["Say hello"]
    assert request.system_instruction == "Answer in French."
    assert request.thinking_config.get("thinking_budget", request.thinking_config.get(
        "thinkingBudget")) == 128
    assert output_texts(span) == ["Bonjour"]
    assert attr(span, attrs.TTFT_MS) is None and not attr(span, attrs.STREAMED)


def test_stream_records_ttft(traced: Traced, genai_emulator: GeminiEmulator,
                             backend: tuple[bool, str]) -> None:
    genai_emulator.queue_text("one two three four five six", usage=USAGE, stream_chunks=3,
                              chunk_delay_seconds=0.05)
    chunks = llm(genai_emulator, backend, **PARAMS).stream("count", config=traced.config)
    text = "".join(str(c.content) for c in chunks)
    assert text == "one two three four five six"

    (span,) = traced.chat_spans()
    assert_chat(span, backend)
    assert_backend_request(genai_emulator, backend)
    assert genai_emulator.requests[0].stream
    assert "".join(output_texts(span)) == text
    assert attr(span, attrs.STREAMED) is True
    ttft = attr(span, attrs.TTFT_MS)
    duration_ms = ((span.end_time or 0) - (span.start_time or 0)) / 1e6
    assert isinstance(ttft, float) and 0 < ttft <= duration_ms
    assert duration_ms - ttft >= 90  # two more chunks followed, 50 ms apart


def test_batch_pairs_each_prompt_with_its_reply(
    traced: Traced, genai_emulator: GeminiEmulator, backend: tuple[bool, str]
) -> None:
    prompts = ["alpha question", "beta question", "gamma question"]
    replies = llm(genai_emulator, backend).batch(prompts, config=traced.config)
    assert sorted(str(r.content) for r in replies) == sorted(f"Echo: {p}" for p in prompts)

    spans = traced.chat_spans()
    assert len(spans) == 3 and len({s.context.trace_id for s in spans}) == 3
    assert_backend_request(genai_emulator, backend)
    for span in spans:
        (prompt,) = input_texts(span)
        assert output_texts(span) == [f"Echo: {prompt}"]
        # The emulator's derived usage: words in (2), words out (3), total = in + out.
        assert_chat(span, backend, Usage(prompt=2, candidates=3, total=5), params=False)


def test_ainvoke_and_astream(traced: Traced, genai_emulator: GeminiEmulator,
                             backend: tuple[bool, str]) -> None:
    genai_emulator.queue_text("async answer", usage=USAGE)
    genai_emulator.queue_text("streamed asynchronously", usage=USAGE, stream_chunks=2)
    model = llm(genai_emulator, backend, **PARAMS)

    async def main() -> tuple[str, str]:
        answer = await model.ainvoke("async question", config=traced.config)
        streamed = "".join([str(c.content) async for c in model.astream(
            "go", config=traced.config)])
        return str(answer.content), streamed

    assert asyncio.run(main()) == ("async answer", "streamed asynchronously")
    invoked, streamed = sorted(traced.chat_spans(), key=lambda s: s.start_time or 0)
    assert_backend_request(genai_emulator, backend)
    assert_chat(invoked, backend)
    assert_chat(streamed, backend)
    assert attr(invoked, attrs.TTFT_MS) is None
    assert isinstance(attr(streamed, attrs.TTFT_MS), float)
    assert "".join(output_texts(streamed)) == "streamed asynchronously"
    assert [r.stream for r in genai_emulator.requests] == [False, True]


@pytest.mark.parametrize("include_thoughts", [True, False])
def test_thought_summaries_are_reasoning_parts_never_answer_text(
    traced: Traced, genai_emulator: GeminiEmulator, backend: tuple[bool, str],
    include_thoughts: bool,
) -> None:
    thoughts = "The user wants a greeting; French was asked for."
    genai_emulator.queue_text("Bonjour", usage=USAGE, thoughts=thoughts)
    message = llm(genai_emulator, backend, include_thoughts=include_thoughts,
                  thinking_level="low").invoke("Say hello", config=traced.config)
    assert (thoughts in json.dumps(message.content)) is include_thoughts

    (span,) = traced.chat_spans()
    assert attr(span, attrs.REQUEST_INCLUDE_THOUGHTS) is include_thoughts
    assert attr(span, attrs.REQUEST_THINKING_LEVEL) == "low"
    # Thinking tokens are counted either way; the summary only comes back when asked for.
    assert attr(span, attrs.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS) == 25
    parts = output_parts(span)
    assert [p["content"] for p in parts if p["type"] == "text"] == ["Bonjour"]
    reasoning = [p["content"] for p in parts if p["type"] == "reasoning"]
    assert reasoning == ([thoughts] if include_thoughts else [])
    table = row(span)
    assert table["output"] == "Bonjour"
    assert table["reasoning"] == (thoughts if include_thoughts else None)


def test_several_candidates_give_one_finish_reason_each(
    traced: Traced, genai_emulator: GeminiEmulator
) -> None:
    genai_emulator.queue_text("maybe", finish_reasons=("STOP", "MAX_TOKENS"))
    result = llm(genai_emulator, (True, "")).generate([[HumanMessage("two answers")]],
                                                      callbacks=traced.config["callbacks"])
    assert len(result.generations[0]) == 2
    (span,) = traced.chat_spans()
    assert attr(span, attrs.GEN_AI_RESPONSE_FINISH_REASONS) == ("STOP", "MAX_TOKENS")
    assert [m["finish_reason"] for m in json.loads(attr(span, attrs.GEN_AI_OUTPUT_MESSAGES))] \
        == ["STOP", "MAX_TOKENS"]


def test_two_megabyte_image_is_described_not_copied(
    traced: Traced, genai_emulator: GeminiEmulator, backend: tuple[bool, str]
) -> None:
    image = base64.b64encode(os.urandom(2 * 1024 * 1024)).decode("ascii")
    content: list[Any] = [
        {"type": "text", "text": "What is in this picture and this document?"},
        {"type": "image", "base64": image, "mime_type": "image/png"},
        {"type": "file", "base64": base64.b64encode(b"%PDF-1.4 " * 1400).decode(),
         "mime_type": "application/pdf"},
    ]
    if backend[0]:  # gs:// references are a Vertex AI feature
        content.append({"type": "media", "file_uri": "gs://bucket/clip.mp4",
                        "mime_type": "video/mp4"})
    genai_emulator.queue_text("A cat and a form.", usage=Usage(prompt=1300, candidates=5))
    reply = llm(genai_emulator, backend).invoke([HumanMessage(content=content)],
                                                config=traced.config)
    assert reply.content == "A cat and a form."

    # The client really sent the bytes ...
    (request,) = genai_emulator.requests
    # (google-genai sends the part as the client holds it: snake or camel case)
    inline = [p.get("inlineData") or p.get("inline_data") for p in request.parts
              if "inlineData" in p or "inline_data" in p]
    assert inline[0].get("mimeType", inline[0].get("mime_type")) == "image/png"
    assert len(inline[0]["data"]) == len(image)
    # ... and no span carries them: every attribute stays small.
    spans = traced.exporter.get_finished_spans()
    for span in spans:
        for key, value in (span.attributes or {}).items():
            assert len(str(value)) < 20_000, (span.name, key)
            assert image[:64] not in str(value)
    (span,) = traced.chat_spans()
    (message,) = json.loads(attr(span, attrs.GEN_AI_INPUT_MESSAGES))
    media = [p for p in message["parts"] if p["type"] != "text"]
    assert media[0] == {"type": "blob", "modality": "image", "mime_type": "image/png",
                        "size": 2 * 1024 * 1024}
    assert media[1] == {"type": "blob", "modality": "file", "mime_type": "application/pdf",
                        "size": 9 * 1400}
    if backend[0]:
        assert media[2] == {"type": "uri", "modality": "video", "mime_type": "video/mp4",
                            "uri": "gs://bucket/clip.mp4"}
    text = row(span)["input"]
    assert "[image/png, 2.0 MB]" in text and "[application/pdf, 12 KB]" in text
    assert len(text) < 500


def test_grounding_and_safety_ratings_on_the_chat_span(
    traced: Traced, genai_emulator: GeminiEmulator, backend: tuple[bool, str]
) -> None:
    grounding = Grounding(queries=("weather kyoto today",),
                          sources=(("https://weather.example/kyoto", "Kyoto weather"),
                                   ("https://news.example/kansai", "Kansai news")))
    genai_emulator.queue_text("Sunny, 21 °C.", grounding=grounding, safety_ratings={
        "HARM_CATEGORY_HARASSMENT": "NEGLIGIBLE", "HARM_CATEGORY_DANGEROUS_CONTENT": "LOW"})
    llm(genai_emulator, backend).invoke("Weather in Kyoto?", config=traced.config)

    (span,) = traced.chat_spans()
    assert attr(span, attrs.GEMINI_GROUNDING_QUERIES) == ("weather kyoto today",)
    assert attr(span, attrs.GEMINI_GROUNDING_SOURCES) == (
        "https://weather.example/kyoto", "https://news.example/kansai")
    assert attr(span, attrs.GEMINI_SAFETY_RATINGS) == ("HARASSMENT:NEGLIGIBLE",
                                                       "DANGEROUS_CONTENT:LOW")
    assert span.status.status_code is not StatusCode.ERROR


@pytest.mark.parametrize("streamed", [False, True])
def test_blocked_prompt_is_an_error_span(
    traced: Traced, genai_emulator: GeminiEmulator, backend: tuple[bool, str], streamed: bool
) -> None:
    genai_emulator.queue_blocked("SAFETY", safety_ratings={"HARM_CATEGORY_DANGEROUS_CONTENT":
                                                           "HIGH"})
    model = llm(genai_emulator, backend)
    if streamed:
        text = "".join(c.text for c in model.stream("something bad", config=traced.config))
    else:
        text = model.invoke("something bad", config=traced.config).text
    assert text == ""  # the client answers an empty message, it does not raise

    (span,) = traced.chat_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert attr(span, attrs.ERROR_TYPE) == attrs.PROMPT_BLOCKED_ERROR
    assert attr(span, attrs.GEMINI_BLOCK_REASON) == "SAFETY"
    assert attr(span, attrs.GEMINI_SAFETY_RATINGS) == ("DANGEROUS_CONTENT:HIGH:blocked",)
    assert row(span)["error"] == "otel_mlflow.prompt_blocked: prompt blocked (SAFETY)"
    assert span.status.description == "prompt blocked (SAFETY)"


def test_api_error(traced: Traced, genai_emulator: GeminiEmulator,
                   backend: tuple[bool, str]) -> None:
    model = llm(genai_emulator, backend)
    genai_emulator.queue_error(429, "quota exceeded")
    with pytest.raises(Exception) as untraced:
        model.invoke("fail")
    genai_emulator.queue_error(429, "quota exceeded")
    with pytest.raises(Exception) as traced_error:
        model.invoke("fail", config=traced.config)
    assert type(traced_error.value) is type(untraced.value)  # tracing changes nothing
    assert str(traced_error.value) == str(untraced.value)

    (span,) = traced.chat_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert attr(span, attrs.ERROR_TYPE) == type(untraced.value).__name__ == "GoogleRateLimitError"
    assert "quota exceeded" in (attr(span, attrs.ERROR_MESSAGE) or "")


def test_stream_that_breaks_midway(traced: Traced, genai_emulator: GeminiEmulator,
                                   backend: tuple[bool, str]) -> None:
    genai_emulator.queue_text("one two three four five six", stream_chunks=3,
                              break_after_chunks=1)
    received: list[str] = []
    with pytest.raises(httpx.RemoteProtocolError):
        for chunk in llm(genai_emulator, backend).stream("count", config=traced.config):
            received.append(str(chunk.content))
    assert "".join(received) == "one two t"  # the first of 3 chunks arrived, then it broke

    (span,) = traced.chat_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert attr(span, attrs.ERROR_TYPE) == "RemoteProtocolError"
    assert any(event.name == "exception" for event in span.events)
    assert traced.tracer.open_runs == 0


def test_streamed_thoughts_stay_out_of_the_one_answer_text(
    traced: Traced, genai_emulator: GeminiEmulator, backend: tuple[bool, str]
) -> None:
    genai_emulator.queue_text("one two three", thoughts="Count to three.", stream_chunks=3,
                              usage=USAGE)
    chunks = list(llm(genai_emulator, backend, include_thoughts=True).stream(
        "count", config=traced.config))
    assert "".join(c.text for c in chunks) == "one two three"

    (span,) = traced.chat_spans()
    assert output_parts(span) == [{"type": "reasoning", "content": "Count to three."},
                                  {"type": "text", "content": "one two three"}]
    assert (row(span)["output"], row(span)["reasoning"]) == ("one two three", "Count to three.")
    assert isinstance(attr(span, attrs.TTFT_MS), float)


def test_five_megabyte_data_url_through_a_chain_stays_out_of_every_span(
    traced: Traced, genai_emulator: GeminiEmulator
) -> None:
    from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder

    image = base64.b64encode(os.urandom(5 * 1024 * 1024)).decode("ascii")
    message = HumanMessage(content=[
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64," + image}}])
    chain = ChatPromptTemplate.from_messages([MessagesPlaceholder("history")]) | llm(
        genai_emulator, (True, ""))
    chain.invoke({"history": [message]}, config=traced.config)

    spans = traced.exporter.get_finished_spans()
    assert len(spans) == 3  # the sequence, the prompt, the chat model
    longest = max(len(str(v)) for s in spans for v in (s.attributes or {}).values())
    assert longest < 1000
    (span,) = traced.chat_spans()
    assert row(span)["input"] == "What is this?\n[image/jpeg, 5.0 MB]"
