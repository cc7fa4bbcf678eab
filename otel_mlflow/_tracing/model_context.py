"""Make the ``chat …`` / ``text_completion …`` span current while the model talks to its API.

Why: an HTTP or gRPC client span made by the app's own instrumentation (e.g.
``opentelemetry-instrumentation-requests`` around ``ChatVertexAI``'s REST call) takes the *current*
OTel span as parent. The tracer creates spans with explicit parents and never attaches context
inside callbacks (LangChain may run handlers in executor threads or copied contexts, so an attach
there would land in the wrong context or leak). Something must therefore make the LLM span current
exactly around the model's provider call, in the thread and context that makes the call.

Modules: this one owns the patches (install / uninstall) and the registration of tracers;
``model_wrappers`` holds the wrappers, ``model_spans`` the registry and the attach / detach.

Mechanism: a few LangChain methods that bracket the provider call are wrapped once, at class level,
when the first ``OtelTracer`` registers (:func:`register` calls :func:`install`, idempotent);
:func:`uninstall` puts every recorded original back (``LangChainInstrumentor().uninstrument()``
calls it; a tracer made or instrumented later installs them again):

1. ``BaseChatModel._generate_with_cache`` / ``_agenerate_with_cache`` (``invoke``, ``batch``,
   ``generate``, ``ainvoke``, ``abatch``; also streamed-invoke paths, which run inside them) and
   ``BaseLLM._generate_helper`` / ``_agenerate_helper``: these receive the run manager, so the
   wrapper looks up ``span_for_run(run_manager.run_id)`` on the registered tracers and runs the
   body inside ``context.attach(set_span_in_context(span))`` … ``detach`` in ``finally``. The
   coroutine versions attach inside the awaiting task, so ``asyncio.gather`` siblings (``abatch``,
   multi-prompt ``agenerate``) each see their own span.
2. ``BaseChatModel.stream`` / ``astream`` and ``BaseLLM.stream`` / ``astream``: the run id is
   created inside the generator, so the wrapper assigns it up front (``config["run_id"]``, a
   ``uuid7`` exactly as LangChain would, unless the caller set one) and then drives the inner
   generator step by step, attaching before and detaching after *each* step, never across a
   ``yield``: the consumer never sees the span current, and an abandoned stream leaves nothing
   attached. During the first step the run's span does not exist yet when the step starts (the
   start callback runs inside it), so the first step attaches a ``_PendingRunSpan``
   (``model_wrappers``), a stand-in that resolves to the run's span as soon as the tracer has
   created it (and to the previously current span before that, or when no tracer handles it).
3. ``BaseChatModel._iter_v2_events`` / ``_aiter_v2_events`` (``stream_events(version="v3")`` and
   the event paths of invoke): driven step by step like 2, with the run id of their run manager.

Priority when several tracers are registered: the first one that has a span for the run id.

Cost: with no tracer registered nothing is patched; once patched and with no live tracer, each
wrapper does one tuple truth test. Otherwise one dict lookup per tracer per call (per stream step).

Limits: a ``BaseLLM`` call that batches several prompts into one ``_generate`` (``BaseLLM.batch``)
has one provider call for several runs, so no span is made current for it (HTTP spans then nest
under the caller's span). Models that override ``stream`` / ``astream`` themselves are covered
only through their ``_generate_with_cache`` path. Faults here are reported through
``otel_mlflow._common.faults`` and never change what the model call returns or raises.
"""

from __future__ import annotations

import threading
from typing import Any

from otel_mlflow._common import faults as _faults
from otel_mlflow._tracing import model_spans as _spans
from otel_mlflow._tracing.model_spans import SpanSource, span_for_run
from otel_mlflow._tracing.model_wrappers import targets as _targets

__all__ = ["SpanSource", "install", "installed", "register", "span_for_run", "uninstall",
           "unregister"]

_lock = threading.Lock()
# Owned patches: (class, method name) -> the original it replaced / the wrapper installed.
_originals: dict[tuple[type, str], Any] = {}
_wrappers: dict[tuple[type, str], Any] = {}
_MARK = "_otel_mlflow_model_context"


def register(source: SpanSource) -> None:
    """Install the wrappers (once) and let them look spans up on ``source`` (held weakly)."""
    try:
        install()
        _spans.add(source)
    except Exception as exc:  # noqa: BLE001 - never break the tracer's construction
        _faults.report("model_context.register", exc)


def unregister(source: SpanSource) -> None:
    """Stop looking spans up on ``source`` (the wrappers stay installed)."""
    _spans.remove(source)


def install() -> bool:
    """Wrap the LangChain methods listed in the module docstring (idempotent, thread-safe).

    This module owns the patches: every original is recorded before it is replaced, and
    :func:`uninstall` puts each one back. Returns True when this call patched something.
    """
    with _lock:
        if _originals:
            return False
        for cls, name, wrap in _targets():
            original = cls.__dict__.get(name)
            if original is None:  # not in this langchain-core version
                continue
            # A wrapper left by an earlier copy of this module (e.g. a reload) is not an original.
            while getattr(original, _MARK, False) and hasattr(original, "__wrapped__"):
                original = original.__wrapped__
            wrapper = wrap(original)
            setattr(wrapper, _MARK, True)
            _originals[(cls, name)] = original
            _wrappers[(cls, name)] = wrapper
            setattr(cls, name, wrapper)
        return bool(_originals)


def uninstall() -> None:
    """Put every recorded original back (registered tracers stay registered, unused).

    A method that someone else re-patched over our wrapper is left to them (restoring it would
    drop their patch); that is reported as a fault.
    """
    with _lock:
        for key, original in _originals.items():
            cls, name = key
            try:
                if cls.__dict__.get(name) is _wrappers.get(key):
                    setattr(cls, name, original)
                else:
                    _faults.report("model_context.uninstall", RuntimeError(
                        f"{cls.__name__}.{name} was re-patched; left as is"))
            except Exception as exc:  # noqa: BLE001
                _faults.report("model_context.uninstall", exc)
        _originals.clear()
        _wrappers.clear()


def installed() -> bool:
    return bool(_originals)
