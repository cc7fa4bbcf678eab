"""Starting, annotating and ending ``OtelTracer``'s spans through the OpenTelemetry SDK, cheaply.

Why: the SDK checks every attribute value it receives (``BoundedAttributes`` and
``_clean_attribute_value``), about 0.4 µs per value on this project's reference machine, and a
``prompt | model | parser`` invocation carries some 35 values. The tracer builds every value
itself as a ``str``, ``int``, ``float``, ``bool`` or a tuple of ``str``, so the check cannot
change them; writing them straight into the span's attribute dict gives the same span. ``SpanOps``
does that where it provably makes no difference, and uses the public API everywhere else:

- attributes set on a started span go into the SDK span's attribute dict when the span is an SDK
  ``_Span`` whose attribute container has no value-length limit and room for the values under its
  count limit (``SpanLimits``); otherwise ``span.set_attributes``;
- start attributes are written the same way right after ``start_span`` (instead of being passed
  to it) only when nothing could look at them in between: the sampler is one of the SDK's own
  (they never read attributes) and every span processor's ``on_start`` is the SDK's no-op one
  (``BatchSpanProcessor``, ``SimpleSpanProcessor``, or not overridden). A custom sampler or an
  ``on_start`` hook gets the attributes through ``start_span(attributes=...)`` as usual.

This reads private SDK fields (``_Span``, ``Span._attributes``, ``BoundedAttributes._dict`` /
``maxlen`` / ``max_value_len``, ``SynchronousMultiSpanProcessor._span_processors``). Each access
is guarded: if a field is missing or has another type (another SDK version, another SDK
altogether), the public API is used, so a change in the SDK costs speed, never correctness.

Before either: where the whole SDK pipeline provably cannot tell the difference, ``start`` makes
a ``LiteSpan`` instead of an SDK span (``_lite_span`` says when and why), and ``lazy_ok`` tells the
tracer it may defer content to the span's first read (``_deferred``); ``hand_over`` gives a span
its deferred values (computed at once for any span that is not a ``LiteSpan``).

Also here: the error facts of a failed run (``fail``) and ending a run the tracer had to abandon.
"""

from __future__ import annotations

import traceback
from typing import Any

from opentelemetry.trace import Span, SpanContext, SpanKind, Status, StatusCode, TraceFlags, Tracer
from opentelemetry.trace import TraceState
from opentelemetry.trace import get_current_span
from opentelemetry.context import Context

from otel_mlflow._common import semconv as A
from otel_mlflow._tracing.fastpath.deferred import Pending, materialize
from otel_mlflow._tracing.content.serialize import Serializer

try:  # The SDK's types for the direct paths; without them they stay off.
    from opentelemetry.sdk.trace import SpanProcessor as _SdkProcessor
    from opentelemetry.sdk.trace import SynchronousMultiSpanProcessor as _SdkMulti
    from opentelemetry.sdk.trace import Tracer as _SdkTracer
    from opentelemetry.sdk.trace import _Span as _SdkSpan
    from opentelemetry.sdk.trace import sampling as _sampling
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    from otel_mlflow._tracing.fastpath.lite_span import LiteSpan

    _QUIET_ON_START = frozenset(
        {_SdkProcessor.on_start, BatchSpanProcessor.on_start, SimpleSpanProcessor.on_start}
    )
    _QUIET_ON_ENDING = frozenset(
        getattr(cls, "_on_ending", None)
        for cls in (_SdkProcessor, BatchSpanProcessor, SimpleSpanProcessor)
    )
    _BLIND_SAMPLERS = (_sampling.ALWAYS_ON, _sampling.ALWAYS_OFF, _sampling.DEFAULT_ON,
                       _sampling.DEFAULT_OFF)
    _BLIND_SAMPLER_TYPES = (_sampling.TraceIdRatioBased, _sampling.ParentBasedTraceIdRatio)
    # Samplers whose decision LiteSpan reproduces: always on; parent-based, always on for roots.
    _ALWAYS_ON = _sampling.ALWAYS_ON
    _LITE_SAMPLERS = (_sampling.ALWAYS_ON, _sampling.DEFAULT_ON)
except ImportError:  # pragma: no cover - SDK internals moved: public API only
    _SdkSpan = None
    _SdkMulti = None
    _SdkTracer = None
    LiteSpan = None
    _QUIET_ON_START = frozenset()
    _QUIET_ON_ENDING = frozenset()
    _BLIND_SAMPLERS = ()
    _BLIND_SAMPLER_TYPES = ()
    _ALWAYS_ON = None
    _LITE_SAMPLERS = ()

_NO_STATE = TraceState.get_default()
_MAX_TRACE_ID = 2**128 - 1
_MAX_SPAN_ID = 2**64 - 1
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_SAMPLED_RANDOM = TraceFlags(TraceFlags.SAMPLED | TraceFlags.RANDOM_TRACE_ID)

