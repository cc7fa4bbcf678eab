"""``OtelTracer``'s chat model and LLM callbacks: ``chat …`` / ``text_completion …`` spans.

Request attributes at start and response attributes (usage, finish reasons, response model) at
end come from ``genai_mapping``; input and output messages are captured (deferred where allowed);
streamed calls get the first token's time (``on_llm_new_token``: one lookup, one clock read).
"""

from __future__ import annotations

import time
from typing import Any
from uuid import UUID

from opentelemetry.trace import Status, StatusCode

from otel_mlflow._common import semconv as A
from otel_mlflow._common.faults import report
from otel_mlflow._tracing import genai_mapping as M
from otel_mlflow._tracing.fastpath.deferred import Pending, capture, put
from otel_mlflow._tracing.run_lifecycle import RunLifecycle
from otel_mlflow._tracing.run_map import RunState


class ModelCallbacks(RunLifecycle):
    """``on_chat_model_start`` / ``on_llm_start`` / ``on_llm_new_token`` / ``on_llm_end`` /
    ``on_llm_error``."""

    def _llm_start(
        self,
        operation: str,
        run_type: str,
        run_id: UUID,
        parent_run_id: UUID | None,
        tags: list[str] | None,
        metadata: dict[str, Any] | None,
        serialized: dict[str, Any] | None,
        kwargs: dict[str, Any],
    ) -> tuple[dict[str, Any], dict[str, Any] | None, int, str | None, RunState | None]:
        """Common start of an LLM span: ``(attrs, metadata, start ns, model, parent)``."""
        now = time.time_ns()
        parent = self._parent(parent_run_id)
        name = M.run_name(serialized, kwargs, run_type)
        attrs, meta = self._base_attrs(run_id, parent_run_id, run_type, name, tags, metadata, parent)
        attrs[A.GEN_AI_OPERATION_NAME] = operation
        provider = M.provider_name(metadata, serialized)
        if provider is not None:
            attrs[A.GEN_AI_PROVIDER_NAME] = provider
        model = M.request_attributes(kwargs.get("invocation_params"), metadata, attrs)
        return attrs, meta, now, model, parent

    def on_chat_model_start(
        self,
        serialized: dict[str, Any] | None,
        messages: list[list[Any]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        try:
            attrs, meta, now, model, parent = self._llm_start(
                A.OP_CHAT, A.RUN_CHAT_MODEL, run_id, parent_run_id, tags, metadata, serialized,
                kwargs,
            )
            pending: Pending = []
            if self.capture_content and messages:
                # One value for two attributes: (input messages, system instructions).
                both = capture(self._lazy(), self._content.chat_input, messages[0],
                               parent.memo if parent is not None else None)
                put(attrs, pending, A.GEN_AI_INPUT_MESSAGES, both, 0)
                put(attrs, pending, A.GEN_AI_SYSTEM_INSTRUCTIONS, both, 1)
            self._open(run_id, M.llm_span(A.OP_CHAT, model), M.LLM_KIND, attrs, now,
                       A.RUN_CHAT_MODEL, meta, parent, pending)
        except Exception as exc:  # noqa: BLE001
            self._start_failed("tracer.on_chat_model_start", exc, run_id, parent_run_id,
                               A.RUN_CHAT_MODEL, kwargs)

    def on_llm_start(
        self,
        serialized: dict[str, Any] | None,
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        try:
            attrs, meta, now, model, parent = self._llm_start(
                A.OP_TEXT_COMPLETION, A.RUN_LLM, run_id, parent_run_id, tags, metadata,
                serialized, kwargs,
            )
            pending: Pending = []
            if self.capture_content and prompts:
                put(attrs, pending, A.GEN_AI_INPUT_MESSAGES,
                    capture(self._lazy(), self._content.prompts, prompts))
            self._open(run_id, M.llm_span(A.OP_TEXT_COMPLETION, model), M.LLM_KIND, attrs, now,
                       A.RUN_LLM, meta, parent, pending)
        except Exception as exc:  # noqa: BLE001
            self._start_failed("tracer.on_llm_start", exc, run_id, parent_run_id, A.RUN_LLM,
                               kwargs)

    def on_llm_new_token(self, token: Any, *, run_id: UUID, **kwargs: Any) -> None:
        # Hot path while streaming: one dict lookup, one clock read for the first token only.
        try:
            run = self._runs.get(run_id)
            if run is not None and not run.first_token_ns:
                run.first_token_ns = time.time_ns()
        except Exception as exc:  # noqa: BLE001
            report("tracer.on_llm_new_token", exc)

    def on_llm_end(self, response: Any, *, run_id: UUID, **kwargs: Any) -> None:
        try:
            now = time.time_ns()
            run = self._runs.pop(run_id)
            if run is None or run.span is None:
                return
            try:
                attrs: dict[str, Any] = {}
                if run.first_token_ns:
                    attrs[A.STREAMED] = True
                    attrs[A.TTFT_MS] = (run.first_token_ns - run.start_ns) / 1e6
                    run.span.add_event(A.EVENT_FIRST_TOKEN, None, run.first_token_ns)
                reasons: list[str | None] = []
                generations = M.response_attributes(response, attrs, reasons)
                pending: Pending = []
                if self.capture_content and generations:
                    put(attrs, pending, A.GEN_AI_OUTPUT_MESSAGES, capture(
                        self._lazy(), self._content.outputs, generations, reasons, run.memo))
                self._end_attrs(run, attrs, pending)
                if A.ERROR_TYPE in attrs:  # an answer that is a failure: a blocked prompt
                    run.span.set_status(Status(StatusCode.ERROR, attrs.get(A.ERROR_MESSAGE)))
            finally:
                run.span.end(end_time=now)
        except Exception as exc:  # noqa: BLE001
            report("tracer.on_llm_end", exc)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        try:
            self._fail(run_id, error)
        except Exception as exc:  # noqa: BLE001
            report("tracer.on_llm_error", exc)
