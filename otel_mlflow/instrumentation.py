"""``LangChainInstrumentor``: trace every LangChain run in the process, with no callbacks passed.

Usage::

    from otel_mlflow.instrumentation import LangChainInstrumentor

    LangChainInstrumentor().instrument()      # every chain / model / tool run from now on
    ...
    LangChainInstrumentor().uninstrument()    # off again

or with no code at all, through the ``opentelemetry_instrumentor`` entry point
``otel_mlflow_langchain`` (named so it never clashes with other ``langchain`` instrumentors)::

    OTEL_TRACES_EXPORTER=mlflow,otlp opentelemetry-instrument python app.py

How: LangChain's ``register_configure_hook`` (``langchain_core.tracers.context``). Every time
LangChain builds a callback manager for a run (sync, async, batch, stream, in any thread) it asks
each registered hook for a handler and adds it as an inheritable handler. The hook is given an
object with the ``ContextVar`` ``get()`` interface whose value is process-wide, not per context:
a real ``ContextVar`` set in one thread is invisible in threads started earlier or in executor
threads, and tracing "every run" must include those. The hook is registered once per process
(LangChain has no way to unregister); ``uninstrument()`` empties the slot, which turns it off,
and puts back every LangChain method that ``_tracing.model_context`` patched (the originals are
restored by identity; a tracer constructed later patches them again).

Dedupe: the hook adds the instrumentor's ``OtelTracer`` only when the run's callbacks hold no
``OtelTracer`` yet, so a user who also passes a tracer explicitly (for example the one from
``otel_mlflow.configure()``) gets each run traced exactly once, by their tracer.

``instrument()`` keyword arguments (all optional): ``tracer`` (an ``OtelTracer`` to use as is),
else ``tracer_provider`` (default: the global one) and ``capture_content`` for a new
``OtelTracer``.
"""

from __future__ import annotations

import threading
from collections.abc import Collection
from typing import Any

from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
    BaseInstrumentor,
)

from otel_mlflow._tracing import model_context as _model_context
from otel_mlflow._tracing.handler import OtelTracer

_INSTRUMENTS = ("langchain-core >= 1.0",)


class _ProcessWideSlot:
    """The ``ContextVar.get()`` interface LangChain's configure hooks read, with one global value.

    Reads are a plain attribute load (no lock): LangChain calls ``get()`` for every run.
    """

    __slots__ = ("_value",)

    def __init__(self) -> None:
        self._value: OtelTracer | None = None

    def get(self, default: OtelTracer | None = None) -> OtelTracer | None:
        value = self._value
        return default if value is None else value

    def set(self, value: OtelTracer | None) -> None:
        self._value = value


_slot = _ProcessWideSlot()
_hook_lock = threading.Lock()
_hook_registered = False


def _register_hook_once() -> None:
    global _hook_registered
    with _hook_lock:
        if _hook_registered:
            return
        from langchain_core.tracers.context import register_configure_hook

        # inheritable=True: child runs inherit the handler from their parent's manager, as with
        # callbacks passed in ``config``. handle_class makes LangChain skip the hook whenever an
        # OtelTracer is already among the run's handlers (the dedupe). No env var: the slot is
        # the switch.
        register_configure_hook(_slot, True, OtelTracer)  # type: ignore[arg-type]
        _hook_registered = True


def active_tracer() -> OtelTracer | None:
    """The ``OtelTracer`` the instrumentor adds to LangChain runs, or None when it is off."""
    return _slot.get()


class LangChainInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Turns otel_mlflow tracing on for every LangChain run in the process (see module doc)."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return _INSTRUMENTS

    def _instrument(self, **kwargs: Any) -> None:
        tracer = kwargs.get("tracer")
        if not isinstance(tracer, OtelTracer):
            tracer = OtelTracer(
                kwargs.get("tracer_provider"), capture_content=kwargs.get("capture_content")
            )
        _register_hook_once()
        # The tracer's constructor installed the model wrappers; after an uninstrument() a
        # reused tracer must install them again (and be looked up again).
        _model_context.register(tracer)
        _slot.set(tracer)

    def _uninstrument(self, **kwargs: Any) -> None:
        tracer = _slot.get()
        _slot.set(None)
        # Put every patched LangChain method back (callback-only tracers made later re-install).
        if tracer is not None:
            _model_context.unregister(tracer)
        _model_context.uninstall()
