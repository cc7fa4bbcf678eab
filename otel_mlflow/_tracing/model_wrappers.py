"""The wrappers ``model_context`` installs on LangChain model methods (see its docstring).

Each wrapper makes the run's span current around the provider call (``model_spans``): around the
call for the methods that receive a run manager; around each step, never across a ``yield``, for
the streaming ones (``_drive`` / ``_adrive``, with ``_PendingRunSpan`` during the first step).
``targets`` lists what is wrapped and with which wrapper.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any
from uuid import UUID

from opentelemetry import trace
from opentelemetry.trace import Span, SpanContext, Status, StatusCode
from opentelemetry.util.types import Attributes, AttributeValue

from otel_mlflow._common import faults as _faults
from otel_mlflow._tracing import model_spans as _spans

if TYPE_CHECKING:
    from types import TracebackType


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
        span = _spans.span_for_run(self._run_id)
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
        span = _spans.span_for_run(run_id)
        if span is None and first:
            span = _PendingRunSpan(run_id, trace.get_current_span())
        return _spans.attach(span)
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
                _spans.detach(token)
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
                _spans.detach(token)
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
        token = _spans.enter_run(run_manager)
        try:
            return original(self, messages, stop=stop, run_manager=run_manager, **kwargs)
        finally:
            _spans.detach(token)

    return _generate_with_cache


def _wrap_agenerate(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    async def _agenerate_with_cache(self: Any, messages: Any, stop: Any = None,
                                    run_manager: Any = None, **kwargs: Any) -> Any:
        token = _spans.enter_run(run_manager)
        try:
            return await original(self, messages, stop=stop, run_manager=run_manager, **kwargs)
        finally:
            _spans.detach(token)

    return _agenerate_with_cache


def _single(run_managers: Any) -> Any:
    return run_managers[0] if run_managers and len(run_managers) == 1 else None


def _wrap_generate_helper(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def _generate_helper(self: Any, prompts: Any, stop: Any, run_managers: Any,
                         **kwargs: Any) -> Any:
        token = _spans.enter_run(_single(run_managers))
        try:
            return original(self, prompts, stop, run_managers, **kwargs)
        finally:
            _spans.detach(token)

    return _generate_helper


def _wrap_agenerate_helper(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    async def _agenerate_helper(self: Any, prompts: Any, stop: Any, run_managers: Any,
                                **kwargs: Any) -> Any:
        token = _spans.enter_run(_single(run_managers))
        try:
            return await original(self, prompts, stop, run_managers, **kwargs)
        finally:
            _spans.detach(token)

    return _agenerate_helper


def _wrap_stream(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def stream(self: Any, input: Any, config: Any = None, **kwargs: Any) -> Iterator[Any]:  # noqa: A002
        if not _spans._sources:
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
        if not _spans._sources:
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
        if not _spans._sources or run_manager is None:
            return inner  # type: ignore[no-any-return]
        return _drive(inner, run_manager.run_id)

    return _iter_v2_events


def _wrap_aevents(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def _aiter_v2_events(self: Any, messages: Any, *, run_manager: Any,
                         **kwargs: Any) -> AsyncIterator[Any]:
        inner = original(self, messages, run_manager=run_manager, **kwargs)
        if not _spans._sources or run_manager is None:
            return inner  # type: ignore[no-any-return]
        return _adrive(inner, run_manager.run_id)

    return _aiter_v2_events


def targets() -> list[tuple[type, str, Callable[[Callable[..., Any]], Callable[..., Any]]]]:
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
