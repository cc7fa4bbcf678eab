"""The floor for ``overhead.py``: a LangChain handler that only starts and ends one span per run.

No attributes beyond the span name, no content, no mapping: what any tracer must at least pay
(LangChain's callback dispatch plus the OTel SDK's span lifecycle). Parents come from
``parent_run_id`` with explicit contexts, as in ``OtelTracer``, so the comparison is like for like.
"""

from __future__ import annotations

import threading
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from opentelemetry.trace import Span, TracerProvider, set_span_in_context


class MinimalHandler(BaseCallbackHandler):
    run_inline = True

    def __init__(self, provider: TracerProvider) -> None:
        self._tracer = provider.get_tracer("minimal")
        self._spans: dict[UUID, Span] = {}
        self._lock = threading.Lock()

    def _start(self, name: str, run_id: UUID, parent_run_id: UUID | None) -> None:
        parent = self._spans.get(parent_run_id) if parent_run_id is not None else None
        ctx = set_span_in_context(parent) if parent is not None else None
        span = self._tracer.start_span(name, context=ctx)
        with self._lock:
            self._spans[run_id] = span

    def _end(self, run_id: UUID) -> None:
        with self._lock:
            span = self._spans.pop(run_id, None)
        if span is not None:
            span.end()

    def on_chain_start(self, serialized: Any, inputs: Any, *, run_id: UUID,
                       parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        self._start(kwargs.get("name") or "chain", run_id, parent_run_id)

    def on_chat_model_start(self, serialized: Any, messages: Any, *, run_id: UUID,
                            parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        self._start("chat", run_id, parent_run_id)

    def on_llm_start(self, serialized: Any, prompts: Any, *, run_id: UUID,
                     parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        self._start("llm", run_id, parent_run_id)

    def on_tool_start(self, serialized: Any, input_str: Any, *, run_id: UUID,
                      parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        self._start("tool", run_id, parent_run_id)

    def on_retriever_start(self, serialized: Any, query: Any, *, run_id: UUID,
                           parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        self._start("retriever", run_id, parent_run_id)

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id)

    def on_llm_end(self, response: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id)

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id)

    def on_retriever_end(self, documents: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id)

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id)

    def on_retriever_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id)
