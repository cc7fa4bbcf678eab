"""Opening, skipping, annotating, failing and abandoning ``OtelTracer``'s runs (the shared base).

The chain, model and tool/retriever callbacks (``chain_callbacks``, ``model_callbacks``,
``tool_callbacks``) all build on this: a run's parent from ``parent_run_id`` through the run map,
its base attributes (run id, type, name, tags, metadata, the active MLflow run on roots), its span
started through ``span_writer`` and entered in the run map, its end values, its failure.

Faults: every callback body keeps its own ``try`` (free on the success path in Python 3.11) and
hands the ``except`` branch to one shared helper: ``report`` for end and error callbacks,
``_start_failed`` for start callbacks (report, then a bare span so the tree keeps its shape). A
decorator would read shorter but adds a Python frame and an ``*args, **kwargs`` repack to every
callback (micro-benchmark: +330 ns per call, about 2.6 µs per ``simple`` invocation; see
docs/performance.md), so the try stays in place.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

from opentelemetry.trace import SpanKind, set_span_in_context

from otel_mlflow._common import semconv as A
from otel_mlflow._common.faults import report
from otel_mlflow._tracing import genai_mapping as M
from otel_mlflow._tracing.content.serialize import Serializer
from otel_mlflow._tracing.content.values import Content
from otel_mlflow._tracing.fastpath import span_writer as _span_ops
from otel_mlflow._tracing.fastpath.deferred import Pending
from otel_mlflow._tracing.run_map import RunMap, RunState
from otel_mlflow._tracing.version import RootIdentity


class RunLifecycle:
    """Run bookkeeping for a tracer holding the attributes below (set by ``OtelTracer``)."""

    _spans: _span_ops.SpanOps
    _runs: RunMap
    _ser: Serializer
    _content: Content
    _content_ser: Serializer | None
    _identity: RootIdentity  # root spans: version, session, user (``_tracing/version``)
    capture_content: bool
    defer_content: bool
    run_ttl_seconds: float
    max_open_runs: int

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
        """Whether this callback's content may be deferred (see ``fastpath.deferred``)."""
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

    def _start_failed(self, fault: str, exc: Exception, run_id: UUID,
                      parent_run_id: UUID | None, run_type: str,
                      kwargs: Mapping[str, Any]) -> None:
        """The ``except`` branch of every start callback: report ``fault``, open a bare span."""
        report(fault, exc)
        self._fallback(run_id, parent_run_id, run_type, kwargs.get("name"))

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
