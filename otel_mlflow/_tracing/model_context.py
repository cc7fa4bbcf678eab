"""Make the ``chat …`` / ``text_completion …`` span current while the model talks to its API.

Why: an HTTP or gRPC client span made by the app's own instrumentation (e.g.
``opentelemetry-instrumentation-requests`` around ``ChatVertexAI``'s REST call) takes the *current*
OTel span as parent. The tracer creates spans with explicit parents and never attaches context
inside callbacks (LangChain may run handlers in executor threads or copied contexts, so an attach
there would land in the wrong context or leak). Something must therefore make the LLM span current
exactly around the model's provider call, in the thread and context that makes the call.

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
   start callback runs inside it), so the first step attaches a :class:`_PendingRunSpan`, a
   stand-in that resolves to the run's span as soon as the tracer has created it (and to the
   previously current span before that, or when no tracer handles the run).
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

import functools
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol
from uuid import UUID

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanContext, Status, StatusCode
from opentelemetry.util.types import Attributes, AttributeValue

from otel_mlflow._common import faults as _faults

if TYPE_CHECKING:
    from types import TracebackType


class SpanSource(Protocol):
    """What the wrappers need from a tracer: the live span of a LangChain run, if any."""

    def span_for_run(self, run_id: UUID) -> Span | None: ...


_lock = threading.Lock()
# Copy-on-write tuple: readers on the hot path iterate it without taking the lock.
_sources: tuple[weakref.ref[SpanSource], ...] = ()
# Owned patches: (class, method name) -> the original it replaced / the wrapper installed.
_originals: dict[tuple[type, str], Any] = {}
_wrappers: dict[tuple[type, str], Any] = {}
_MARK = "_otel_mlflow_model_context"


def register(source: SpanSource) -> None:
    """Install the wrappers (once) and let them look spans up on ``source`` (held weakly)."""
    global _sources
    try:
        install()
        with _lock:
            alive = tuple(ref for ref in _sources if ref() is not None)
            if not any(ref() is source for ref in alive):
                alive += (weakref.ref(source),)
            _sources = alive
    except Exception as exc:  # noqa: BLE001 - never break the tracer's construction
        _faults.report("model_context.register", exc)


def unregister(source: SpanSource) -> None:
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
def _attach(span: Span | None) -> object | None:
    if span is None:
        return None
    try:
        return otel_context.attach(trace.set_span_in_context(span))
    except Exception as exc:  # noqa: BLE001
        _faults.report("model_context.attach", exc)
        return None


def _detach(token: object | None) -> None:
    if token is None:
        return
    try:
        otel_context.detach(token)  # type: ignore[arg-type]
    except Exception as exc:  # noqa: BLE001
        _faults.report("model_context.detach", exc)


def _enter_run(run_manager: Any) -> object | None:
    if not _sources or run_manager is None:
        return None
    try:
        return _attach(span_for_run(run_manager.run_id))
    except Exception as exc:  # noqa: BLE001
        _faults.report("model_context.enter", exc)
        return None


class _PendingRunSpan(Span):
    """Current span during a stream's first step: the run's span once the tracer made it.

    Everything is delegated to the run's span when it exists, else to the span that was current
    before (so code that runs before the run starts sees the usual parent).
    """

    __slots__ = ("_fallback", "_run_id")

    def __init__(self, run_id: UUID, fallback: Span) -> None:
        self._run_id = run_id
        self._fallback = fallback

    def _target(self) -> Span:
        span = span_for_run(self._run_id)
        return span if span is not None else self._fallback

    def get_span_context(self) -> SpanContext:
        return self._target().get_span_context()

    def is_recording(self) -> bool:
        return self._target().is_recording()

    def set_attributes(self, attributes: dict[str, AttributeValue]) -> None:
        self._target().set_attributes(attributes)

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        self._target().set_attribute(key, value)

    def add_event(self, name: str, attributes: Attributes = None,
                  timestamp: int | None = None) -> None:
        self._target().add_event(name, attributes, timestamp)

    def add_link(self, context: SpanContext, attributes: Attributes = None) -> None:
        self._target().add_link(context, attributes)

    def update_name(self, name: str) -> None:
        self._target().update_name(name)

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        self._target().set_status(status, description)

    def record_exception(self, exception: BaseException, attributes: Attributes = None,
                         timestamp: int | None = None, escaped: bool = False) -> None:
        self._target().record_exception(exception, attributes, timestamp, escaped)

    def end(self, end_time: int | None = None) -> None:
        # Ending is the tracer's job; a stand-in that ended the run's span would corrupt it.
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc_val: BaseException | None,
                 exc_tb: TracebackType | None) -> None:
        return None


# --- stream drivers --------------------------------------------------------------------------
def _with_run_id(config: Any) -> tuple[Any, UUID | None]:
    """A copy of ``config`` carrying a run id (the caller's, else a new uuid7 as LangChain makes)."""
    try:
        from langchain_core.utils.uuid import uuid7

        base = dict(config) if config else {}
        run_id = base.get("run_id")
        if run_id is None:
            run_id = uuid7()
            base["run_id"] = run_id
        return base, run_id
    except Exception as exc:  # noqa: BLE001
        _faults.report("model_context.run_id", exc)
        return config, None


def _step_token(run_id: UUID, first: bool) -> object | None:
    try:
        span = span_for_run(run_id)
        if span is None and first:
            span = _PendingRunSpan(run_id, trace.get_current_span())
        return _attach(span)
    except Exception as exc:  # noqa: BLE001
        _faults.report("model_context.step", exc)
        return None


def _drive(inner: Iterator[Any], run_id: UUID) -> Iterator[Any]:
    """Yield from ``inner`` with the run's span current during each step, never across a yield."""
    first = True
    try:
        while True:
            token = _step_token(run_id, first)
            try:
                item = next(inner)
            except StopIteration:
                return
            finally:
                _detach(token)
            first = False
            yield item
    finally:
        close = getattr(inner, "close", None)
        if close is not None:
            close()


async def _adrive(inner: AsyncIterator[Any], run_id: UUID) -> AsyncIterator[Any]:
    """Async twin of :func:`_drive`."""
    first = True
    try:
        while True:
            token = _step_token(run_id, first)
            try:
                item = await inner.__anext__()
            except StopAsyncIteration:
                return
            finally:
                _detach(token)
            first = False
            yield item
    finally:
        aclose = getattr(inner, "aclose", None)
        if aclose is not None:
            await aclose()


# --- wrappers --------------------------------------------------------------------------------
def _wrap_generate(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def _generate_with_cache(self: Any, messages: Any, stop: Any = None,
                             run_manager: Any = None, **kwargs: Any) -> Any:
        token = _enter_run(run_manager)
        try:
            return original(self, messages, stop=stop, run_manager=run_manager, **kwargs)
        finally:
            _detach(token)

    return _generate_with_cache


def _wrap_agenerate(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    async def _agenerate_with_cache(self: Any, messages: Any, stop: Any = None,
                                    run_manager: Any = None, **kwargs: Any) -> Any:
        token = _enter_run(run_manager)
        try:
            return await original(self, messages, stop=stop, run_manager=run_manager, **kwargs)
        finally:
            _detach(token)

    return _agenerate_with_cache


def _single(run_managers: Any) -> Any:
    return run_managers[0] if run_managers and len(run_managers) == 1 else None


def _wrap_generate_helper(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def _generate_helper(self: Any, prompts: Any, stop: Any, run_managers: Any,
                         **kwargs: Any) -> Any:
        token = _enter_run(_single(run_managers))
        try:
            return original(self, prompts, stop, run_managers, **kwargs)
        finally:
            _detach(token)

    return _generate_helper


def _wrap_agenerate_helper(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    async def _agenerate_helper(self: Any, prompts: Any, stop: Any, run_managers: Any,
                                **kwargs: Any) -> Any:
        token = _enter_run(_single(run_managers))
        try:
            return await original(self, prompts, stop, run_managers, **kwargs)
        finally:
            _detach(token)

    return _agenerate_helper


def _wrap_stream(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def stream(self: Any, input: Any, config: Any = None, **kwargs: Any) -> Iterator[Any]:  # noqa: A002
        if not _sources:
            return original(self, input, config, **kwargs)  # type: ignore[no-any-return]
        config, run_id = _with_run_id(config)
        inner = original(self, input, config, **kwargs)
        if run_id is None:
            return inner  # type: ignore[no-any-return]
        return _drive(inner, run_id)

    return stream


def _wrap_astream(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def astream(self: Any, input: Any, config: Any = None,  # noqa: A002
                **kwargs: Any) -> AsyncIterator[Any]:
        if not _sources:
            return original(self, input, config, **kwargs)  # type: ignore[no-any-return]
        config, run_id = _with_run_id(config)
        inner = original(self, input, config, **kwargs)
        if run_id is None:
            return inner  # type: ignore[no-any-return]
        return _adrive(inner, run_id)

    return astream


def _wrap_events(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def _iter_v2_events(self: Any, messages: Any, *, run_manager: Any,
                        **kwargs: Any) -> Iterator[Any]:
        inner = original(self, messages, run_manager=run_manager, **kwargs)
        if not _sources or run_manager is None:
            return inner  # type: ignore[no-any-return]
        return _drive(inner, run_manager.run_id)

    return _iter_v2_events


def _wrap_aevents(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def _aiter_v2_events(self: Any, messages: Any, *, run_manager: Any,
                         **kwargs: Any) -> AsyncIterator[Any]:
        inner = original(self, messages, run_manager=run_manager, **kwargs)
        if not _sources or run_manager is None:
            return inner  # type: ignore[no-any-return]
        return _adrive(inner, run_manager.run_id)

    return _aiter_v2_events


def _targets() -> list[tuple[type, str, Callable[[Callable[..., Any]], Callable[..., Any]]]]:
    from langchain_core.language_models.chat_models import BaseChatModel
    from langchain_core.language_models.llms import BaseLLM

    return [
        (BaseChatModel, "_generate_with_cache", _wrap_generate),
        (BaseChatModel, "_agenerate_with_cache", _wrap_agenerate),
        (BaseChatModel, "stream", _wrap_stream),
        (BaseChatModel, "astream", _wrap_astream),
        # The content-block event protocol (``stream_events(version="v3")``; langchain-core
        # >= 1.3): the run has started when these are called, so the span already exists.
        (BaseChatModel, "_iter_v2_events", _wrap_events),
        (BaseChatModel, "_aiter_v2_events", _wrap_aevents),
        (BaseLLM, "_generate_helper", _wrap_generate_helper),
        (BaseLLM, "_agenerate_helper", _wrap_agenerate_helper),
        (BaseLLM, "stream", _wrap_stream),
        (BaseLLM, "astream", _wrap_astream),
    ]


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
