"""``OtelTracer``'s chain callbacks: one span per kept chain run, its input and output content.

Classification (workflow / agent / skipped step) is ``genai_mapping.classify_chain``'s. Content a
composition hands on unchanged is serialized once for both spans (``in_obj`` / ``out_obj`` on the
run state); a streamed chain's input arrives with its end (or error) callback.
"""

from __future__ import annotations

import time
from typing import Any
from uuid import UUID

from otel_mlflow._common import semconv as A
from otel_mlflow._common.faults import report
from otel_mlflow._tracing import genai_mapping as M
from otel_mlflow._tracing.fastpath.deferred import Pending, capture, put
from otel_mlflow._tracing.run_lifecycle import RunLifecycle
from otel_mlflow._tracing.run_map import RunState


def _is_stream_placeholder(inputs: Any) -> bool:
    """LangChain's start input for a streamed chain (``_transform_stream_with_config``)."""
    return type(inputs) is dict and len(inputs) == 1 and inputs.get("input") == ""


class ChainCallbacks(RunLifecycle):
    """``on_chain_start`` / ``on_chain_end`` / ``on_chain_error``."""

    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
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
            name = M.run_name(serialized, kwargs, "chain")
            cls = M.classify_chain(name, metadata, tags, parent_run_id is None)
            if cls.skip:
                self._skip(run_id, parent, now, A.RUN_CHAIN)
                return
            attrs, meta = self._base_attrs(
                run_id, parent_run_id, A.RUN_CHAIN, name, tags, metadata, parent
            )
            if cls.operation is not None:
                attrs[A.GEN_AI_OPERATION_NAME] = cls.operation
                if cls.agent_name is not None:
                    attrs[A.GEN_AI_AGENT_NAME] = cls.agent_name
            text = None
            pending: Pending = []
            late = False
            if self.capture_content:
                if _is_stream_placeholder(inputs):
                    late = True  # the real input comes with the end callback
                elif parent is not None and inputs is parent.in_obj and parent.in_json is not None:
                    text = parent.in_json
                else:
                    text = capture(self._lazy(), self._content.value, inputs,
                                   parent.memo if parent else None)
                if not late:
                    put(attrs, pending, A.INPUT, text)
            run = self._open(run_id, cls.span_name, cls.kind, attrs, now, A.RUN_CHAIN, meta, parent,
                             pending)
            run.compose = cls.compose
            if late:
                run.late_in = inputs
            if text is not None and (run.compose or type(inputs) is str):
                run.in_obj = inputs
                run.in_json = text
        except Exception as exc:  # noqa: BLE001 - never raise into LangChain
            self._start_failed("tracer.on_chain_start", exc, run_id, parent_run_id, A.RUN_CHAIN,
                               kwargs)

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        try:
            now = time.time_ns()
            run = self._runs.pop(run_id)
            if run is None or run.span is None:
                return
            try:
                if self.capture_content:
                    if outputs is run.out_obj and run.out_json is not None:
                        text = run.out_json
                    elif type(outputs) is str and outputs is run.in_obj:
                        text = run.in_json  # a string passed through unchanged
                    else:
                        text = capture(self._lazy(), self._content.value, outputs, run.memo)
                    attrs: dict[str, Any] = {}
                    pending: Pending = []
                    put(attrs, pending, A.OUTPUT, text)
                    if run.late_in is not None:
                        self._late_input(run, kwargs.get("inputs"), attrs, pending)
                    self._end_attrs(run, attrs, pending)
                    parent = run.parent
                    if parent is not None and (parent.compose or type(outputs) is str):
                        parent.out_obj = outputs
                        parent.out_json = text
            finally:
                run.span.end(end_time=now)
        except Exception as exc:  # noqa: BLE001
            report("tracer.on_chain_end", exc)

    def _late_input(self, run: RunState, inputs: Any, attrs: dict[str, Any],
                    pending: Pending) -> None:
        """A streamed run's input: the real one LangChain passes at end, else the placeholder."""
        value = run.late_in if inputs is None else inputs
        run.late_in = None
        put(attrs, pending, A.INPUT, capture(self._lazy(), self._content.value, value, run.memo))

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        try:
            run = self._runs.get(run_id)
            if run is not None and run.late_in is not None and run.span is not None:
                try:
                    attrs: dict[str, Any] = {}
                    pending: Pending = []
                    self._late_input(run, kwargs.get("inputs"), attrs, pending)
                    self._end_attrs(run, attrs, pending)
                except Exception as exc:  # noqa: BLE001 - the error must still be recorded
                    report("tracer.on_chain_error", exc)
            self._fail(run_id, error)
        except Exception as exc:  # noqa: BLE001
            report("tracer.on_chain_error", exc)
