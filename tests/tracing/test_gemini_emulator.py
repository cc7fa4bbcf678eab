"""The local Gemini emulator, driven by the real ``ChatVertexAI`` client over REST (no tracer)."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import requests
from google.api_core import exceptions as google_exceptions
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.tools import tool

from otel_mlflow.testing.gemini_emulator import GeminiEmulator, Reply, Usage

MODEL_PATH = "/v1beta1/projects/test-project/locations/us-central1/publishers/google/models"


def test_default_reply_echoes_the_prompt_and_logs_the_request(
    gemini_emulator: GeminiEmulator,
) -> None:
    llm = gemini_emulator.chat_model("gemini-2.0-flash", temperature=0.3, top_p=0.9, top_k=20,
                                     max_tokens=50)
    message = llm.invoke([SystemMessage("Be brief."), HumanMessage("say hello please")])

    assert message.content == "Echo: say hello please"
    (request,) = gemini_emulator.requests
    assert request.method == "POST"
    assert request.path == f"{MODEL_PATH}/gemini-2.0-flash:generateContent"
    assert request.model == "gemini-2.0-flash"
    assert not request.stream
    assert request.prompt_text == "say hello please"
    assert request.system_instruction == "Be brief."
    config = request.generation_config
    assert config["temperature"] == pytest.approx(0.3)
    assert config["topP"] == pytest.approx(0.9)
    assert config["topK"] == 20
    assert config["maxOutputTokens"] == 50
    assert request.headers["content-type"] == "application/json"
    # Derived usage: words of system + prompt in, words of the echo out, total = in + out.
    assert message.usage_metadata is not None
    assert message.usage_metadata["input_tokens"] == 5
    assert message.usage_metadata["output_tokens"] == 4
    assert message.usage_metadata["total_tokens"] == 9


def test_queued_text_with_usage_metadata_reaches_the_message(
    gemini_emulator: GeminiEmulator,
) -> None:
    gemini_emulator.queue_text(
        "Bonjour",
        usage=Usage(prompt=12, candidates=3, total=40, cached=4, thoughts=25),
        finish_reason="MAX_TOKENS",
        model_version="gemini-2.0-flash-001",
    )
    message = gemini_emulator.chat_model().invoke("Say hello in French")

    assert message.content == "Bonjour"
    usage = message.usage_metadata
    assert usage is not None
    assert (usage["input_tokens"], usage["output_tokens"], usage["total_tokens"]) == (12, 3, 40)
    assert usage.get("input_token_details", {}).get("cache_read") == 4
    assert usage.get("output_token_details", {}).get("reasoning") == 25
    assert message.response_metadata["finish_reason"] == "MAX_TOKENS"
    raw = message.response_metadata["usage_metadata"]
    assert raw["total_token_count"] == 40
    assert gemini_emulator.pending_replies == 0


def test_replies_are_used_in_order_then_the_default_resumes(
    gemini_emulator: GeminiEmulator,
) -> None:
    gemini_emulator.queue(Reply(text="first"), Reply(text="second"))
    llm = gemini_emulator.chat_model()
    assert [llm.invoke(p).content for p in ("a", "b", "c")] == ["first", "second", "Echo: c"]


def test_stream_is_a_chunked_json_array_parsed_by_the_real_client(
    gemini_emulator: GeminiEmulator,
) -> None:
    gemini_emulator.queue_text("one two three four five six", stream_chunks=3,
                               usage=Usage(prompt=2, candidates=6, total=8))
    chunks = list(gemini_emulator.chat_model().stream("count to six"))

    texts = [c.content for c in chunks if c.content]
    assert len(texts) == 3
    assert "".join(texts) == "one two three four five six"
    (request,) = gemini_emulator.requests
    assert request.stream
    assert request.path.endswith(":streamGenerateContent")
    total = chunks[0]
    for chunk in chunks[1:]:
        total = total + chunk
    assert total.usage_metadata is not None
    assert total.usage_metadata["total_tokens"] == 8


def test_raw_stream_response_is_a_json_array(gemini_emulator: GeminiEmulator) -> None:
    gemini_emulator.queue_text("abcdef", stream_chunks=2)
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    response = requests.post(f"{gemini_emulator.url}{MODEL_PATH}/m:streamGenerateContent",
                             json=body, timeout=10)
    assert response.status_code == 200
    payload = json.loads(response.text)
    assert isinstance(payload, list) and len(payload) == 2
    assert [p["candidates"][0]["content"]["parts"][0]["text"] for p in payload] == ["abc", "def"]
    assert "usageMetadata" not in payload[0]
    assert payload[1]["candidates"][0]["finishReason"] == "STOP"
    assert payload[1]["usageMetadata"]["totalTokenCount"] >= 1
    assert {p["modelVersion"] for p in payload} == {"m"}


def test_model_version_can_be_scripted(gemini_emulator: GeminiEmulator) -> None:
    gemini_emulator.queue_text("v", model_version="gemini-2.0-flash-001", response_id="r-1")
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    response = requests.post(f"{gemini_emulator.url}{MODEL_PATH}/m:generateContent", json=body,
                             timeout=10).json()
    assert response["modelVersion"] == "gemini-2.0-flash-001"
    assert response["responseId"] == "r-1"


def test_unknown_endpoint_answers_google_error_json(gemini_emulator: GeminiEmulator) -> None:
    response = requests.post(f"{gemini_emulator.url}{MODEL_PATH}/m:countTokens", json={},
                             timeout=10)
    assert response.status_code == 404
    assert response.json()["error"]["status"] == "NOT_FOUND"
    assert gemini_emulator.requests[-1].api_method == "countTokens"


def test_function_call_reply_becomes_tool_calls(gemini_emulator: GeminiEmulator) -> None:
    @tool
    def get_weather(city: str) -> str:
        """Weather for a city."""
        return f"sunny in {city}"

    gemini_emulator.queue_function_call("get_weather", {"city": "Kyoto"})
    llm = gemini_emulator.chat_model().bind_tools([get_weather])
    message = llm.invoke("weather in Kyoto?")

    assert len(message.tool_calls) == 1
    call = message.tool_calls[0]
    assert call["name"] == "get_weather"
    assert call["args"] == {"city": "Kyoto"}
    assert gemini_emulator.requests[-1].tool_names == ["get_weather"]


@pytest.mark.parametrize(
    ("status", "exception"),
    [
        (400, google_exceptions.BadRequest),
        (429, google_exceptions.TooManyRequests),
        (500, google_exceptions.InternalServerError),
    ],
)
def test_http_errors_raise_the_google_exception(
    gemini_emulator: GeminiEmulator, status: int, exception: type[Exception]
) -> None:
    gemini_emulator.queue_error(status, f"emulated failure {status}")
    with pytest.raises(exception, match=f"emulated failure {status}"):
        gemini_emulator.chat_model().invoke("fail please")
    assert len(gemini_emulator.requests) == 1  # max_retries=0: no retry


def test_delay_holds_the_reply(gemini_emulator: GeminiEmulator) -> None:
    gemini_emulator.queue_delay(0.3, "late")
    started = time.monotonic()
    assert gemini_emulator.chat_model().invoke("wait").content == "late"
    assert time.monotonic() - started >= 0.3


def test_japanese_text_round_trips(gemini_emulator: GeminiEmulator) -> None:
    prompt = "日本の首都はどこですか?"
    message = gemini_emulator.chat_model().invoke(prompt)
    assert message.content == f"Echo: {prompt}"
    assert gemini_emulator.requests[0].prompt_text == prompt


def test_batch_requests_are_all_logged(gemini_emulator: GeminiEmulator) -> None:
    prompts = [f"prompt {i}" for i in range(4)]
    replies = gemini_emulator.chat_model().batch(prompts)
    assert sorted(r.content for r in replies) == sorted(f"Echo: {p}" for p in prompts)
    assert sorted(r.prompt_text for r in gemini_emulator.requests) == sorted(prompts)


def test_async_transport_ainvoke_and_astream(gemini_emulator: GeminiEmulator) -> None:
    async def main() -> tuple[str, list[str]]:
        llm = gemini_emulator.chat_model(async_transport=True)
        single = await llm.ainvoke("async hello")
        gemini_emulator.queue_text("abcdef", stream_chunks=2)
        chunks = [c.content async for c in llm.astream("stream it")]
        return str(single.content), [str(c) for c in chunks if c]

    single, chunks = asyncio.run(main())
    assert single == "Echo: async hello"
    assert chunks == ["abc", "def"]
    assert [r.stream for r in gemini_emulator.requests] == [False, True]
    assert "aiohttp" in gemini_emulator.requests[0].headers.get("user-agent", "")


def test_start_stop_are_idempotent_and_close_everything() -> None:
    emulator = GeminiEmulator().start()
    assert emulator.start() is emulator
    url = emulator.url
    session = requests.Session()  # keeps its connection alive after the call
    assert session.post(f"{url}{MODEL_PATH}/m:generateContent", json={}, timeout=5).ok
    emulator.stop()
    emulator.stop()
    with pytest.raises(RuntimeError):
        _ = emulator.url
    # Neither a new connection nor the kept-alive one is answered any more.
    with pytest.raises(requests.ConnectionError):
        requests.post(f"{url}{MODEL_PATH}/m:generateContent", json={}, timeout=2)
    with pytest.raises(requests.ConnectionError):
        session.post(f"{url}{MODEL_PATH}/m:generateContent", json={}, timeout=2)
    session.close()


def test_clear_forgets_requests_and_replies(gemini_emulator: GeminiEmulator) -> None:
    gemini_emulator.queue_text("never sent")
    requests.post(f"{gemini_emulator.url}/other", json={}, timeout=5)
    gemini_emulator.clear()
    assert gemini_emulator.requests == []
    assert gemini_emulator.pending_replies == 0


def test_completion_model_is_a_real_vertexai_llm(gemini_emulator: GeminiEmulator) -> None:
    from langchain_core.language_models.llms import BaseLLM

    llm = gemini_emulator.completion_model(temperature=0.1)
    assert isinstance(llm, BaseLLM)
    assert llm.invoke("complete this") == "Echo: complete this"
    (request,) = gemini_emulator.requests
    assert request.api_method == "generateContent"
    assert request.generation_config["temperature"] == pytest.approx(0.1)


# --- google-genai's routes (raw HTTP: the wire format the SDK parses) ---------------------------
GEMINI_API_PATH = "/v1beta/models/gemini-2.5-flash"
_BODY = {"contents": [{"role": "user", "parts": [{"text": "hi there"}]}],
         "generationConfig": {"thinkingConfig": {"includeThoughts": True}}}


def test_gemini_api_requires_an_api_key(gemini_emulator: GeminiEmulator) -> None:
    url = gemini_emulator.url + GEMINI_API_PATH + ":generateContent"
    refused = requests.post(url, json=_BODY, timeout=10)
    assert refused.status_code == 403
    assert refused.json()["error"]["status"] == "PERMISSION_DENIED"
    gemini_emulator.queue_text("hello", thoughts="thinking...")
    answered = requests.post(url, json=_BODY, headers={"x-goog-api-key": "k"}, timeout=10)
    assert answered.status_code == 200
    parts = answered.json()["candidates"][0]["content"]["parts"]
    assert parts == [{"text": "thinking...", "thought": True}, {"text": "hello"}]
    assert [r.backend for r in gemini_emulator.requests] == ["gemini_api", "gemini_api"]
    assert gemini_emulator.requests[-1].api_key == "k"


def test_sse_stream_and_a_stream_broken_midway(gemini_emulator: GeminiEmulator) -> None:
    url = (gemini_emulator.url + MODEL_PATH + "/gemini-2.5-flash:streamGenerateContent?alt=sse")
    gemini_emulator.queue_text("abcdef", stream_chunks=3, usage=Usage(prompt=2, candidates=3))
    response = requests.post(url, json=_BODY, timeout=10)
    assert response.headers["content-type"] == "text/event-stream"
    events = [json.loads(line[len("data: "):]) for line in response.text.splitlines()
              if line.startswith("data: ")]
    assert ["".join(p["text"] for p in e["candidates"][0]["content"]["parts"]) for e in events] \
        == ["ab", "cd", "ef"]
    assert events[-1]["usageMetadata"]["candidatesTokenCount"] == 3
    assert "finishReason" not in events[0]["candidates"][0]

    gemini_emulator.queue_text("abcdef", stream_chunks=3, break_after_chunks=1)
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.post(url, json=_BODY, timeout=10).content  # noqa: B018 - reads the body


def test_blocked_prompt_and_grounding_bodies(gemini_emulator: GeminiEmulator) -> None:
    from otel_mlflow.testing import Grounding

    url = gemini_emulator.url + MODEL_PATH + "/gemini-2.5-flash:generateContent"
    gemini_emulator.queue(Reply(block_reason="SAFETY",
                                safety_ratings={"HARM_CATEGORY_HARASSMENT": "HIGH"}))
    blocked = requests.post(url, json=_BODY, timeout=10).json()
    assert "candidates" not in blocked
    assert blocked["promptFeedback"]["blockReason"] == "SAFETY"
    gemini_emulator.queue(Reply(text="ok", grounding=Grounding(("q",), (("https://a", "A"),))))
    grounded = requests.post(url, json=_BODY, timeout=10).json()["candidates"][0]
    assert grounded["groundingMetadata"]["webSearchQueries"] == ["q"]
    assert grounded["groundingMetadata"]["groundingChunks"] == [
        {"web": {"uri": "https://a", "title": "A"}}]
