"""The tracers a model call asks for its run's span, and making that span current (``model_context``).

Registered tracers are held weakly in a copy-on-write tuple (readers on the hot path take no
lock); ``span_for_run`` asks each in order, the first span wins. ``attach`` / ``detach`` /
``enter_run`` make a span current around a provider call and report faults instead of raising.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any, Protocol
from uuid import UUID

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span

from otel_mlflow._common import faults as _faults


class SpanSource(Protocol):
    """What the wrappers need from a tracer: the live span of a LangChain run, if any."""

    def span_for_run(self, run_id: UUID) -> Span | None: ...


_lock = threading.Lock()
# Copy-on-write tuple: readers on the hot path iterate it without taking the lock.
_sources: tuple[weakref.ref[SpanSource], ...] = ()


def add(source: SpanSource) -> None:
    """Look spans up on ``source`` too (held weakly; once per source)."""
    global _sources
    with _lock:
        alive = tuple(ref for ref in _sources if ref() is not None)
        if not any(ref() is source for ref in alive):
            alive += (weakref.ref(source),)
        _sources = alive


def remove(source: SpanSource) -> None:
    """Stop looking spans up on ``source`` (the wrappers stay installed)."""
    global _sources
    with _lock:
        _sources = tuple(ref for ref in _sources if ref() is not None and ref() is not source)


def _prune() -> None:
    """Drop tracers that were garbage-collected, so the wrappers go back to the fast path."""
    global _sources
    with _lock:
        _sources = tuple(ref for ref in _sources if ref() is not None)


def span_for_run(run_id: UUID | None) -> Span | None:
    """The span of ``run_id`` from the first registered tracer that has one."""
    if run_id is None:
        return None
    for ref in _sources:
        source = ref()
        if source is None:
            _prune()
            continue
        try:
            span = source.span_for_run(run_id)
        except Exception as exc:  # noqa: BLE001 - a tracer fault must not break the model call
            _faults.report("model_context.lookup", exc)
            continue
        if span is not None:
            return span
    return None


# --- attach / detach -------------------------------------------------------------------------
def attach(span: Span | None) -> object | None:
    if span is None:
        return None
    try:
        return otel_context.attach(trace.set_span_in_context(span))
    except Exception as exc:  # noqa: BLE001
        _faults.report("model_context.attach", exc)
        return None


def detach(token: object | None) -> None:
    if token is None:
        return
    try:
        otel_context.detach(token)  # type: ignore[arg-type]
    except Exception as exc:  # noqa: BLE001
        _faults.report("model_context.detach", exc)


def enter_run(run_manager: Any) -> object | None:
    if not _sources or run_manager is None:
        return None
    try:
        return attach(span_for_run(run_manager.run_id))
    except Exception as exc:  # noqa: BLE001
        _faults.report("model_context.enter", exc)
        return None
