"""``LiteSpan`` (``otel_mlflow._tracing.fastpath.lite_span``): the tracer's cheap span path against the SDK's own spans.

Every test runs real LangChain runnables into a real SDK ``TracerProvider``; the public-API path
is forced with a span processor that has an ``on_start`` hook (the tracer must then let the SDK
build the span), so both paths are compared on the same chain.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace import _TracerConfig
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased
from opentelemetry.trace import (NonRecordingSpan, SpanContext, SpanKind, StatusCode, TraceFlags,
                                 TraceState)
from opentelemetry.trace.status import Status

from otel_mlflow._common import semconv as A
from otel_mlflow._tracing.fastpath.lite_span import LiteSpan
from otel_mlflow._tracing.fastpath.span_writer import SpanOps
from otel_mlflow._tracing.handler import OtelTracer
from tests._support.fake_models import FakeChatModel


def _chain() -> Any:
    prompt = ChatPromptTemplate.from_messages([("system", "Be brief."), ("human", "{q}")])
    return prompt | FakeChatModel() | StrOutputParser()


class _OnStartHook(SpanProcessor):
    """Forces the SDK path: an ``on_start`` that could look at the span."""

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        self.started = True


class _OnEndingHook(SpanProcessor):
    def _on_ending(self, span: Any) -> None:
        self.ending = True


def _collect(provider: TracerProvider, fail: bool = False) -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = OtelTracer(provider)
    chain = _chain()
    if fail:
        chain = chain | (lambda _: 1 / 0)
    try:
        chain.invoke({"q": "hello"}, config={"callbacks": [tracer], "tags": ["t1"]})
    except ZeroDivisionError:
        pass
    return list(exporter.get_finished_spans())


def _shape(spans: list[ReadableSpan]) -> list[tuple[Any, ...]]:
    """Everything but ids and times, with the parent given by name."""
    by_id = {s.context.span_id: s.name for s in spans}
    skip = {A.LC_RUN_ID, A.LC_PARENT_RUN_ID}
    return sorted(
        (
            s.name, s.kind, by_id.get(s.parent.span_id) if s.parent else None,
            tuple(sorted((k, v) for k, v in (s.attributes or {}).items() if k not in skip)),
            s.status.status_code, s.status.description,
            tuple((e.name, tuple(sorted((k, v) for k, v in (e.attributes or {}).items()
                                        if k != "exception.stacktrace"))) for e in s.events),
            s.instrumentation_scope, s.resource.attributes == spans[0].resource.attributes,
            s.end_time >= s.start_time, s.context.trace_flags, s.dropped_attributes,
        )
        for s in spans
    )


@pytest.mark.parametrize("fail", [False, True])
def test_lite_spans_equal_the_sdk_spans(fail: bool) -> None:
    lite = _collect(TracerProvider(), fail)
    hooked = TracerProvider()
    hooked.add_span_processor(_OnStartHook())
    sdk = _collect(hooked, fail)
    assert {type(s) for s in lite} == {LiteSpan}
    assert all(type(s) is not LiteSpan for s in sdk)
    assert len(lite) == (5 if fail else 4)
    assert _shape(lite) == _shape(sdk)
    # One trace, ids the SDK's generator made, sampled + random-trace-id flags like the SDK's.
    assert len({s.context.trace_id for s in lite}) == 1
    assert len({s.context.span_id for s in lite}) == len(lite)
    assert {s.context.trace_flags for s in lite} == {s.context.trace_flags for s in sdk}
    if fail:
        errors = [s for s in lite if s.status.status_code is StatusCode.ERROR]
        assert errors and all(any(e.name == "exception" for e in s.events) for s in errors)


def test_lite_spans_encode_for_otlp() -> None:
    spans = _collect(TracerProvider())
    request = encode_spans(spans)
    encoded = request.resource_spans[0].scope_spans[0].spans
    assert sorted(s.name for s in encoded) == sorted(s.name for s in spans)
    keys = {kv.key for s in encoded for kv in s.attributes}
    assert A.GEN_AI_INPUT_MESSAGES in keys and A.GEN_AI_USAGE_INPUT_TOKENS in keys


def test_root_joins_the_ambient_span_with_its_trace_state() -> None:
    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    outer = SpanContext(0xABC, 0xDEF, True, TraceFlags(TraceFlags.SAMPLED),
                        TraceState([("vendor", "v1")]))
    token = otel_context.attach(trace.set_span_in_context(NonRecordingSpan(outer)))
    try:
        _chain().invoke({"q": "x"}, config={"callbacks": [OtelTracer(provider)]})
    finally:
        otel_context.detach(token)
    spans = exporter.get_finished_spans()
    root = next(s for s in spans if (s.attributes or {}).get(A.ROOT))
    assert type(root) is LiteSpan
    assert root.parent == outer and root.context.trace_id == 0xABC
    assert root.context.trace_state == outer.trace_state
    # The remote parent's trace id is not flagged random: neither are its children.
    assert {s.context.trace_flags for s in spans} == {TraceFlags(TraceFlags.SAMPLED)}


@pytest.mark.parametrize("sampler,recorded", [(None, 0), (ALWAYS_ON, 4)])
def test_unsampled_parent_follows_the_sampler(sampler: Any, recorded: int) -> None:
    provider = TracerProvider() if sampler is None else TracerProvider(sampler=sampler)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    outer = SpanContext(0xABC, 0xDEF, True, TraceFlags(TraceFlags.DEFAULT))
    token = otel_context.attach(trace.set_span_in_context(NonRecordingSpan(outer)))
    try:
        _chain().invoke({"q": "x"}, config={"callbacks": [OtelTracer(provider)]})
    finally:
        otel_context.detach(token)
    assert len(exporter.get_finished_spans()) == recorded


def _first_span_type(provider: TracerProvider) -> type:
    spans = _collect(provider)
    assert len(spans) == 4
    return type(spans[0])


def test_sdk_path_when_lite_spans_could_differ(monkeypatch: pytest.MonkeyPatch) -> None:
    ending = TracerProvider()
    ending.add_span_processor(_OnEndingHook())
    assert _first_span_type(ending) is ReadableSpan
    # A sampler LiteSpan does not reproduce (a parent-based one built by the user).
    assert _first_span_type(TracerProvider(sampler=ParentBased(ALWAYS_ON))) is ReadableSpan
    assert _first_span_type(TracerProvider(span_limits=SpanLimits(max_attribute_length=64))) \
        is ReadableSpan
    monkeypatch.setenv("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED", "true")
    assert _first_span_type(TracerProvider()) is ReadableSpan


def test_disabled_tracer_records_nothing() -> None:
    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = OtelTracer(provider)
    tracer._spans._tracer._set_tracer_config(_TracerConfig(is_enabled=False))
    _chain().invoke({"q": "x"}, config={"callbacks": [tracer]})
    assert exporter.get_finished_spans() == ()


# --- the API semantics for whoever holds a LiteSpan --------------------------------------------
def _lite(limits: SpanLimits | None = None) -> tuple[LiteSpan, InMemorySpanExporter]:
    provider = TracerProvider() if limits is None else TracerProvider(span_limits=limits)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    span, own = SpanOps(provider.get_tracer("t")).start("s", None, SpanKind.INTERNAL,
                                                        {"k": "v"}, 1)
    assert type(span) is LiteSpan and own is span._attributes
    return span, exporter


def test_user_values_are_cleaned_and_nothing_changes_after_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    span, exporter = _lite()
    assert span.is_recording()
    span.set_attribute("list", [1, 2])
    span.set_attributes({"": "empty key", "n": 3})
    span.update_name("renamed")
    span.add_link(SpanContext(1, 2, False), {"l": 1})
    span.end(5)
    assert not span.is_recording()
    with caplog.at_level(logging.WARNING):
        span.set_attribute("late", 1)
        span.add_event("late")
        span.set_status(StatusCode.ERROR)
        span.end(6)
    (done,) = exporter.get_finished_spans()
    assert done is span and done.name == "renamed" and done.end_time == 5
    assert dict(done.attributes or {}) == {"k": "v", "list": (1, 2), "n": 3}
    assert done.status.status_code is StatusCode.UNSET and done.events == ()
    assert len(done.links) == 1 and done.links[0].context.span_id == 2
    assert "ended span" in caplog.text


def test_status_rules_match_the_sdk() -> None:
    span, _ = _lite()
    span.set_status(StatusCode.UNSET)
    assert span.status.status_code is StatusCode.UNSET
    span.set_status(Status(StatusCode.ERROR, "bad"))
    assert span.status.description == "bad"
    span.set_status(StatusCode.OK)
    span.set_status(StatusCode.ERROR, "ignored after OK")
    assert span.status.status_code is StatusCode.OK


def test_record_exception_and_context_manager() -> None:
    span, exporter = _lite()
    with pytest.raises(KeyError):
        with span:
            raise KeyError("boom")
    (done,) = exporter.get_finished_spans()
    (event,) = done.events
    assert event.name == "exception"
    assert event.attributes["exception.type"] == "KeyError"
    assert "boom" in event.attributes["exception.stacktrace"]
    assert done.status.status_code is StatusCode.ERROR


def test_racing_ends_export_once() -> None:
    for _ in range(50):
        span, exporter = _lite()
        barrier = threading.Barrier(8)

        def end() -> None:
            barrier.wait()
            span.end()

        threads = [threading.Thread(target=end) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(exporter.get_finished_spans()) == 1


def test_count_limits_hold() -> None:
    span, exporter = _lite(SpanLimits(max_span_attributes=20, max_events=2))
    span.set_attributes({f"a{i}": i for i in range(25)})
    for i in range(3):
        span.add_event(f"e{i}")
    span.end()
    (done,) = exporter.get_finished_spans()
    assert len(done.attributes or {}) == 20 and done.dropped_attributes == 6
    assert [e.name for e in done.events] == ["e1", "e2"] and done.dropped_events == 1
    assert "k" not in (done.attributes or {})  # the oldest went first, as in the SDK
