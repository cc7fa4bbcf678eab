"""Nesting with the rest of the app's telemetry, with the real ChatVertexAI client and emulator.

- The HTTP client span of the provider call (``opentelemetry-instrumentation-requests`` around the
  REST transport; for the async transport, which uses aiohttp, see ``aiohttp_spans``) is a child of
  that call's ``chat …`` span: sync, async, batch, streaming, abandoned streams, errors.
- A LangChain root run started inside a web-request span is that span's child.
- Nothing leaks: after every call the caller's current span is what it was before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import aiohttp
import pytest
from google.api_core import exceptions as google_exceptions
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from opentelemetry import trace
from opentelemetry.instrumentation.requests import RequestsInstrumentor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import INVALID_SPAN, Span, SpanKind

from otel_mlflow._common import semconv as attrs
from otel_mlflow._common import faults as _faults
from otel_mlflow._tracing import model_context as _model_context
from otel_mlflow._tracing import model_spans as _model_spans
from otel_mlflow._tracing.handler import OtelTracer
from otel_mlflow.testing.gemini_emulator import GeminiEmulator

REQUESTS_SCOPE = "opentelemetry.instrumentation.requests"
AIOHTTP_SCOPE = "tests.aiohttp_client"
HTTP_SCOPES = {REQUESTS_SCOPE, AIOHTTP_SCOPE}


class Pipeline:
    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = OtelTracer(tracer_provider=self.provider)
        self.config: Any = {"callbacks": [self.tracer]}

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def http_spans(self) -> list[ReadableSpan]:
        return [s for s in self.spans()
                if s.instrumentation_scope is not None
                and s.instrumentation_scope.name in HTTP_SCOPES]

    def chat_spans(self, operation: str = attrs.OP_CHAT) -> list[ReadableSpan]:
        return [s for s in self.spans()
                if (s.attributes or {}).get(attrs.GEN_AI_OPERATION_NAME) == operation]


@pytest.fixture
def pipeline() -> Iterator[Pipeline]:
    pipe = Pipeline()
    instrumentor = RequestsInstrumentor()
    if instrumentor.is_instrumented_by_opentelemetry:  # left on elsewhere: use our provider
        instrumentor.uninstrument()
    instrumentor.instrument(tracer_provider=pipe.provider)
    try:
        yield pipe
    finally:
        RequestsInstrumentor().uninstrument()
        pipe.provider.shutdown()


@pytest.fixture
def aiohttp_spans(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    """Client spans around aiohttp requests, made from the context current at request time.

    A stand-in for ``opentelemetry-instrumentation-aiohttp-client``: its releases pin an older
    ``opentelemetry-instrumentation`` than the one installed here, so it cannot be installed
    beside ``opentelemetry-instrumentation-requests``. Like it, the span starts in the requesting
    task's current context, which is exactly what these tests are about.
    """
    original = aiohttp.ClientSession._request
    http_tracer = pipeline.provider.get_tracer(AIOHTTP_SCOPE)

    async def _request(self: aiohttp.ClientSession, method: str, url: Any,
                       **kwargs: Any) -> Any:
        with http_tracer.start_as_current_span(method, kind=SpanKind.CLIENT,
                                               attributes={"url.full": str(url)}):
            return await original(self, method, url, **kwargs)

    monkeypatch.setattr(aiohttp.ClientSession, "_request", _request)


def assert_http_nested(pipe: Pipeline, calls: int, operation: str = attrs.OP_CHAT) -> None:
    """Every provider HTTP span is the child of a distinct LLM span and inside its time window."""
    chats = {s.context.span_id: s for s in pipe.chat_spans(operation)}
    https = pipe.http_spans()
    assert len(chats) == calls, [s.name for s in pipe.spans()]
    assert len(https) == calls, [s.name for s in pipe.spans()]
    parents = []
    for http in https:
        assert http.kind is SpanKind.CLIENT
        assert http.parent is not None, f"HTTP span {http.name} has no parent"
        chat = chats.get(http.parent.span_id)
        assert chat is not None, f"HTTP span parent is not a chat span: {http.parent}"
        assert http.context.trace_id == chat.context.trace_id
        assert chat.start_time <= http.start_time <= http.end_time <= chat.end_time
        parents.append(http.parent.span_id)
    assert len(set(parents)) == calls  # one HTTP call per chat span, none shared


def assert_nothing_current() -> None:
    assert trace.get_current_span() is INVALID_SPAN


# --- sync ------------------------------------------------------------------------------------
def test_invoke(pipeline: Pipeline, gemini_emulator: GeminiEmulator) -> None:
    llm = gemini_emulator.chat_model()
    assert llm.invoke("hello", config=pipeline.config).content == "Echo: hello"
    assert_nothing_current()
    assert_http_nested(pipeline, 1)
    assert pipeline.chat_spans()[0].name == "chat gemini-2.0-flash"


def test_stream(pipeline: Pipeline, gemini_emulator: GeminiEmulator) -> None:
    llm = gemini_emulator.chat_model()
    seen_inside = []
    for _chunk in llm.stream("stream this please", config=pipeline.config):
        seen_inside.append(trace.get_current_span())
    assert seen_inside and all(span is INVALID_SPAN for span in seen_inside)
    assert_nothing_current()
    assert_http_nested(pipeline, 1)
    assert gemini_emulator.requests[0].stream


def test_chain_stream(pipeline: Pipeline, gemini_emulator: GeminiEmulator) -> None:
    chain = (ChatPromptTemplate.from_template("Tell me about {topic}")
             | gemini_emulator.chat_model() | StrOutputParser())
    text = "".join(chain.stream({"topic": "otters"}, config=pipeline.config))
    assert text == "Echo: Tell me about otters"
    assert_nothing_current()
    assert_http_nested(pipeline, 1)


def test_batch_concurrent_calls_each_nest_under_their_own_chat_span(
    pipeline: Pipeline, gemini_emulator: GeminiEmulator
) -> None:
    for index in range(4):
        gemini_emulator.queue_delay(0.15, f"reply {index}")
    llm = gemini_emulator.chat_model()
    replies = llm.batch([f"q{i}" for i in range(4)], config={**pipeline.config,
                                                             "max_concurrency": 4})
    assert sorted(r.content for r in replies) == [f"reply {i}" for i in range(4)]
    assert_nothing_current()
    assert_http_nested(pipeline, 4)
    # The calls overlapped, so a wrong (shared or ambient) parent would have been caught.
    chats = sorted(pipeline.chat_spans(), key=lambda s: s.start_time or 0)
    assert (chats[-1].start_time or 0) < (chats[0].end_time or 0)


def test_abandoned_stream_leaves_nothing_current(
    pipeline: Pipeline, gemini_emulator: GeminiEmulator
) -> None:
    gemini_emulator.queue_text("one two three four five six", stream_chunks=3)
    stream = gemini_emulator.chat_model().stream("abandon", config=pipeline.config)
    first = next(stream)
    assert first.content
    assert_nothing_current()
    stream.close()
    assert_nothing_current()
    assert_http_nested(pipeline, 1)


def test_error_keeps_nesting_and_the_exception(
    pipeline: Pipeline, gemini_emulator: GeminiEmulator
) -> None:
    gemini_emulator.queue_error(500, "backend exploded")
    with pytest.raises(google_exceptions.InternalServerError, match="backend exploded"):
        gemini_emulator.chat_model().invoke("fail", config=pipeline.config)
    assert_nothing_current()
    assert_http_nested(pipeline, 1)
    (chat,) = pipeline.chat_spans()
    assert chat.status.status_code is trace.StatusCode.ERROR


def test_root_run_inside_a_server_span_is_its_child(
    pipeline: Pipeline, gemini_emulator: GeminiEmulator
) -> None:
    web_tracer = pipeline.provider.get_tracer("tests.web")
    chain = ChatPromptTemplate.from_template("{q}") | gemini_emulator.chat_model()
    with web_tracer.start_as_current_span("GET /ask", kind=SpanKind.SERVER) as server:
        chain.invoke({"q": "inside a request"}, config=pipeline.config)
        assert trace.get_current_span() is server
    assert_nothing_current()
    assert_http_nested(pipeline, 1)
    spans = pipeline.spans()
    (root,) = [s for s in spans if (s.attributes or {}).get(attrs.ROOT) is True]
    assert root.parent is not None
    assert root.parent.span_id == server.get_span_context().span_id
    assert {s.context.trace_id for s in spans} == {server.get_span_context().trace_id}


# --- text completion models (BaseLLM) -------------------------------------------------------
def test_text_completion_invoke_and_stream(
    pipeline: Pipeline, gemini_emulator: GeminiEmulator
) -> None:
    llm = gemini_emulator.completion_model()
    assert llm.invoke("complete me", config=pipeline.config) == "Echo: complete me"
    assert "".join(llm.stream("stream me", config=pipeline.config)) == "Echo: stream me"
    assert_nothing_current()
    assert_http_nested(pipeline, 2, attrs.OP_TEXT_COMPLETION)


def test_text_completion_batch_does_not_guess_a_parent(
    pipeline: Pipeline, gemini_emulator: GeminiEmulator
) -> None:
    """``BaseLLM.batch`` sends all prompts through one ``_generate``: no run's span is current."""
    llm = gemini_emulator.completion_model()
    assert llm.batch(["one", "two"], config=pipeline.config) == ["Echo: one", "Echo: two"]
    assert_nothing_current()
    assert len(pipeline.chat_spans(attrs.OP_TEXT_COMPLETION)) == 2
    https = pipeline.http_spans()
    assert len(https) == 2
    assert all(http.parent is None for http in https)