# How many values the tracer adds to a span's own attribute dict after ``start`` (an LLM span's
# response attributes are the most: about 12). Only spans with this much room under the
# attribute count limit get the direct dict.
END_ROOM = 16

# LangGraph raises these for control flow (interrupts, handing a command to the parent graph):
# they end the run but are not failures.
CONTROL_FLOW_ERRORS = frozenset({"GraphInterrupt", "NodeInterrupt", "ParentCommand", "GraphBubbleUp"})


def _attribute_blind(sampler: Any) -> bool:
    """True for the SDK's own samplers, which decide without looking at attributes."""
    return any(sampler is s for s in _BLIND_SAMPLERS) or type(sampler) in _BLIND_SAMPLER_TYPES


class SpanOps:
    """Span start / attribute writes for one OTel tracer (see the module docstring)."""

    __slots__ = ("_tracer", "_blind", "_multi", "_seen", "_quiet", "_silent", "_lite", "_ids",
                 "_no_value_cap")

    def __init__(self, tracer: Tracer) -> None:
        self._tracer = tracer
        sampler = getattr(tracer, "sampler", None)
        self._blind = _attribute_blind(sampler)
        multi = getattr(tracer, "span_processor", None)
        self._multi = multi if _SdkMulti is not None and type(multi) is _SdkMulti else None
        self._seen: object = None
        self._quiet = False
        self._silent = False
        # LiteSpan (see ``_lite_span``): an SDK tracer, a sampler whose decision it reproduces,
        # the SDK's span metrics off. Processors, limits and ``_is_enabled`` are checked per span.
        self._lite = (
            LiteSpan is not None
            and type(tracer) is _SdkTracer
            and any(sampler is s for s in _LITE_SAMPLERS)
            and type(getattr(tracer, "_tracer_metrics", None)).__name__ == "NoOpTracerMetrics"
            and callable(getattr(tracer, "_is_enabled", None))
            and hasattr(tracer, "_span_limits")
            and hasattr(tracer, "_instrumentation_scope")
        )
        self._ids = getattr(tracer, "id_generator", None)
        # Span limits are fixed when the provider is built.
        limits = getattr(tracer, "_span_limits", None)
        self._no_value_cap = getattr(limits, "max_span_attribute_length", 0) is None

    def _quiet_start(self) -> bool:
        """True when no span processor's ``on_start`` can look at a new span's attributes."""
        procs = getattr(self._multi, "_span_processors", None)
        if procs is not self._seen:
            # add_span_processor replaces the tuple: recheck only when it changed.
            self._quiet = isinstance(procs, tuple) and all(
                type(p).on_start in _QUIET_ON_START for p in procs
            )
            # ... and for LiteSpan: nobody's ``_on_ending`` hook looks at an ending span either.
            self._silent = self._quiet and all(
                getattr(type(p), "_on_ending", None) in _QUIET_ON_ENDING for p in procs
            )
            self._seen = procs
        return self._quiet

    def lazy_ok(self) -> bool:
        """True when ``start`` makes ``LiteSpan`` s (unless a parent is not sampled).

        The tracer then defers content (``_deferred``) instead of serializing it in the callback.
        """
        if not (self._lite and self._multi is not None and self._quiet_start() and self._silent):
            return False
        tracer: Any = self._tracer
        return self._no_value_cap and tracer._is_enabled()

    def _start_lite(self, name: str, ctx: Context | None, kind: SpanKind,
                    attrs: dict[str, Any], now: int) -> Span | None:
        """A ``LiteSpan`` exactly where ``start_span`` would make an equivalent span, else None.

        The caller has checked ``lazy_ok``; left here: room under the attribute count limit and
        the parent's sampling decision.
        """
        tracer: Any = self._tracer
        maxlen = tracer._span_limits.max_span_attributes
        if maxlen is not None and len(attrs) + END_ROOM > maxlen:
            return None
        parent: SpanContext | None = get_current_span(ctx).get_span_context()
        ids = self._ids
        if parent is None or not parent.is_valid:
            parent = None
            trace_id = ids.generate_trace_id()
            flags = _SAMPLED_RANDOM if ids.is_trace_id_random() else _SAMPLED
            state = None
        else:
            parent_flags = parent.trace_flags
            if not parent_flags.sampled and tracer.sampler is not _ALWAYS_ON:
                return None  # parent-based: not recorded; start_span makes that span
            trace_id = parent.trace_id
            flags = _SAMPLED_RANDOM if parent_flags.random_trace_id else _SAMPLED
            state = parent.trace_state
        span_id = ids.generate_span_id()
        # ``SpanContext(trace_id, span_id, False, flags, state)``, without its argument checks.
        context = tuple.__new__(SpanContext, (
            trace_id, span_id, False, flags, _NO_STATE if state is None else state,
            0 < trace_id <= _MAX_TRACE_ID and 0 < span_id <= _MAX_SPAN_ID,
        ))
        return LiteSpan(tracer, name, context, parent, kind, attrs, now)

    def start(self, name: str, ctx: Context | None, kind: SpanKind, attrs: dict[str, Any],
              now: int) -> tuple[Span, dict[str, Any] | None]:
        """Start a span with ``attrs`` as its start attributes (never made current).

        Returns the span and, on the direct path, ``attrs`` itself, which the span then uses as
        its attribute dict: the tracer may add up to ``END_ROOM`` values of its own to it until
        it ends the span (else None: use ``set``).
        """
        if self._blind and self._multi is not None and self._quiet_start():
            if self.lazy_ok():
                lite = self._start_lite(name, ctx, kind, attrs, now)
                if lite is not None:
                    return lite, attrs
            span = self._tracer.start_span(name, ctx, kind, None, (), now, False, False)
            if type(span) is _SdkSpan:
                try:
                    bounded = span._attributes  # type: ignore[attr-defined]
                    maxlen = bounded.maxlen
                    if (
                        type(bounded._dict) is dict
                        and not bounded._dict
                        and bounded.max_value_len is None
                        and bounded._immutable is False
                        and (maxlen is None or len(attrs) + END_ROOM <= maxlen)
                    ):
                        # A fresh span's empty dict: take ``attrs`` as it is (no copy).
                        bounded._dict = attrs
                        return span, attrs
                except AttributeError:  # another SDK layout: the public API below
                    pass
            span.set_attributes(attrs)
            return span, None
        span = self._tracer.start_span(
            name, context=ctx, kind=kind, attributes=attrs, start_time=now,
            record_exception=False, set_status_on_exception=False,
        )
        return span, None

    def hand_over(self, span: Span, pending: Pending,
                  own: dict[str, Any] | None) -> None:
        """Deferred content to a ``LiteSpan``; any other span gets the values computed now
        (into ``own``, the span's attribute dict the tracer holds, else through ``set``)."""
        if LiteSpan is not None and type(span) is LiteSpan:
            span.defer(pending)
        elif span.is_recording():
            values: dict[str, Any] = {}
            materialize(pending, values)
            if own is not None:
                own.update(values)
            else:
                self.set(span, values)

    @staticmethod
    def set(span: Span, attrs: dict[str, Any]) -> None:
        """``span.set_attributes(attrs)`` for the tracer's own, already valid values."""
        if type(span) is _SdkSpan:
            try:
                bounded = span._attributes  # type: ignore[attr-defined]
                values = bounded._dict
                maxlen = bounded.maxlen
                if (
                    bounded.max_value_len is None
                    and bounded._immutable is False
                    and type(values) is dict
                    and (maxlen is None or len(values) + len(attrs) <= maxlen)
                ):
                    values.update(attrs)
                    return
            except AttributeError:  # another SDK layout: the public API below
                pass
        span.set_attributes(attrs)


