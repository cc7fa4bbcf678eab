"""``OtelTracer``: a LangChain callback handler that emits one OpenTelemetry span per run.

Usage: ``chain.invoke(inputs, config={"callbacks": [OtelTracer(provider)]})``.

Design (why it looks like this):

- A plain ``BaseCallbackHandler`` with ``run_inline = True``, not ``BaseTracer``: no ``Run``
  objects, no ``dumpd`` of inputs, no deep copies. LangChain calls it inline from sync and async
  code (for async code on the event loop thread).
- Parents come from ``parent_run_id`` through the run map, never from the ambient OTel context:
  spans are created with ``tracer.start_span(..., context=set_span_in_context(parent))`` and never
  made current, so ``batch``/``stream``/``astream`` nest correctly and nothing is left current in
  the caller's thread. A root run's span is a child of the context current when it starts (for
  example a web request span); otherwise it starts a new trace.
- Run state is bounded: the run map is capped (``max_open_runs``; when full the oldest open run is
  ended with ``error.type = otel_mlflow.run_evicted``) and runs open longer than
  ``run_ttl_seconds`` are ended with ``error.type = otel_mlflow.run_timeout`` by a sweep that runs
  on start events at most every min(5 s, TTL / 4) (no extra thread; ``_run_map``).
- On construction the tracer registers with ``_model_context`` (held weakly), which makes the
  chat span current around the provider call so HTTP client spans nest under it.
- Every callback body is wrapped: a fault is reported through ``otel_mlflow._common.faults`` and never
  reaches LangChain or the app.
- Content (messages, inputs/outputs, tool arguments/results, metadata, error messages) is captured
  by default and serialized once (``_content``, ``Serializer``: redaction + size cap); objects a
  composition hands on unchanged, once for both spans. On a ``LiteSpan`` chain / chat / LLM / tool
  values are deferred (``_deferred``): containers copied now, JSON on the span's first read.
- Spans are started, annotated and failed through ``_span_ops`` (``LiteSpan`` where the SDK
  pipeline cannot tell the difference; no per-value attribute check where it changes nothing).

Configuration, each resolved once here (argument > environment variable > default):

- ``capture_content``: ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` > True
- ``max_attribute_chars``: ``OTEL_MLFLOW_MAX_ATTRIBUTE_CHARS`` > 16384 (per JSON attribute)
- ``defer_content``: ``OTEL_MLFLOW_DEFER_CONTENT`` > True (see ``_deferred``)
- ``run_ttl_seconds``: ``OTEL_MLFLOW_RUN_TTL_SECONDS`` > 600
- ``max_open_runs``: ``OTEL_MLFLOW_MAX_OPEN_RUNS`` > 10000
- ``redact_keys`` / ``redact_patterns``: ``OTEL_MLFLOW_REDACT_KEYS`` / ``OTEL_MLFLOW_REDACT_PATTERNS``
- ``mask``: a ``mask(key, value) -> value`` hook applied to every captured leaf value.
- ``app_version``: ``OTEL_MLFLOW_APP_VERSION`` > the computed chain version (``_tracing/version``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import ToolMessage
from opentelemetry import trace as trace_api
from opentelemetry.trace import Span, SpanKind, TracerProvider
from opentelemetry.trace import set_span_in_context

from otel_mlflow._common import semconv as A
from otel_mlflow._common import settings as _config
from otel_mlflow._tracing import genai_mapping as M
from otel_mlflow._tracing import model_context as _model_context
from otel_mlflow._tracing.fastpath import span_writer as _span_ops
from otel_mlflow._tracing.content.values import Content
from otel_mlflow._tracing.fastpath.deferred import Pending, capture, put
from otel_mlflow._common.faults import report
from otel_mlflow._common.redact import Redactor
from otel_mlflow._tracing.run_map import RunMap, RunState
from otel_mlflow._tracing.content.serialize import Serializer
from otel_mlflow._tracing.events import SpanEventCallbacks
from otel_mlflow._tracing.version import RootIdentity

DEFAULT_RUN_TTL_SECONDS = 600.0
DEFAULT_MAX_OPEN_RUNS = 10_000
_TRACER_NAME = "otel_mlflow"


def _is_stream_placeholder(inputs: Any) -> bool:
    """LangChain's start input for a streamed chain (``_transform_stream_with_config``)."""
    return type(inputs) is dict and len(inputs) == 1 and inputs.get("input") == ""