# --- async -----------------------------------------------------------------------------------
def test_ainvoke(pipeline: Pipeline, gemini_emulator: GeminiEmulator, aiohttp_spans: None) -> None:
    async def main() -> str:
        llm = gemini_emulator.chat_model(async_transport=True)
        message = await llm.ainvoke("async hello", config=pipeline.config)
        assert_nothing_current()
        return str(message.content)

    assert asyncio.run(main()) == "Echo: async hello"
    assert_http_nested(pipeline, 1)


def test_astream(pipeline: Pipeline, gemini_emulator: GeminiEmulator, aiohttp_spans: None) -> None:
    async def main() -> list[Span]:
        llm = gemini_emulator.chat_model(async_transport=True)
        seen = [trace.get_current_span()
                async for _ in llm.astream("async stream", config=pipeline.config)]
        assert_nothing_current()
        return seen

    seen = asyncio.run(main())
    assert seen and all(span is INVALID_SPAN for span in seen)
    assert_http_nested(pipeline, 1)
    assert gemini_emulator.requests[0].stream


def test_abatch(pipeline: Pipeline, gemini_emulator: GeminiEmulator, aiohttp_spans: None) -> None:
    for index in range(3):
        gemini_emulator.queue_delay(0.15, f"async reply {index}")

    async def main() -> list[str]:
        llm = gemini_emulator.chat_model(async_transport=True)
        replies = await llm.abatch(["a", "b", "c"], config=pipeline.config)
        assert_nothing_current()
        return sorted(str(r.content) for r in replies)

    assert asyncio.run(main()) == [f"async reply {i}" for i in range(3)]
    assert_http_nested(pipeline, 3)


