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
  on start events at most every min(5 s, TTL / 4) (no extra thread; ``run_map``).
- On construction the tracer registers with ``model_context`` (held weakly), which makes the
  chat span current around the provider call so HTTP client spans nest under it.
- Every callback body is wrapped: a fault is reported through ``otel_mlflow._common.faults`` and never
  reaches LangChain or the app (the ``try`` stays in each callback, the ``except`` branch is one
  shared helper: see ``run_lifecycle``).
- The callbacks live by job: ``chain_callbacks``, ``model_callbacks``, ``tool_callbacks`` (tools
  and retrievers), ``events`` (agent actions, retries), on the run bookkeeping of
  ``run_lifecycle``; this module resolves the configuration and puts them together.
- Content (messages, inputs/outputs, tool arguments/results, metadata, error messages) is captured
  by default and serialized once (``content.values``, ``Serializer``: redaction + size cap); objects a
  composition hands on unchanged, once for both spans. On a ``LiteSpan`` chain / chat / LLM / tool
  values are deferred (``fastpath.deferred``): containers copied now, JSON on the span's first read.
- Spans are started, annotated and failed through ``fastpath.span_writer`` (``LiteSpan`` where the SDK
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

from collections.abc import Callable, Iterable
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from opentelemetry import trace as trace_api
from opentelemetry.trace import Span, TracerProvider

from otel_mlflow._common import settings as _config
from otel_mlflow._common.redact import Redactor
from otel_mlflow._tracing import model_context as _model_context
from otel_mlflow._tracing.chain_callbacks import ChainCallbacks
from otel_mlflow._tracing.content.serialize import Serializer
from otel_mlflow._tracing.content.values import Content
from otel_mlflow._tracing.events import SpanEventCallbacks
from otel_mlflow._tracing.fastpath import span_writer as _span_ops
from otel_mlflow._tracing.model_callbacks import ModelCallbacks
from otel_mlflow._tracing.run_map import RunMap
from otel_mlflow._tracing.tool_callbacks import ToolCallbacks
from otel_mlflow._tracing.version import RootIdentity

DEFAULT_RUN_TTL_SECONDS = 600.0
DEFAULT_MAX_OPEN_RUNS = 10_000
_TRACER_NAME = "otel_mlflow"


class OtelTracer(ChainCallbacks, ModelCallbacks, ToolCallbacks, SpanEventCallbacks,
                 BaseCallbackHandler):
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
