"""``OtelTracer``'s tool and retriever callbacks: ``execute_tool …`` and ``retrieval …`` spans.

A tool's arguments and result go both into the generic input/output attributes and the GenAI
``gen_ai.tool.call.*`` ones (one JSON value each, deferred where allowed); a retriever's query and
documents into input/output.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from langchain_core.messages import ToolMessage

from otel_mlflow._common import semconv as A
from otel_mlflow._common.faults import report
from otel_mlflow._tracing import genai_mapping as M
from otel_mlflow._tracing.fastpath.deferred import Pending, capture, put
from otel_mlflow._tracing.run_lifecycle import RunLifecycle


class ToolCallbacks(RunLifecycle):
    """``on_tool_*`` and ``on_retriever_*``."""

    def on_tool_start(
        self,
        serialized: dict[str, Any] | None,
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        inputs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        try:
            now = time.time_ns()
            parent = self._parent(parent_run_id)
            name = M.run_name(serialized, kwargs, "tool")
            attrs, meta = self._base_attrs(
                run_id, parent_run_id, A.RUN_TOOL, name, tags, metadata, parent
            )
            M.tool_attributes(name, serialized, kwargs.get("tool_call_id"), self._ser, attrs)
            pending: Pending = []
            if self.capture_content:
                text = capture(self._lazy(), self._ser.dumps,
                               inputs if inputs is not None else input_str)
                put(attrs, pending, A.INPUT, text)
                put(attrs, pending, A.GEN_AI_TOOL_CALL_ARGUMENTS, text)
            self._open(run_id, "execute_tool " + name, M.TOOL_KIND, attrs, now,
                       A.RUN_TOOL, meta, parent, pending)
        except Exception as exc:  # noqa: BLE001
            self._start_failed("tracer.on_tool_start", exc, run_id, parent_run_id, A.RUN_TOOL,
                               kwargs)

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        try:
            now = time.time_ns()
            run = self._runs.pop(run_id)
            if run is None or run.span is None:
                return
            try:
                if self.capture_content:
                    # A ToolMessage's content is the result the model sees.
                    value = output.content if isinstance(output, ToolMessage) else output
                    text = capture(self._lazy(), self._ser.dumps, value)
                    attrs: dict[str, Any] = {}
                    pending: Pending = []
                    put(attrs, pending, A.OUTPUT, text)
                    put(attrs, pending, A.GEN_AI_TOOL_CALL_RESULT, text)
                    self._end_attrs(run, attrs, pending)
            finally:
                run.span.end(end_time=now)
        except Exception as exc:  # noqa: BLE001
            report("tracer.on_tool_end", exc)

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        try:
            self._fail(run_id, error)
        except Exception as exc:  # noqa: BLE001
            report("tracer.on_tool_error", exc)

    def on_retriever_start(
        self,
        serialized: dict[str, Any] | None,
        query: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        try:
            now = time.time_ns()
            parent = self._parent(parent_run_id)
            name = M.run_name(serialized, kwargs, "retriever")
            attrs, meta = self._base_attrs(
                run_id, parent_run_id, A.RUN_RETRIEVER, name, tags, metadata, parent
            )
            attrs[A.GEN_AI_OPERATION_NAME] = A.OP_RETRIEVAL
            attrs[A.GEN_AI_DATA_SOURCE_ID] = name
            if self.capture_content:
                attrs[A.INPUT] = self._ser.dumps(query)
            self._open(run_id, "retrieval " + name, M.RETRIEVER_KIND, attrs, now,
                       A.RUN_RETRIEVER, meta, parent)
        except Exception as exc:  # noqa: BLE001
            self._start_failed("tracer.on_retriever_start", exc, run_id, parent_run_id,
                               A.RUN_RETRIEVER, kwargs)

    def on_retriever_end(self, documents: Sequence[Any], *, run_id: UUID, **kwargs: Any) -> None:
        try:
            now = time.time_ns()
            run = self._runs.pop(run_id)
            if run is None or run.span is None:
                return
            try:
                if self.capture_content:
                    self._end_attrs(run, {A.OUTPUT: self._content.documents(documents)})
            finally:
                run.span.end(end_time=now)
        except Exception as exc:  # noqa: BLE001
            report("tracer.on_retriever_end", exc)

    def on_retriever_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        try:
            self._fail(run_id, error)
        except Exception as exc:  # noqa: BLE001
            report("tracer.on_retriever_error", exc)