def _safe_str(error: BaseException) -> str:
    try:
        return str(error)
    except Exception:  # noqa: BLE001 - a broken __str__ must not hide the error span
        return f"<unprintable {type(error).__name__}>"


def _safe_traceback(error: BaseException) -> str:
    try:
        return "".join(traceback.format_exception(type(error), error, error.__traceback__))
    except Exception:  # noqa: BLE001
        return _safe_str(error)


def fail(span: Span, error: BaseException, now: int, ser: Serializer | None) -> None:
    """End ``span`` as failed by ``error`` (``ser``: content capture on, else None).

    LangGraph control-flow exceptions end it normally with an ``otel_mlflow.control_flow`` event.
    """
    try:
        etype = type(error).__name__
        if etype in CONTROL_FLOW_ERRORS:
            span.add_event("otel_mlflow.control_flow", {"exception.type": etype}, now)
            return
        # The error facts first, so a failing message below still leaves an error span.
        span.set_status(Status(StatusCode.ERROR, None))
        span.set_attribute(A.ERROR_TYPE, etype)
        event: dict[str, Any] = {"exception.type": etype}
        if ser is not None:
            message = ser.scalar(_safe_str(error))
            span.set_attributes({A.ERROR_MESSAGE: message})
            span.set_status(Status(StatusCode.ERROR, f"{etype}: {message}"))
            event["exception.message"] = message
            event["exception.stacktrace"] = ser.scalar(_safe_traceback(error))
        span.add_event("exception", event, now)
    finally:
        span.end(end_time=now)


def abandon(span: Span, error_type: str, now: int) -> None:
    """End the span of a run the tracer gave up on (``otel_mlflow.run_timeout`` / ``_evicted``)."""
    span.set_attribute(A.ERROR_TYPE, error_type)
    span.set_status(Status(StatusCode.ERROR, error_type))
    span.end(end_time=now)
