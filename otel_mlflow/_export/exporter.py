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

Traces whose LangChain root started under an active MLflow run (``otel_mlflow.mlflow.run_id``)
are written into that run; the assembler batches the traces of one run (up to
``_MAX_BATCH_TRACES``) into one write.

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
- ``max_buffered_traces``: ``OTEL_MLFLOW_MAX_BUFFERED_TRACES``, default 2,000 (back-pressure).
- ``max_spans_per_trace``: ``OTEL_MLFLOW_MAX_SPANS_PER_TRACE``, default 10,000.
- ``workers``: ``OTEL_MLFLOW_WORKERS``, default 4 writer threads.
- ``register_prompts``: ``OTEL_MLFLOW_REGISTER_PROMPTS``, default off (prompt templates not in
  MLflow's Prompt Registry are registered; ``otel_mlflow._sink.prompts``).
- ``spool_dir``, ``spool_max_bytes``, ``shutdown_timeout_seconds``,
  ``retry_max_seconds``: ``OTEL_MLFLOW_SPOOL_DIR`` etc., passed to ``Delivery`` / ``Spool``.

Flushing: the SDK never calls an exporter's ``force_flush``. ``BatchSpanProcessor.force_flush``
(opentelemetry-sdk 1.45, ``_shared_internal.BatchProcessor.force_flush``) only exports the
queued spans, and ``SimpleSpanProcessor.force_flush`` returns True without touching the exporter;
so ``provider.force_flush()`` leaves our buffers and delivery queue as they are. Module-level
``flush()`` first force-flushes the global SDK tracer provider and every provider
``otel_mlflow.configure()`` built or extended (``_configure.configured_providers()``), then drains
every live exporter of this process; ``force_flush()`` on one exporter does the same for the
providers among those that feed it. A provider built by hand that is not the global one is not
known here: force-flush it yourself first. ``shutdown()`` (called by ``provider.shutdown()``, also
at interpreter exit) drains within min(the caller's timeout -- the SDK passes what is left of its
30 s --, ``shutdown_timeout_seconds``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from otel_mlflow._common import settings as _config
from otel_mlflow._common.settings import (
    DEFAULT_RETRY_MAX_SECONDS,
    DEFAULT_SHUTDOWN_TIMEOUT_SECONDS,
    DEFAULT_WORKERS,
)

from otel_mlflow._common import faults as _faults
from otel_mlflow._record import (
    TraceRecord,
    build_record,
    is_langchain_root,
    is_trace_root,
    merge_batch,
)

_logger = logging.getLogger(__name__)

RUN_MODE_TRACE = "trace"
RUN_MODE_ACTIVE = "active"
_RUN_MODES = frozenset({RUN_MODE_TRACE, RUN_MODE_ACTIVE})

DEFAULT_GRACE_SECONDS = 1.0
DEFAULT_TRACE_TIMEOUT_SECONDS = 300.0
# ~14 KB per buffered 4-span trace of short prompts (benchmarks/soak.py); traces with long
# prompts hold more. 2,000 keeps a full buffer in the tens of MB while leaving room for 1,000+
# traces/s under the default 1 s grace.
DEFAULT_MAX_BUFFERED_TRACES = 2_000
DEFAULT_MAX_SPANS_PER_TRACE = 10_000
DEFAULT_PARENT_WAIT_SECONDS = 10.0
_MAX_BATCH_TRACES = 500
_ASSEMBLER_SHARE = 4  # the assembler takes at most cap // 4 traces per pass
_RELIEF_SHARE = 8  # an exporting thread over the cap converts up to cap // 8 complete traces
_MAX_TICK_SECONDS = 0.25
_MAX_DONE_IDS = 50_000

_live: weakref.WeakSet[MlflowSpanExporter] = weakref.WeakSet()
_live_lock = threading.Lock()


@dataclass
class _TraceBuffer:
    first_seen: float
    spans: list[ReadableSpan] = field(default_factory=list)
    due: float | None = None  # monotonic time the trace is complete (rules 1-2), None: open
    has_local_root: bool = False
    dropped: int = 0


@dataclass(frozen=True)
class _Ready:
    spans: tuple[ReadableSpan, ...]
    partial: bool
    dropped: int


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
    ) -> None:
        """Resolve every setting once; cheap (no network: MLflow is reached from the workers).

        ``write`` replaces ``MlflowWriter.write`` as the sink (another store, tests).
        """
        from otel_mlflow._delivery.workers import Delivery
        from otel_mlflow._sink.runs import MlflowWriter, resolve_experiment_name
        from otel_mlflow._delivery.spool import Spool

        self.tracking_uri = _config.resolve_tracking_uri(tracking_uri)
        self.experiment_name = resolve_experiment_name(experiment_name)
        mode = (run_mode or _config.env_str(_config.RUN_MODE) or RUN_MODE_TRACE).lower()
        if mode not in _RUN_MODES:
            _logger.warning("otel_mlflow: unknown run_mode %r; using %r", mode, RUN_MODE_TRACE)
            mode = RUN_MODE_TRACE
        self.run_mode = mode
        self.link_traces = (
            link_traces if link_traces is not None else _config.env_bool(_config.LINK_TRACES, True)
        )
        self.grace_seconds = max(0.0, _pick(grace_seconds, _config.env_float(
            _config.GRACE_SECONDS, DEFAULT_GRACE_SECONDS)))
        self.trace_timeout_seconds = max(0.0, _pick(trace_timeout_seconds, _config.env_float(
            _config.TRACE_TIMEOUT_SECONDS, DEFAULT_TRACE_TIMEOUT_SECONDS)))
        self.max_buffered_traces = max(1, int(_pick(max_buffered_traces, _config.env_int(
            _config.MAX_BUFFERED_TRACES, DEFAULT_MAX_BUFFERED_TRACES))))
        self.max_spans_per_trace = max(1, int(_pick(max_spans_per_trace, _config.env_int(
            _config.MAX_SPANS_PER_TRACE, DEFAULT_MAX_SPANS_PER_TRACE))))
        self.shutdown_timeout_seconds = max(0.0, _pick(shutdown_timeout_seconds, _config.env_float(
            _config.SHUTDOWN_TIMEOUT_SECONDS, DEFAULT_SHUTDOWN_TIMEOUT_SECONDS)))
        self.parent_wait_seconds = max(0.0, _pick(parent_wait_seconds, _config.env_float(
            _config.PARENT_WAIT_SECONDS, DEFAULT_PARENT_WAIT_SECONDS)))
        n_workers = int(_pick(workers, _config.env_int(_config.WORKERS, DEFAULT_WORKERS)))
        retry_max = _pick(retry_max_seconds, _config.env_float(
            _config.RETRY_MAX_SECONDS, DEFAULT_RETRY_MAX_SECONDS))

        self.writer = None
        if write is None:
            self.writer = MlflowWriter(self.tracking_uri, self.experiment_name, self.link_traces,
                                       register_prompts=register_prompts)
            write = self.writer.write
        spool = Spool(
            spool_dir or _config.env_str(_config.SPOOL_DIR),
            tracking_uri=self.tracking_uri,
            max_bytes=spool_max_bytes,
            experiment_name=self.experiment_name,
            link_traces=self.link_traces,
        )
        self.delivery = Delivery(
            write,
            spool=spool,
            workers=n_workers,
            retry_max_seconds=retry_max,
            shutdown_timeout_seconds=self.shutdown_timeout_seconds,
        )
        self.stats: dict[str, int] = {
            "spans": 0, "traces": 0, "partial": 0, "late_spans": 0, "dropped_spans": 0,
            "overflow": 0, "early": 0, "skipped": 0, "failed": 0,
        }
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._buffers: OrderedDict[int, _TraceBuffer] = OrderedDict()
        self._done: OrderedDict[int, None] = OrderedDict()
        self._backlog = 0  # traces taken from _buffers, not yet submitted (under _lock)
        self._assembling = 0
        self._idle = threading.Condition(threading.Lock())
        self._shutdown = False
        self._start_assembler()
        with _live_lock:
            _live.add(self)
        if hasattr(os, "register_at_fork"):
            reinit = weakref.WeakMethod(self._restart_in_child)

            def _after_in_child() -> None:
                if (restart := reinit()) is not None:
                    restart()

            os.register_at_fork(after_in_child=_after_in_child)

    def _start_assembler(self) -> None:
        self._thread = threading.Thread(
            target=self._assembler_main, name="otel_mlflow-assembler", daemon=True
        )
        self._thread.start()

    def _restart_in_child(self) -> None:
        """After ``os.fork()``, in the child: new locks and assembler thread, empty buffers.

        Only the forking thread survives a fork, so the parent's locks may be held for good and
        its assembler is gone. The buffered traces are the parent's: the parent writes them, so
        the child drops its copies (writing them too would duplicate runs) and remembers their
        ids as written, so their late spans are not written as a second, partial run.
        ``Delivery`` restarts itself through its own hook (registered before this one).
        """
        try:
            for trace_id in self._buffers:
                self._mark_done(trace_id)
            self._buffers = OrderedDict()
            self._backlog = 0
            self._assembling = 0
            self._lock = threading.Lock()
            self._wake = threading.Condition(self._lock)
            self._idle = threading.Condition(threading.Lock())
            self.stats = dict.fromkeys(self.stats, 0)
            if not self._shutdown:
                self._start_assembler()
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
            now = time.monotonic()
            late = 0
            late_id = 0
            index = 0
            while index < len(spans):
                relief: list[_Ready] = []
                wake = False
                with self._lock:
                    while index < len(spans):
                        span = spans[index]
                        trace_id = span.context.trace_id
                        if trace_id in self._done:
                            late += 1
                            late_id = trace_id
                            index += 1
                            continue
                        buf = self._buffers.get(trace_id)
                        if buf is None:
                            if len(self._buffers) + self._backlog >= self.max_buffered_traces:
                                relief = self._relieve()
                                if relief:
                                    self._hold(relief)
                                    break  # convert them (outside the lock), then go on
                            buf = self._buffers[trace_id] = _TraceBuffer(first_seen=now)
                        # A root cut by the span cap still completes its trace.
                        if is_trace_root(span):
                            buf.has_local_root = True
                            buf.due = now + self.grace_seconds
                            wake = wake or self.grace_seconds == 0
                        elif is_langchain_root(span) and not buf.has_local_root:
                            buf.due = now + max(self.grace_seconds, self.parent_wait_seconds)
                        index += 1
                        if len(buf.spans) >= self.max_spans_per_trace:
                            buf.dropped += 1
                            continue
                        buf.spans.append(span)
                    if wake:
                        self._wake.notify()
                if relief:
                    self._assemble(relief)
            with self._lock:
                self.stats["spans"] += len(spans) - late
                self.stats["late_spans"] += late
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
        ok = _flush_providers(_known_providers(self), deadline)
        return self._drain(deadline) and ok

    def _drain(self, deadline: float) -> bool:
        try:
            self._assemble(self._take(now=None, include_open=False))
            if not self._wait_assembled(deadline):
                return False
            return self.delivery.flush(max(0.0, deadline - time.monotonic()))
        except Exception as exc:  # noqa: BLE001
            _faults.report("exporter.force_flush", exc)
            return False

    def shutdown(self, timeout_millis: float | None = None) -> None:
        """Write all buffered traces (open ones as partial) and drain delivery, within
        min(``timeout_millis``, ``shutdown_timeout_seconds``); idempotent."""
        with self._lock:
            if self._shutdown:
                return
            self._shutdown = True
            self._wake.notify()
        try:
            timeout = self.shutdown_timeout_seconds
            if timeout_millis is not None:
                timeout = min(timeout, max(float(timeout_millis), 0.0) / 1000)
            deadline = time.monotonic() + max(timeout, 0.0)
            self._thread.join(max(0.0, min(5.0, deadline - time.monotonic())))
            self._assemble(self._take(now=None, include_open=True))
            self._wait_assembled(deadline)
            self.delivery.shutdown(max(0.0, deadline - time.monotonic()))
        except Exception as exc:  # noqa: BLE001
            _faults.report("exporter.shutdown", exc)
        finally:
            with _live_lock:
                _live.discard(self)

    # --- buffering -------------------------------------------------------------------------
    def buffered_traces(self) -> int:
        with self._lock:
            return len(self._buffers)

    def _mark_done(self, trace_id: int) -> None:
        self._done[trace_id] = None
        while len(self._done) > _MAX_DONE_IDS:
            self._done.popitem(last=False)

    def _relieve(self) -> list[_Ready]:
        """Under the lock, the buffer full: take traces out for the exporting thread to write.

        The oldest complete traces first (up to cap // 8, so the scan is amortised), without
        their grace; only when none is complete, the oldest open trace, as partial.
        """
        if not self._buffers:
            return []  # everything held is being converted by other threads already
        chunk = max(1, self.max_buffered_traces // _RELIEF_SHARE)
        complete: list[int] = []
        for trace_id, buf in self._buffers.items():
            if buf.due is not None:
                complete.append(trace_id)
                if len(complete) >= chunk:
                    break
        if complete:
            taken: list[_Ready] = []
            for trace_id in complete:
                buf = self._buffers.pop(trace_id)
                self._mark_done(trace_id)
                taken.append(_Ready(tuple(buf.spans), partial=False, dropped=buf.dropped))
            self.stats["early"] += len(taken)
            _faults.report(
                "exporter.backpressure",
                message=f"{self.max_buffered_traces} traces held (max_buffered_traces): the "
                "exporter is behind; complete traces written without their grace",
            )
            return taken
        trace_id, buf = self._buffers.popitem(last=False)
        self._mark_done(trace_id)
        self.stats["overflow"] += 1
        _faults.report(
            "exporter.overflow",
            message=f"{self.max_buffered_traces} traces held (max_buffered_traces); the oldest "
            "open trace is written early as partial",
        )
        return [_Ready(tuple(buf.spans), partial=True, dropped=buf.dropped)]

    def _hold(self, ready: list[_Ready]) -> None:
        """Under the lock: count taken traces until ``_assemble`` has submitted them."""
        self._backlog += len(ready)
        with self._idle:
            self._assembling += 1

    def _take(
        self, now: float | None, include_open: bool, limit: int | None = None
    ) -> list[_Ready]:
        """Remove and return the traces due for writing (at most ``limit``, oldest first).

        ``now=None`` ignores the grace (flush/shutdown); ``include_open`` also takes traces whose
        root has not ended (as partial).
        """
        ready: list[_Ready] = []
        with self._lock:
            for trace_id, buf in list(self._buffers.items()):
                if limit is not None and len(ready) >= limit:
                    break
                if buf.due is not None and (now is None or now >= buf.due):
                    partial = False
                elif include_open or (
                    now is not None and now - buf.first_seen >= self.trace_timeout_seconds
                ):
                    partial = True
                else:
                    continue
                del self._buffers[trace_id]
                self._mark_done(trace_id)
                ready.append(_Ready(tuple(buf.spans), partial, buf.dropped))
            if ready:
                self._hold(ready)
        return ready

    def _next_due(self) -> float:
        """Seconds until the earliest buffered trace is due (capped), under the lock."""
        now = time.monotonic()
        wait = _MAX_TICK_SECONDS
        for buf in self._buffers.values():
            if buf.due is not None:
                wait = min(wait, buf.due - now)
        return max(wait, 0.0)

    # --- assembling ------------------------------------------------------------------------
    def _assembler_main(self) -> None:
        while True:
            try:
                with self._lock:
                    if self._shutdown:
                        return
                    self._wake.wait(self._next_due())
                    if self._shutdown:
                        return
                limit = max(1, self.max_buffered_traces // _ASSEMBLER_SHARE)
                self._assemble(self._take(now=time.monotonic(), include_open=False, limit=limit))
            except Exception as exc:  # noqa: BLE001 - the assembler must survive any bug
                _faults.report("exporter.assembler", exc)
                time.sleep(_MAX_TICK_SECONDS)

    def _assemble(self, ready: list[_Ready]) -> None:
        """Convert taken traces to records and submit them; always releases the ``_take`` count."""
        if not ready:
            return
        # Several threads assemble (the assembler, flush, exporting threads under back-pressure):
        # counts are gathered here and added under the lock.
        counts = {"failed": 0, "traces": 0, "partial": 0, "dropped_spans": 0, "skipped": 0}
        try:
            records: list[TraceRecord] = []
            for item in ready:
                if not item.spans:
                    continue
                try:
                    record = build_record(
                        item.spans,
                        partial=item.partial,
                        dropped_spans=item.dropped,
                        encode=self.link_traces,
                    )
                except Exception as exc:  # noqa: BLE001
                    counts["failed"] += 1
                    _faults.report("exporter.build_record", exc)
                    continue
                counts["traces"] += 1
                counts["partial"] += int(item.partial)
                counts["dropped_spans"] += item.dropped
                if record.target_run_id is None and self.run_mode == RUN_MODE_ACTIVE:
                    counts["skipped"] += 1
                    continue
                records.append(record)
            with self._lock:
                for key, value in counts.items():
                    self.stats[key] += value
            self._submit(records)
        finally:
            with self._lock:
                self._backlog -= len(ready)
            with self._idle:
                self._assembling -= 1
                self._idle.notify_all()

    def _submit(self, records: list[TraceRecord]) -> None:
        by_run: dict[str, list[TraceRecord]] = {}
        for record in records:
            if record.target_run_id:
                by_run.setdefault(record.target_run_id, []).append(record)
            else:
                self.delivery.submit(record)
        for run_records in by_run.values():
            for start in range(0, len(run_records), _MAX_BATCH_TRACES):
                self.delivery.submit(merge_batch(run_records[start : start + _MAX_BATCH_TRACES]))

    def _wait_assembled(self, deadline: float) -> bool:
        with self._idle:
            while self._assembling > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(min(left, 0.1))
        return True


def _reinit_module_in_child() -> None:
    global _live_lock
    _live_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reinit_module_in_child)


def _pick(value: Any, fallback: Any) -> Any:
    return fallback if value is None else value


def live_exporters() -> list[MlflowSpanExporter]:
    with _live_lock:
        return list(_live)


def _known_providers(exporter: MlflowSpanExporter | None = None) -> list[Any]:
    """The global SDK provider and the providers ``configure()`` built or extended, each once;
    with ``exporter``, only those whose span processors feed it."""
    providers: list[Any] = []
    try:
        from opentelemetry import trace

        current: Any = trace.get_tracer_provider()
        if hasattr(current, "force_flush") and hasattr(current, "add_span_processor"):
            providers.append(current)
    except Exception as exc:  # noqa: BLE001
        _faults.report("exporter.flush_provider", exc)
    try:
        # Imported here: _configure imports this module.
        import otel_mlflow._setup as _configure

        for provider in _configure.configured_providers():
            if not any(provider is known for known in providers):
                providers.append(provider)
        if exporter is not None:
            providers = [
                p for p in providers
                if any(e is exporter for e in _configure._exporters(p))
            ]
    except Exception as exc:  # noqa: BLE001
        _faults.report("exporter.flush_provider", exc)
    return providers


def _flush_providers(providers: Sequence[Any], deadline: float) -> bool:
    """Force-flush each provider's span processors (their queued spans reach the exporters)."""
    ok = True
    for provider in providers:
        try:
            left = max(0.0, deadline - time.monotonic())
            ok = bool(provider.force_flush(int(left * 1000))) and ok
        except Exception as exc:  # noqa: BLE001
            _faults.report("exporter.flush_provider", exc)
            ok = False
    return ok


def flush(timeout_seconds: float = 30.0) -> bool:
    """Drain everything to MLflow: the span processors of the global SDK provider and of every
    provider ``configure()`` built or extended, then every live exporter.

    True when every exporter wrote (or spooled nothing) within the time; never raises.
    """
    deadline = time.monotonic() + max(timeout_seconds, 0.0)
    ok = _flush_providers(_known_providers(), deadline)
    for exporter in live_exporters():
        ok = exporter._drain(deadline) and ok
    return ok