class OtelTracer(SpanEventCallbacks, BaseCallbackHandler):
    """LangChain callback handler emitting OpenTelemetry GenAI spans (see the module docstring)."""

    run_inline = True
    raise_error = False

    def __init__(
        self,
        tracer_provider: TracerProvider | None = None,
        *,
        capture_content: bool | None = None,
        max_attribute_chars: int | None = None,
        run_ttl_seconds: float | None = None,
        max_open_runs: int | None = None,
        redact_keys: Iterable[str] | None = None,
        redact_patterns: Iterable[str] | None = None,
        mask: Callable[[str | None, Any], Any] | None = None,
        defer_content: bool | None = None,
        app_version: str | None = None,
    ) -> None:
        super().__init__()
        provider = tracer_provider or trace_api.get_tracer_provider()
        self._spans = _span_ops.SpanOps(
            provider.get_tracer(_TRACER_NAME, _config.package_version())
        )
        self.capture_content = (
            capture_content
            if capture_content is not None
            else _config.env_bool(_config.CAPTURE_MESSAGE_CONTENT, True)
        )
        ttl = (
            run_ttl_seconds
            if run_ttl_seconds is not None
            else _config.env_float(_config.RUN_TTL_SECONDS, DEFAULT_RUN_TTL_SECONDS)
        )
        cap = (
            max_open_runs
            if max_open_runs is not None
            else _config.env_int(_config.MAX_OPEN_RUNS, DEFAULT_MAX_OPEN_RUNS)
        )
        self._runs = RunMap(cap, ttl)
        self.run_ttl_seconds = self._runs.ttl_seconds
        self.max_open_runs = self._runs.max_open
        redactor = Redactor(extra_keys=redact_keys, extra_patterns=redact_patterns, mask=mask)
        self._ser = Serializer(max_attribute_chars, redactor)
        self._content = Content(self._ser)
        self.defer_content = (
            defer_content
            if defer_content is not None
            else _config.env_bool(_config.DEFER_CONTENT, True)
        )
        # Content capture off: the serializer is not handed to the error / event code either.
        self._content_ser = self._ser if self.capture_content else None
        # Root spans: chain version, session, user, active LoggedModel (``_tracing/version``).
        # (Its redactor has no ``mask``: that hook is for captured content, run off the app thread.)
        self._identity = RootIdentity(
            app_version, Redactor(extra_keys=redact_keys, extra_patterns=redact_patterns))
        # HTTP/gRPC client spans of the provider call nest under the chat span through this.
        _model_context.register(self)

    # --- public ---------------------------------------------------------------------------
    def span_for_run(self, run_id: UUID) -> Span | None:
        """The span of an open run (for a skipped run, its nearest kept ancestor's), or None."""
        run = self._runs.get(run_id)
        return run.anchor if run is not None else None

    @property
    def open_runs(self) -> int:
        """How many LangChain runs are open (started, not yet ended)."""
        return len(self._runs)

    # --- run map --------------------------------------------------------------------------
    def _parent(self, parent_run_id: UUID | None) -> RunState | None:
        """The open parent run whose anchor parents a new span (its ``ctx`` set), else None.

        None: the new span's parent is the ambient context (a root, or an unknown parent).
        """
        if parent_run_id is None:
            return None
        parent = self._runs.get(parent_run_id)
        if parent is None or parent.anchor is None:
            return None
        if parent.ctx is None:
            parent.ctx = set_span_in_context(parent.anchor)
        return parent

    def _lazy(self) -> bool:
        """Whether this callback's content may be deferred (see ``_deferred``)."""
        return self.defer_content and self._spans.lazy_ok()

    def _open(
        self,
        run_id: UUID,
        name: str,
        kind: SpanKind,
        attrs: dict[str, Any],
        now: int,
        run_type: str,
        meta: dict[str, Any] | None,
        parent: RunState | None,
        pending: Pending | None = None,
    ) -> RunState:
        span, own = self._spans.start(name, parent.ctx if parent is not None else None, kind,
                                      attrs, now)
        if pending:
            self._spans.hand_over(span, pending, own)
        run = RunState(span, span, None, now, run_type, meta, parent)
        run.rid = attrs[A.LC_RUN_ID]
        run.attrs = own
        if parent is not None:
            run.memo = parent.memo
        elif self.capture_content:
            run.memo = {}
        for old, error_type in self._runs.add(run_id, run, now):
            self._abandon(old, error_type, now)
        return run

    def _end_attrs(self, run: RunState, attrs: dict[str, Any],
                   pending: Pending | None = None) -> None:
        """A run's end values: into its span's own dict when the tracer holds it, else the SDK."""
        if pending:
            self._spans.hand_over(run.span, pending, run.attrs)  # type: ignore[arg-type]
        if not attrs:
            return
        if run.attrs is not None:
            run.attrs.update(attrs)
        else:
            self._spans.set(run.span, attrs)  # type: ignore[arg-type]

    def _abandon(self, run: RunState, error_type: str, now: int) -> None:
        if run.span is None:
            return
        report(
            "tracer." + error_type.rsplit(".", 1)[-1],
            message=f"LangChain run ended by otel_mlflow ({error_type}); open runs capped at "
            f"{self.max_open_runs}, TTL {self.run_ttl_seconds:g}s",
        )
        _span_ops.abandon(run.span, error_type, now)

    def _skip(self, run_id: UUID, parent: RunState | None, now: int, run_type: str) -> None:
        if parent is None:
            run = RunState(None, None, None, now, run_type, None, None)
        else:
            # Children of a skipped run attach to its nearest kept ancestor.
            run = RunState(None, parent.anchor, parent.ctx, now, run_type, parent.meta, None)
            run.memo = parent.memo
        for old, error_type in self._runs.add(run_id, run, now):
            self._abandon(old, error_type, now)

    # --- shared attribute helpers ---------------------------------------------------------
    def _base_attrs(
        self,
        run_id: UUID,
        parent_run_id: UUID | None,
        run_type: str,
        name: str,
        tags: Sequence[str] | None,
        metadata: Mapping[str, Any] | None,
        parent: RunState | None,
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        attrs: dict[str, Any] = {
            A.LC_RUN_ID: str(run_id),
            A.LC_RUN_TYPE: run_type,
            A.LC_NAME: name,
        }
        if parent is not None:
            # The parent's run id as text was made once, for the parent's own span.
            attrs[A.LC_PARENT_RUN_ID] = parent.rid or str(parent_run_id)
        else:
            attrs[A.ROOT] = True
            if parent_run_id is not None:
                attrs[A.LC_PARENT_RUN_ID] = str(parent_run_id)
            self._active_mlflow_run(attrs)
            self._identity.annotate(attrs, metadata)
        if tags:
            kept_tags = M.user_tags(tags)
            if kept_tags:
                attrs[A.LC_TAGS] = kept_tags
        if not metadata:
            return attrs, None
        conversation = M.conversation_id(metadata)
        if conversation is not None:
            attrs[A.GEN_AI_CONVERSATION_ID] = conversation
        meta = M.user_metadata(metadata)
        # Inherited metadata repeats on every child; write it where it changes (and on roots).
        if meta and self.capture_content and (parent is None or meta != parent.meta):
            attrs[A.LC_METADATA] = self._ser.dumps(meta)
        return attrs, meta

    @staticmethod
    def _active_mlflow_run(attrs: dict[str, Any]) -> None:
        # Only an already imported mlflow can have an active run; never import it here.
        mlflow = sys.modules.get("mlflow")
        if mlflow is None:
            return
        active = mlflow.active_run()
        if active is not None:
            attrs[A.MLFLOW_RUN_ID] = active.info.run_id
            attrs[A.MLFLOW_EXPERIMENT_ID] = active.info.experiment_id

    def _fail(self, run_id: UUID, error: BaseException) -> None:
        now = time.time_ns()
        run = self._runs.pop(run_id)
        if run is not None and run.span is not None:
            _span_ops.fail(run.span, error, now, self._content_ser)

    def _fallback(self, run_id: UUID, parent_run_id: UUID | None, run_type: str,
                  name: Any) -> None:
        """After a fault while opening a run: a bare span, so the tree keeps its shape."""
        try:
            if run_id in self._runs:
                return
            now = time.time_ns()
            parent = self._parent(parent_run_id)
            attrs: dict[str, Any] = {A.LC_RUN_ID: str(run_id), A.LC_RUN_TYPE: run_type}
            if parent is None:
                attrs[A.ROOT] = True
            text = name if isinstance(name, str) and name else run_type
            self._open(run_id, text, SpanKind.INTERNAL, attrs, now, run_type, None, parent)
        except Exception as exc:  # noqa: BLE001
            report("tracer.fallback", exc)

    # --- chains ---------------------------------------------------------------------------
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
                                   parent.memo if parent else None, None, 2)
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
            report("tracer.on_chain_start", exc)
            self._fallback(run_id, parent_run_id, A.RUN_CHAIN, kwargs.get("name"))

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
                        text = capture(self._lazy(), self._content.value, outputs,
                                       run.memo, None, 2)
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
        put(attrs, pending, A.INPUT,
            capture(self._lazy(), self._content.value, value, run.memo, None, 2))

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

    # --- LLMs -----------------------------------------------------------------------------
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
        provider = M.provider_name(metadata)
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
                both = capture(self._lazy(), self._content.chat_input, messages[0],
                               parent.memo if parent is not None else None, None, 2)
                put(attrs, pending, A.GEN_AI_INPUT_MESSAGES, both, 0)
                put(attrs, pending, A.GEN_AI_SYSTEM_INSTRUCTIONS, both, 1)
            self._open(run_id, M.llm_span(A.OP_CHAT, model), M.LLM_KIND, attrs, now,
                       A.RUN_CHAT_MODEL, meta, parent, pending)
        except Exception as exc:  # noqa: BLE001
            report("tracer.on_chat_model_start", exc)
            self._fallback(run_id, parent_run_id, A.RUN_CHAT_MODEL, kwargs.get("name"))

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
            report("tracer.on_llm_start", exc)
            self._fallback(run_id, parent_run_id, A.RUN_LLM, kwargs.get("name"))

    def on_llm_new_token(self, token: str, *, run_id: UUID, **kwargs: Any) -> None:
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
                        self._lazy(), self._content.outputs, generations, reasons, run.memo, 3))
                self._end_attrs(run, attrs, pending)
            finally:
                run.span.end(end_time=now)
        except Exception as exc:  # noqa: BLE001
            report("tracer.on_llm_end", exc)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        try:
            self._fail(run_id, error)
        except Exception as exc:  # noqa: BLE001
            report("tracer.on_llm_error", exc)

    # --- tools ----------------------------------------------------------------------------
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
            report("tracer.on_tool_start", exc)
            self._fallback(run_id, parent_run_id, A.RUN_TOOL, kwargs.get("name"))

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
                    attrs = {}
                    pending = []
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

    # --- retrievers -----------------------------------------------------------------------
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
            report("tracer.on_retriever_start", exc)
            self._fallback(run_id, parent_run_id, A.RUN_RETRIEVER, kwargs.get("name"))

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
