"""``MlflowSpanExporter``: an OpenTelemetry ``SpanExporter`` that writes each trace as an MLflow run.

Usage::

    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from otel_mlflow import MlflowSpanExporter, flush

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(MlflowSpanExporter()))
    trace.set_tracer_provider(provider)  # or call provider.force_flush() before flush()
    ...
    flush()  # the global provider's span queues, then the exporter's buffers, into MLflow

Or with no code: ``OTEL_TRACES_EXPORTER=mlflow`` (entry point ``mlflow``) under
``opentelemetry-instrument``.

How a trace flows: ``export()`` only appends the spans to a per-trace buffer under a lock and
returns (no I/O, never raises). A background assembler thread turns complete traces into
``TraceRecord``s (``otel_mlflow._record``) and hands them to ``Delivery`` (worker threads,
retries, the on-disk spool), which calls ``MlflowWriter.write``.

When a trace is complete, in priority order:

1. a span without a parent or with a remote parent (the trace's local root) has ended: the trace
   is due ``grace_seconds`` later, so children that end after their root (streaming, callbacks on
   other threads) and spans still in another export batch arrive first;
2. a span carrying ``otel_mlflow.root=True`` (a LangChain root run) has ended but it has a local
   parent (a web request span, a user's span): that parent usually ends soon after and belongs
   in the same run, but it may also live in another provider and never arrive; so the trace is
   due ``max(grace_seconds, parent_wait_seconds)`` (default 10 s) after the last such root ended,
   or ``grace_seconds`` after the local root arrives, whichever comes first;
   With ``remote_parent_is_root=False`` (the OTLP receiver, which sees every process of a
   trace) only a span without any parent is a root (rule 1); a span with a remote parent waits
   for it like a LangChain root (rule 2);
3. ``force_flush()`` / ``flush()`` / ``shutdown()`` write such traces at once, without the grace;
4. a trace whose root has not ended ``trace_timeout_seconds`` after its first span arrived is
   written as a partial run (tag ``otel_mlflow.partial=true``); so are open traces at
   ``shutdown()``.

Back-pressure (a hard memory bound): ``max_buffered_traces`` caps every trace the exporter holds
between ``export()`` and ``Delivery.submit`` -- buffered ones and those taken for assembly but
not yet submitted. The assembler takes at most a quarter of the cap per pass. When a new trace
would exceed the cap, the thread calling ``export()`` (the ``BatchSpanProcessor`` worker, or the
app thread under ``SimpleSpanProcessor``) converts and submits traces itself before it buffers
more, in priority order: (a) the oldest complete traces, without waiting for their grace
(``stats["early"]``); (b) else the OLDEST open trace, as partial (``stats["overflow"]``). Never
dropped silently: both are counted and logged (``fault_counts()["exporter.backpressure"]`` /
``["exporter.overflow"]``). That exporting thread is then slower, so under sustained overload
the SDK's own bounded span queue is what fills (``max_queue_size``; the SDK logs "Queue full"
when it drops).

Late spans (a span of a trace already written, e.g. a web request span that ends more than
``parent_wait_seconds`` after the LangChain root it contains, a child that ends after the grace,
or the rest of a trace written as partial) are not written: MLflow params are immutable, the
run's status is already final and the Traces view holds the trace under its id, so amending a
written run would need a second, different write path. They are counted in
``stats["late_spans"]`` and ``fault_counts()["exporter.late_spans"]``, with a rate-limited log
line naming a trace id. Spans beyond ``max_spans_per_trace`` are counted in the run's
``otel_mlflow.dropped_spans`` tag.

Tail sampling: when a trace is complete, ``otel_mlflow._record.sampling.keep_trace`` decides
whether it is written (an ``on_complete`` hook of the assembler): errors and traces slower than
``keep_slower_than_ms`` always; otherwise by trace id against ``sample_ratio``, the SDK's
``TraceIdRatioBased`` rule. Dropped traces are counted in ``stats["sampled_out"]`` (and, as every
hook-dropped trace, in ``stats["skipped"]``); written runs carry the tag
``otel_mlflow.sample_ratio``. ``on_discard(trace_id)`` hears of every complete trace that will
never reach the sink.

Traces whose LangChain root started under an active MLflow run (``otel_mlflow.mlflow.run_id``)
are written into that run; the assembler batches the traces of one run (up to
``assembler.MAX_BATCH_TRACES``) into one write.

Configuration (constructor argument > environment variable > default, resolved once here):

- ``tracking_uri``: ``MLFLOW_TRACKING_URI``, default ``sqlite:///mlflow.db`` in the working dir.
- ``experiment_name``: ``MLFLOW_EXPERIMENT_NAME``, default MLflow's "Default" experiment.
- ``run_mode``: ``OTEL_MLFLOW_RUN_MODE``; ``trace`` (default: one run per trace, except traces
  started under an active MLflow run, which go into it) or ``active`` (only traces started under
  an active run are written; others are counted in ``stats["skipped"]``).
- ``link_traces``: ``OTEL_MLFLOW_LINK_TRACES``, default on (MLflow Traces view, linked to the run).
- ``grace_seconds``: ``OTEL_MLFLOW_GRACE_SECONDS``, default 1.0.
- ``trace_timeout_seconds``: ``OTEL_MLFLOW_TRACE_TIMEOUT_SECONDS``, default 300.
- ``parent_wait_seconds``: ``OTEL_MLFLOW_PARENT_WAIT_SECONDS``, default 10 (rule 2 above).
- ``sample_ratio``: ``OTEL_MLFLOW_SAMPLE_RATIO``, default 1.0; ``keep_slower_than_ms``:
  ``OTEL_MLFLOW_KEEP_SLOWER_THAN_MS``, default off (tail sampling above).
- ``max_buffered_traces``: ``OTEL_MLFLOW_MAX_BUFFERED_TRACES``, default 2,000 (back-pressure).
- ``max_spans_per_trace``: ``OTEL_MLFLOW_MAX_SPANS_PER_TRACE``, default 10,000.
- ``workers``: ``OTEL_MLFLOW_WORKERS``, default 4 writer threads.
- ``register_prompts``: ``OTEL_MLFLOW_REGISTER_PROMPTS``, default off (prompt templates not in
  MLflow's Prompt Registry are registered; ``otel_mlflow._sink.prompts``).
- ``prices``: ``OTEL_MLFLOW_PRICES`` (JSON text or a JSON file path), per-model prices that
  override genai-prices' table (``otel_mlflow._record.cost``, resolved in ``prices``).
- ``spool_dir``, ``spool_max_bytes``, ``shutdown_timeout_seconds``,
  ``retry_max_seconds``: ``OTEL_MLFLOW_SPOOL_DIR`` etc., passed to ``Delivery`` / ``Spool``.

Flushing: ``force_flush()`` force-flushes the known providers that feed this exporter, then
drains it; module-level ``flush()`` (``otel_mlflow._export.providers``) does the same for every
live exporter. ``shutdown()`` (called by ``provider.shutdown()``, also at interpreter exit) drains
within min(the caller's timeout -- the SDK passes what is left of its 30 s --,
``shutdown_timeout_seconds``).

Who does what: this module is the thin ``SpanExporter`` (check shutdown, hand the spans to the
buffer, return SUCCESS/FAILURE, never raise); ``trace_buffer`` holds the completion rules (pure);
``assembler`` converts complete traces and hands them to ``Delivery`` (and has the
``on_complete`` hooks); ``providers`` the registry and ``flush()``; ``settings`` the resolution;
``prices`` the price table.
"""

