"""``LiteSpan``: the recording span ``OtelTracer`` uses where the SDK pipeline sees no difference.

Why: starting and ending one span through ``Tracer.start_span`` costs some 14-17 µs on this
project's reference machine (sampler call, ``SpanContext`` checks, a ``_Span`` with its lock,
``BoundedAttributes`` and ``BoundedList`` containers, ``on_start`` / ``_on_ending`` dispatch, and a
``ReadableSpan`` snapshot at ``end``), which is most of what a LangChain tracer costs the
application thread. For the tracer's own spans most of that work provably changes nothing:

- the sampler is the SDK's ``ALWAYS_ON`` or the default ``ParentBased(ALWAYS_ON)``, whose decision
  is "record and sample" for a root or a sampled parent, with the parent's trace state;
- every span processor's ``on_start`` and ``_on_ending`` are the SDK's no-ops
  (``BatchSpanProcessor``, ``SimpleSpanProcessor`` or a processor that only overrides ``on_end``);
- the SDK's own span metrics are off (``OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED`` unset) and the
  tracer is enabled;
- there is no attribute value-length limit, and the tracer's values are already valid.

Under exactly those conditions (``SpanOps`` checks them, and uses ``start_span`` otherwise) the
tracer builds the span context the way ``Tracer.start_span`` would (ids from the tracer's
``id_generator``; sampled flag; random-trace-id flag from the generator or the parent; the
parent's trace state) and records into a ``LiteSpan``. ``LiteSpan`` is what the SDK's own span is:
an API ``Span`` that is also a ``ReadableSpan``. When it ends it is itself handed to the
processors' ``on_end`` (it is immutable from then on, as the SDK's snapshot is), so exporters, the
OTLP encoder and ``MlflowSpanExporter`` see an ordinary ``ReadableSpan``.

The API methods keep the SDK's semantics for anybody holding the span (``span_for_run``, the
current span during the model call): values are cleaned like ``BoundedAttributes`` does, nothing
changes after ``end`` (a warning, as in the SDK), ``set_status`` ignores UNSET and never overrides
OK, ``end`` exports once even if two threads race, the span attribute/event/link count limits hold.
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Mapping, Sequence
from time import time_ns
from typing import Any

from opentelemetry import trace as trace_api
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util import BoundedList
from opentelemetry.trace import SpanContext, SpanKind
from opentelemetry.trace.status import Status, StatusCode
from opentelemetry.util import types

from otel_mlflow._tracing.fastpath.deferred import Pending, materialize

try:
    from opentelemetry.attributes import _clean_attribute_value
except ImportError:  # pragma: no cover - another API layout: keep only the plain value types
    def _clean_attribute_value(value: Any, max_string_value_length: int | None) -> Any:
        return value if isinstance(value, (str, bool, int, float, tuple)) else None

logger = logging.getLogger(__name__)

UNSET = Status(StatusCode.UNSET)
# Serializes the writing of deferred content (readers run on exporter threads; rare contention).
_MATERIALIZE = threading.Lock()
# Held for a few instructions by ``end`` (decide which caller ends the span).
_END = threading.Lock()


class LiteSpan(trace_api.Span, ReadableSpan):
    """A recording span, exported as itself when it ends (see the module docstring).

    ``attributes`` is the dict the span keeps; the tracer that created the span may add its own,
    already valid values to it until it ends the span.
    """

    # Defaults read from the class until a span sets its own (fewer per-span fields).
    _events: Sequence[Event] = ()
    _links: Sequence[trace_api.Link] = ()
    _status = UNSET
    _end_time: int | None = None
    # Content the tracer deferred (``_deferred``): written on the first read of attributes.
    _pending: Pending | None = None

    def __init__(self, tracer: Any, name: str, context: SpanContext,
                 parent: SpanContext | None, kind: SpanKind, attributes: dict[str, Any],
                 start_time: int) -> None:
        # The fields ``ReadableSpan``'s properties read (its __init__ is not called: it would
        # only set the same fields, and create a resource we already have).
        self._name = name
        self._context = context
        self._parent = parent
        self._kind = kind
        self._attributes = attributes
        self._start_time = start_time
        self._tracer = tracer

    # The tracer's, read when an exporter asks (``ReadableSpan.resource`` etc. read these).
    @property
    def _resource(self) -> Any:  # type: ignore[override]
        return self._tracer.resource

    @property
    def _instrumentation_info(self) -> Any:  # type: ignore[override]
        return self._tracer.instrumentation_info

    @property
    def _instrumentation_scope(self) -> Any:  # type: ignore[override]
        return self._tracer._instrumentation_scope

    # --- deferred content ---------------------------------------------------------------------
    def defer(self, pending: Pending) -> None:
        """Values to write into the attributes on their first read (the tracer's, before end)."""
        if self._pending is None:
            self._pending = pending
        else:
            self._pending.extend(pending)

    def _materialize(self) -> None:
        if self._pending is None:
            return
        with _MATERIALIZE:
            pending = self._pending
            if pending is None:
                return  # another reader wrote them while this one waited
            attributes = self._attributes
            if type(attributes) is dict:
                materialize(pending, attributes)
            self._pending = None

    @property
    def attributes(self) -> types.Attributes:  # type: ignore[override]
        self._materialize()
        return super().attributes

    @property
    def dropped_attributes(self) -> int:  # type: ignore[override]
        self._materialize()
        return super().dropped_attributes

    def to_json(self, indent: int | None = 4) -> str:
        self._materialize()
        return super().to_json(indent)

    # --- trace_api.Span -----------------------------------------------------------------------
    def get_span_context(self) -> SpanContext:
        return self._context

    def is_recording(self) -> bool:
        return self._end_time is None

    def _ended(self, what: str) -> bool:
        if self._end_time is not None:
            logger.warning("%s on ended span.", what)
            return True
        return False

    def set_attribute(self, key: str, value: types.AttributeValue) -> None:
        self.set_attributes({key: value})

    def set_attributes(self, attributes: Mapping[str, types.AttributeValue]) -> None:
        if self._ended("Setting attribute"):
            return
        limit = self._tracer._span_limits.max_span_attribute_length
        target = self._attributes
        for key, value in attributes.items():
            if not key or not isinstance(key, str):
                logger.warning("invalid key `%s`. must be non-empty string. Dropping key from "
                               "attributes.", key)
                continue
            cleaned = _clean_attribute_value(value, limit)
            if cleaned is not None:
                target[key] = cleaned

    def add_event(self, name: str, attributes: types.Attributes = None,
                  timestamp: int | None = None) -> None:
        if self._ended("Adding event"):
            return
        limits = self._tracer._span_limits
        if type(self._events) is not BoundedList:
            self._events = BoundedList(limits.max_events)
        self._events.append(Event(  # type: ignore[union-attr]
            name,
            BoundedAttributes(limits.max_event_attributes, attributes,
                              max_value_len=limits.max_attribute_length, immutable=True),
            timestamp if timestamp is not None else time_ns(),
        ))

    def add_link(self, context: SpanContext, attributes: types.Attributes = None) -> None:
        if self._ended("Adding link"):
            return
        if context is None or (not context.is_valid and not attributes):
            return
        limits = self._tracer._span_limits
        if type(self._links) is not BoundedList:
            self._links = BoundedList(limits.max_links)
        self._links.append(trace_api.Link(  # type: ignore[union-attr]
            context,
            BoundedAttributes(limits.max_link_attributes, attributes,
                              max_value_len=limits.max_attribute_length, immutable=True),
        ))

    def update_name(self, name: str) -> None:
        if not self._ended("Updating name"):
            self._name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        if self._ended("Setting status"):
            return
        if self._status.status_code is StatusCode.OK:
            return  # OK is final
        if isinstance(status, Status):
            if status.status_code is StatusCode.UNSET:
                return
            if description is not None:
                logger.warning("Description %s ignored. Use either `Status` or "
                               "`(StatusCode, Description)`", description)
            self._status = status
        elif isinstance(status, StatusCode):
            if status is StatusCode.UNSET:
                return
            self._status = Status(status, description)

    def record_exception(self, exception: BaseException, attributes: types.Attributes = None,
                         timestamp: int | None = None, escaped: bool = False) -> None:
        module = type(exception).__module__
        qualname = type(exception).__qualname__
        event: dict[str, Any] = {
            "exception.type": f"{module}.{qualname}" if module and module != "builtins"
            else qualname,
            "exception.message": str(exception),
            "exception.stacktrace": "".join(traceback.format_exception(exception)),
            "exception.escaped": str(escaped),
        }
        if attributes:
            event.update(attributes)
        self.add_event("exception", event, timestamp)

    def end(self, end_time: int | None = None) -> None:
        with _END:  # one ``end`` exports the span, whichever thread gets here first
            if self._end_time is not None:
                logger.warning("Calling end() on an ended span.")
                return
            self._end_time = end_time if end_time is not None else time_ns()
        maxlen = self._tracer._span_limits.max_span_attributes
        if maxlen is not None and len(self._attributes) + len(self._pending or ()) > maxlen:
            self._materialize()
            if len(self._attributes) > maxlen:
                # The SDK's rule for too many attributes: the oldest are dropped (and counted).
                self._attributes = BoundedAttributes(maxlen, self._attributes, immutable=True)
        self._tracer.span_processor.on_end(self)

    def __exit__(self, exc_type: Any, exc_val: BaseException | None, exc_tb: Any) -> None:
        if exc_val is not None and self.is_recording():
            self.record_exception(exc_val, escaped=True)
            self.set_status(Status(StatusCode.ERROR, f"{type(exc_val).__name__}: {exc_val}"))
        self.end()