def test_async_root_run_inside_a_server_span(
    pipeline: Pipeline, gemini_emulator: GeminiEmulator, aiohttp_spans: None
) -> None:
    web_tracer = pipeline.provider.get_tracer("tests.web")

    async def main() -> Span:
        chain = ChatPromptTemplate.from_template("{q}") | gemini_emulator.chat_model(
            async_transport=True)
        with web_tracer.start_as_current_span("POST /chat", kind=SpanKind.SERVER) as server:
            async for _ in chain.astream({"q": "streamed in a request"}, config=pipeline.config):
                assert trace.get_current_span() is server
            assert trace.get_current_span() is server
        assert_nothing_current()
        return server

    server = asyncio.run(main())
    assert_http_nested(pipeline, 1)
    (root,) = [s for s in pipeline.spans() if (s.attributes or {}).get(attrs.ROOT) is True]
    assert root.parent is not None
    assert root.parent.span_id == server.get_span_context().span_id


# --- the mechanism itself --------------------------------------------------------------------
def test_tracer_installs_the_wrappers_once(pipeline: Pipeline) -> None:
    from langchain_core.language_models.chat_models import BaseChatModel

    assert _model_context.installed()
    assert any(ref() is pipeline.tracer for ref in _model_spans._sources)
    wrapped = BaseChatModel.__dict__["_generate_with_cache"]
    OtelTracer(tracer_provider=pipeline.provider)
    assert BaseChatModel.__dict__["_generate_with_cache"] is wrapped
    original = _model_context._originals[(BaseChatModel, "_generate_with_cache")]
    assert wrapped.__wrapped__ is original  # type: ignore[attr-defined]