from __future__ import annotations

import os
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from otel_mlflow._common import faults as _faults
from otel_mlflow._export import providers as _providers
from otel_mlflow._export.assembler import Assembler
from otel_mlflow._export.prices import resolve_price_table
from otel_mlflow._export.settings import ExporterSettings
from otel_mlflow._export.trace_buffer import Ready, Relief, TraceBuffer
from otel_mlflow._record.sampling import keep_trace

_RELIEF_FAULTS = {
    Relief.EARLY: (
        "exporter.backpressure",
        "{cap} traces held (max_buffered_traces): the exporter is behind; complete traces "
        "written without their grace",
    ),
    Relief.OVERFLOW: (
        "exporter.overflow",
        "{cap} traces held (max_buffered_traces); the oldest open trace is written early as "
        "partial",
    ),
}


class MlflowSpanExporter(SpanExporter):
    """Buffers spans by trace and writes each finished trace to MLflow; see the module doc."""

    def __init__(
        self,
        tracking_uri: str | None = None,
        experiment_name: str | None = None,
        *,
        run_mode: str | None = None,
        link_traces: bool | None = None,
        grace_seconds: float | None = None,
        trace_timeout_seconds: float | None = None,
        max_buffered_traces: int | None = None,
        max_spans_per_trace: int | None = None,
        workers: int | None = None,
        spool_dir: str | None = None,
        spool_max_bytes: int | None = None,
        shutdown_timeout_seconds: float | None = None,
        retry_max_seconds: float | None = None,
        parent_wait_seconds: float | None = None,
        write: Callable[..., None] | None = None,
        register_prompts: bool | None = None,
        prices: Mapping[str, Any] | None = None,
        sample_ratio: float | None = None,
        keep_slower_than_ms: float | None = None,
        on_discard: Callable[[int], None] | None = None,
        remote_parent_is_root: bool = True,
    ) -> None:
        """Resolve every setting once; cheap (no network: MLflow is reached from the workers).

        ``write`` replaces ``MlflowWriter.write`` as the sink (another store, tests).
        ``prices`` overrides genai-prices' table per model (``otel_mlflow._export.prices``).
        ``on_discard(trace_id)`` is called for a complete trace that will never reach the sink
        (sampled out, skipped by ``run_mode=active``, failed to convert).
        ``remote_parent_is_root=False`` (the OTLP receiver) makes a span with a remote parent
        wait for that parent like a LangChain root (rule 2) instead of completing the trace.
        """
        from otel_mlflow._delivery.spool import Spool
        from otel_mlflow._delivery.workers import Delivery
        from otel_mlflow._record import TraceRecord
        from otel_mlflow._sink.runs import MlflowWriter

        s = self.settings = ExporterSettings.resolve(
            tracking_uri, experiment_name, run_mode=run_mode, link_traces=link_traces,
            grace_seconds=grace_seconds, trace_timeout_seconds=trace_timeout_seconds,
            parent_wait_seconds=parent_wait_seconds, max_buffered_traces=max_buffered_traces,
            max_spans_per_trace=max_spans_per_trace, workers=workers, spool_dir=spool_dir,
            spool_max_bytes=spool_max_bytes, shutdown_timeout_seconds=shutdown_timeout_seconds,
            retry_max_seconds=retry_max_seconds, sample_ratio=sample_ratio,
            keep_slower_than_ms=keep_slower_than_ms,
        )
        self.tracking_uri = s.tracking_uri
        self.experiment_name = s.experiment_name
        self.run_mode = s.run_mode
        self.link_traces = s.link_traces
        self.grace_seconds = s.grace_seconds
        self.trace_timeout_seconds = s.trace_timeout_seconds
        self.parent_wait_seconds = s.parent_wait_seconds
        self.max_buffered_traces = s.max_buffered_traces
        self.max_spans_per_trace = s.max_spans_per_trace
        self.shutdown_timeout_seconds = s.shutdown_timeout_seconds
        self.prices = resolve_price_table(prices)
        self.sample_ratio = s.sample_ratio
        self.keep_slower_than_ms = s.keep_slower_than_ms
        self.remote_parent_is_root = bool(remote_parent_is_root)

        self.writer = None
        if write is None:
            self.writer = MlflowWriter(s.tracking_uri, s.experiment_name, s.link_traces,
                                       register_prompts=register_prompts)
            write = self.writer.write
        spool = Spool(
            s.spool_dir,
            tracking_uri=s.tracking_uri,
            max_bytes=s.spool_max_bytes,
            experiment_name=s.experiment_name,
            link_traces=s.link_traces,
            loads=TraceRecord.from_json,
        )
        self.delivery = Delivery(
            write,
            spool=spool,
            workers=s.workers,
            retry_max_seconds=s.retry_max_seconds,
            shutdown_timeout_seconds=s.shutdown_timeout_seconds,
        )
        buffer = TraceBuffer(
            grace_seconds=s.grace_seconds,
            parent_wait_seconds=s.parent_wait_seconds,
            trace_timeout_seconds=s.trace_timeout_seconds,
            max_buffered_traces=s.max_buffered_traces,
            max_spans_per_trace=s.max_spans_per_trace,
            remote_parent_is_root=self.remote_parent_is_root,
        )
        self._assembler = Assembler(
            buffer, self.delivery.submit, run_mode=s.run_mode, encode=s.link_traces,
            prices=self.prices,
            sample_ratio=s.sample_ratio, on_discard=on_discard,
        )
        if s.sample_ratio < 1.0:
            self._assembler.on_complete.append(self._sampled_in)
        self._buffer = buffer
        self._shutdown = False
        self._assembler.start()
        _providers.register(self)
        if hasattr(os, "register_at_fork"):
            reinit = weakref.WeakMethod(self._restart_in_child)

            def _after_in_child() -> None:
                if (restart := reinit()) is not None:
                    restart()

            os.register_at_fork(after_in_child=_after_in_child)

    @property
    def stats(self) -> dict[str, int]:
        """Counters: spans, traces, partial, late_spans, dropped_spans, overflow, early,
        skipped, failed, sampled_out."""
        return self._assembler.stats

    def _sampled_in(self, item: Ready) -> bool:
        """The tail-sampling hook (``on_complete``): keep the trace or count it sampled out."""
        keep = keep_trace(item.spans, self.sample_ratio, self.keep_slower_than_ms)
        if not keep:
            with self._assembler.lock:
                self._assembler.stats["sampled_out"] += 1
        return keep

    def _restart_in_child(self) -> None:
        """After ``os.fork()``, in the child: new locks and assembler thread, empty buffers.

        Only the forking thread survives a fork, so the parent's locks may be held for good and
        its assembler is gone. The buffered traces are the parent's: the parent writes them, so
        the child drops its copies (writing them too would duplicate runs) and remembers their
        ids as written, so their late spans are not written as a second, partial run.
        ``Delivery`` restarts itself through its own hook (registered before this one).
        """
        try:
            self._assembler.restart_in_child()
        except Exception as exc:  # noqa: BLE001 - never raise into the forking app
            _faults.report("exporter.fork", exc)

    # --- SpanExporter ----------------------------------------------------------------------
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Buffer the spans by trace; never blocks on I/O, never raises.

        When the cap is reached, this thread converts and submits traces itself before it
        buffers more (back-pressure, see the module doc).
        """
        try:
            if self._shutdown:
                return SpanExportResult.FAILURE
            asm = self._assembler
            now = time.monotonic()
            late = 0
            late_id = 0
            index = 0
            while index < len(spans):
                with asm.lock:
                    added = self._buffer.add(spans, index, now)
                    if added.relief:
                        asm.hold()
                        if added.relief_kind is Relief.EARLY:
                            asm.stats["early"] += len(added.relief)
                        else:
                            asm.stats["overflow"] += 1
                    if added.wake:
                        asm.wake.notify()
                index = added.index
                late += added.late
                late_id = added.late_id or late_id
                if added.relief:
                    name, message = _RELIEF_FAULTS[added.relief_kind or Relief.OVERFLOW]
                    _faults.report(name, message=message.format(cap=self.max_buffered_traces))
                    asm.assemble(added.relief)  # convert them (outside the lock), then go on
            with asm.lock:
                asm.stats["spans"] += len(spans) - late
                asm.stats["late_spans"] += late
            if late:
                _faults.report(
                    "exporter.late_spans",
                    message=f"{late} span(s) arrived after their trace was written (e.g. trace "
                    f"{late_id:032x}); not written",
                )
            return SpanExportResult.SUCCESS
        except Exception as exc:  # noqa: BLE001 - export() must never raise into the SDK
            _faults.report("exporter.export", exc)
            return SpanExportResult.FAILURE

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Force-flush the known providers feeding this exporter (see the module doc), write
        every trace whose root has ended (no grace) and wait for delivery."""
        deadline = time.monotonic() + max(timeout_millis, 0) / 1000.0
        ok = _providers.flush_providers(_providers.known_providers(self), deadline)
        return self.drain(deadline) and ok

    def drain(self, deadline: float) -> bool:
        """Write every complete trace now (no grace) and wait for delivery until ``deadline``
        (monotonic); never raises."""
        try:
            self._assembler.take_and_assemble(None, include_open=False)
            if not self._assembler.wait_assembled(deadline):
                return False
            return self.delivery.flush(max(0.0, deadline - time.monotonic()))
        except Exception as exc:  # noqa: BLE001
            _faults.report("exporter.force_flush", exc)
            return False

    def shutdown(self, timeout_millis: float | None = None) -> None:
        """Write all buffered traces (open ones as partial) and drain delivery, within
        min(``timeout_millis``, ``shutdown_timeout_seconds``); idempotent."""
        with self._assembler.lock:
            if self._shutdown:
                return
            self._shutdown = True
        try:
            timeout = self.shutdown_timeout_seconds
            if timeout_millis is not None:
                timeout = min(timeout, max(float(timeout_millis), 0.0) / 1000)
            deadline = time.monotonic() + max(timeout, 0.0)
            self._assembler.stop(min(5.0, deadline - time.monotonic()))
            self._assembler.take_and_assemble(None, include_open=True)
            self._assembler.wait_assembled(deadline)
            self.delivery.shutdown(max(0.0, deadline - time.monotonic()))
        except Exception as exc:  # noqa: BLE001
            _faults.report("exporter.shutdown", exc)
        finally:
            _providers.unregister(self)

    def buffered_traces(self) -> int:
        with self._assembler.lock:
            return len(self._buffer)
