"""Content values serialized on the span's first read, not in the callback (pure, no OTel, no I/O).

Why: turning LangChain inputs, messages and outputs into redacted JSON is the largest part of what
``OtelTracer`` costs the application thread (a few µs per value, six or more values per
invocation). On a ``LiteSpan`` the tracer instead records *what* to serialize (a ``Deferred``)
and the span writes the JSON into its attributes the first time anybody reads them: with a
``BatchSpanProcessor`` that is the exporter, on the processor's worker thread; with a
``SimpleSpanProcessor`` or a processor reading attributes in ``on_end`` it is that call, on the
application thread, as before. The JSON is the same either way (same ``Content`` / ``Serializer``
calls, same per-trace memo).

What is captured at callback time, so that later changes by the app do not leak into the record:
``snapshot`` copies the containers (dict, list, tuple) down to their leaves; a leaf must be a
str, int, float, bool, None or a LangChain message, prompt value or generation (immutable by
LangChain's contract: runnables return new messages rather than changing them). Any other object, a
structure deeper than ``MAX_DEPTH`` or wider than ``MAX_ITEMS`` is serialized in the callback,
as before (``snapshot`` returns ``NOT_SAFE``).

A ``Deferred`` computes its value once (two exporters reading the same span share it); a fault
while computing gives the serializer's error marker and a fault report, never an exception in the
reader.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langchain_core.messages import BaseMessage
from langchain_core.outputs import Generation
from langchain_core.prompt_values import ChatPromptValue, StringPromptValue

from otel_mlflow._common.faults import report
from otel_mlflow._tracing.content.json_text import encode
from otel_mlflow._tracing.content.serialize import TRUNCATED_KEY

MAX_DEPTH = 6
MAX_ITEMS = 256
NOT_SAFE: Any = object()
_LEAVES = frozenset({str, int, float, bool, type(None)})
_FROZEN = (BaseMessage, ChatPromptValue, StringPromptValue, Generation)
# type -> subclass of _FROZEN (ABC isinstance checks cost about 1 µs each; types are few).
_FROZEN_TYPES: dict[type, bool] = {}


def snapshot(value: Any, depth: int = 0) -> Any:
    """``value`` with its containers copied (see the module docstring), or ``NOT_SAFE``."""
    cls = type(value)
    if cls in _LEAVES:
        return value
    if depth >= MAX_DEPTH:
        return NOT_SAFE
    if cls is dict:
        if len(value) > MAX_ITEMS:
            return NOT_SAFE
        out: dict[Any, Any] = {}
        for key, item in value.items():
            if type(key) is not str:
                return NOT_SAFE
            copy = item if type(item) in _LEAVES else snapshot(item, depth + 1)
            if copy is NOT_SAFE:
                return NOT_SAFE
            out[key] = copy
        return out
    if cls is list or cls is tuple:
        if len(value) > MAX_ITEMS:
            return NOT_SAFE
        items = []
        for item in value:
            copy = item if type(item) in _LEAVES else snapshot(item, depth + 1)
            if copy is NOT_SAFE:
                return NOT_SAFE
            items.append(copy)
        return items if cls is list else tuple(items)
    frozen = _FROZEN_TYPES.get(cls)
    if frozen is None:
        # Subclasses of str / int / float (enums, ``str`` wrappers) hold immutable values too.
        frozen = issubclass(cls, _FROZEN) or issubclass(cls, (str, int, float))
        if len(_FROZEN_TYPES) < 1024:
            _FROZEN_TYPES[cls] = frozen
    return value if frozen else NOT_SAFE


# How many positional arguments a deferred ``fn`` takes (``Deferred._args``): the value alone, the
# value and one context argument (the per-trace memo), or the value and two (the finish reasons and
# the memo). ``capture`` counts them from the arguments it is given; ``_COMPUTED`` marks a done one.
VALUE_ONLY = 1
VALUE_AND_ONE = 2
VALUE_AND_TWO = 3
_COMPUTED = -1
# Stands for an argument not given (None is a real argument: a root run has no memo).
_ABSENT: Any = object()


class Deferred:
    """``fn(*args)`` (the value and at most two more arguments), computed on first ``get``, kept.

    The arguments sit in fields rather than a tuple: a pending value lives until an exporter reads
    the span, and every extra container the garbage collector must traverse meanwhile costs the
    application thread.
    """

    __slots__ = ("_fn", "_a", "_b", "_c", "_args", "_value")

    def __init__(self, fn: Callable[..., Any], a: Any, b: Any = None, c: Any = None,
                 args: int = VALUE_ONLY) -> None:
        self._fn = fn
        self._a = a
        self._b = b
        self._c = c
        self._args = args  # how many of a, b, c ``fn`` takes; ``_COMPUTED`` once computed
        self._value: Any = None

    def get(self) -> Any:
        args = self._args
        if args != _COMPUTED:
            try:
                if args == VALUE_ONLY:
                    value = self._fn(self._a)
                elif args == VALUE_AND_ONE:
                    value = self._fn(self._a, self._b)
                else:
                    value = self._fn(self._a, self._b, self._c)
            except Exception as exc:  # noqa: BLE001 - a reader (an exporter) must not fail
                report("tracer.deferred_content", exc)
                value = encode({TRUNCATED_KEY: True, "error": type(exc).__name__})
            self._value = value
            self._args = _COMPUTED
            self._fn = self._a = self._b = self._c = None  # drop the app's objects
        return self._value


# One attribute a callback hands to a span unwritten: ``(key, deferred, index)``; ``index`` picks
# item 0 or 1 of a deferred pair (one ``Deferred`` computing two attributes, e.g. the input
# messages and the system instructions), None for a whole value. A plain tuple on purpose: built
# by one bytecode, where a tuple subclass or a slotted class costs a constructor call per entry
# (micro-benchmark: +60 ns per entry for the tuple over the flat list it replaced, +400 ns for a
# slotted class or a tuple subclass; see docs/performance.md).
PendingValue = tuple[str, Deferred, "int | None"]
# What a callback hands to a span: its deferred attributes, in the order they were put.
Pending = list[PendingValue]


def capture(lazy: bool, fn: Callable[..., Any], value: Any, b: Any = _ABSENT,
            c: Any = _ABSENT) -> Any:
    """``fn(value[, b[, c]])`` now, or (``lazy``) a ``Deferred`` of it over a snapshot of
    ``value`` (``b`` and ``c``, context such as the per-trace memo, are passed as they are)."""
    if c is not _ABSENT:
        args = VALUE_AND_TWO
    elif b is not _ABSENT:
        args = VALUE_AND_ONE
    else:
        args = VALUE_ONLY
    if lazy:
        copy = snapshot(value)
        if copy is not NOT_SAFE:
            return Deferred(fn, copy, b, c, args)
    if args == VALUE_ONLY:
        return fn(value)
    return fn(value, b) if args == VALUE_AND_ONE else fn(value, b, c)


def _pick(value: Any, index: int | None) -> Any:
    """``value``, or item ``index`` of a pair; an error marker standing in for a whole pair goes
    on the pair's first key (the input messages), so the fault stays visible."""
    if index is None:
        return value
    if isinstance(value, tuple):
        return value[index]
    return value if index == 0 else None


def put(attrs: dict[str, Any], pending: Pending, key: str, value: Any,
        index: int | None = None) -> None:
    """``attrs[key] = value`` (``value[index]`` for a pair), or queue a ``Deferred`` value.

    A None value (for example no system instructions) writes no key.
    """
    if type(value) is Deferred:
        pending.append((key, value, index))
        return
    value = _pick(value, index)
    if value is not None:
        attrs[key] = value


def materialize(pending: Pending, attrs: dict[str, Any]) -> None:
    """Write each pending value into ``attrs`` (as ``put`` would, computed)."""
    for key, deferred, index in pending:
        value = _pick(deferred.get(), index)
        if value is not None:
            attrs[key] = value