def test_without_the_wrappers_the_http_span_loses_its_parent(
    pipeline: Pipeline, gemini_emulator: GeminiEmulator
) -> None:
    """The control case: what the wrappers fix (the HTTP span becomes a separate trace)."""
    _model_context.uninstall()
    try:
        gemini_emulator.chat_model().invoke("unwrapped", config=pipeline.config)
    finally:
        _model_context.install()
    (http,) = pipeline.http_spans()
    assert http.parent is None
    (chat,) = pipeline.chat_spans()
    assert http.context.trace_id != chat.context.trace_id


class _BrokenSource:
    def span_for_run(self, run_id: UUID) -> Span | None:
        raise RuntimeError("lookup bug")


def test_a_faulty_span_source_never_breaks_the_call(
    pipeline: Pipeline, gemini_emulator: GeminiEmulator
) -> None:
    broken = _BrokenSource()
    _model_context.register(broken)
    before = _faults.fault_counts().get("model_context.lookup", 0)
    try:
        message = gemini_emulator.chat_model().invoke("still works", config=pipeline.config)
        streamed = "".join(str(c.content) for c in gemini_emulator.chat_model().stream(
            "streams too", config=pipeline.config))
    finally:
        _model_context.unregister(broken)
    assert message.content == "Echo: still works"
    assert streamed == "Echo: streams too"
    assert _faults.fault_counts().get("model_context.lookup", 0) > before
    assert_nothing_current()
    assert_http_nested(pipeline, 2)


def test_explicit_run_id_is_kept_for_streams(
    pipeline: Pipeline, gemini_emulator: GeminiEmulator
) -> None:
    run_id = UUID("01234567-89ab-7def-8123-456789abcdef")
    list(gemini_emulator.chat_model().stream("with id", config={**pipeline.config,
                                                                "run_id": run_id}))
    (chat,) = pipeline.chat_spans()
    assert (chat.attributes or {}).get(attrs.LC_RUN_ID) == str(run_id)
    assert_http_nested(pipeline, 1)


def test_stream_events_v3(pipeline: Pipeline, gemini_emulator: GeminiEmulator) -> None:
    import warnings

    llm = gemini_emulator.chat_model()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # v3 is announced as beta
        stream = llm.stream_events("events please", config=pipeline.config, version="v3")
        events = list(stream)
    assert events
    assert_nothing_current()
    assert_http_nested(pipeline, 1)


def test_collected_tracers_leave_the_registry(gemini_emulator: GeminiEmulator) -> None:
    import gc

    provider = TracerProvider()
    tracer = OtelTracer(tracer_provider=provider)
    assert any(ref() is tracer for ref in _model_spans._sources)
    del tracer
    gc.collect()
    gemini_emulator.chat_model().invoke("after the tracer is gone")
    assert all(ref() is not None for ref in _model_spans._sources)
