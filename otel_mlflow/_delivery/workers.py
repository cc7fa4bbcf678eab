"""Delivery of finished trace records to MLflow: queue, workers, retries, circuit, spool, replay.

``Delivery(write, spool=...)`` takes records from the exporter (``submit`` never blocks: a
bounded in-memory queue, overflow goes to the spool) and writes them on its own worker threads.

What happens to a record, in priority order:

1. Delivery shut down, or the circuit is open (MLflow known to be down): straight to the spool,
   no network attempt (no per-record retry storms during an outage).
2. A worker calls ``write(record)``. Success: done.
3. The failure is classified (:func:`classify_error`):

   - TRANSIENT (connection refused/reset, timeouts, HTTP 5xx/429/408): retried with exponential
     backoff and full jitter while the record's budget ``retry_max_seconds`` lasts. After
     ``open_after_failures`` consecutive transient failures (all workers together) the circuit
     opens; the record, and every record after it, is spooled.
   - AUTH (HTTP 401/403): spooled, ERROR log, circuit opens (the probe keeps checking).
   - REJECTED (other 4xx, e.g. invalid parameter): spooled into ``rejected/`` with an ERROR log.
   - ERROR (anything else: a bug, an unexpected exception): spooled, counted in ``fault_counts``,
     and retried by later replay passes with backoff (``error_backoff_seconds``, doubling); after
     ``error_attempts`` failed tries in this process it moves to ``rejected/`` too, so a record
     that trips a bug every time is neither retried in a loop nor blocks the others.

Entries in ``rejected/`` are never retried automatically; ``otel-mlflow replay
--include-rejected`` puts them back in line (see ``otel_mlflow._delivery.replay.replay``).

A write that hangs for ``stall_seconds`` (MLflow's own client retries a refused connection for
minutes before it raises) also opens the circuit, so records wait on disk, not in memory; the
first write that succeeds closes it again.

While the circuit is open, one supervisor thread probes MLflow (``probe()``, a cheap request; by
default it replays the oldest spooled record) with backoff up to ``probe_max_seconds``. When the
probe succeeds the circuit closes and the supervisor replays the whole spool, oldest first. A new
``Delivery`` on a directory that already holds entries (a restart after ``kill -9``) replays them
at start.

The writer is idempotent (it looks the trace up by ``otel.trace_id``); when ``write`` accepts an
``attempt`` keyword it receives 0 on the first try and >= 1 on retries and replays, so it can
skip the lookup on first writes.

Every worker and the supervisor run with OpenTelemetry instrumentation suppressed (the context
key is attached once at thread start), so an app instrumenting ``requests``/``urllib3`` gets no
spans about otel_mlflow's own MLflow calls.

``flush(timeout)`` waits for the submitted records and then for ONE replay pass of the spool
(a probe first when the circuit is open); it never loops on entries that keep failing.

``shutdown(timeout)`` drains within the bound; records still queued or stuck in a hanging
request are spooled, and ONE log line says how many traces wait in the spool and where. A record
stuck in a request is taken over by shutdown: its worker no longer spools it (one spool entry
per trace), and if the request succeeds after all, the worker deletes that entry again.

Bounds: nothing here waits on MLflow longer than the caller's timeout. MLflow's own HTTP client
(``MLFLOW_HTTP_REQUEST_MAX_RETRIES``, default 7 with backoff factor 2: minutes;
``MLFLOW_HTTP_REQUEST_TIMEOUT``, default 120 s per request) only decides how long a worker's
request may hang; stall detection opens the circuit after ``stall_seconds``. These variables are
read, never set, by this module.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from otel_mlflow._common import faults as _faults
from otel_mlflow._common.settings import (
    DEFAULT_RETRY_MAX_SECONDS,
    DEFAULT_SHUTDOWN_TIMEOUT_SECONDS,
    DEFAULT_WORKERS,
)
from otel_mlflow._delivery.backoff import ErrorBackoff, retry_delay
from otel_mlflow._delivery.circuit import Circuit
from otel_mlflow._delivery.errors import ErrorKind, classify_error
from otel_mlflow._delivery.keeper import Keeper
from otel_mlflow._delivery.spool import Spool
from otel_mlflow._delivery.supervisor import Supervisor
from otel_mlflow._delivery.threads import register_fork_hook, suppress_instrumentation
from otel_mlflow._delivery.write_call import accepts_attempt

__all__ = ["Delivery"]

_logger = logging.getLogger(__name__)

DEFAULT_QUEUE_MAX = 1_000  # beyond this, records wait on disk (spool), not in memory
DEFAULT_PROBE_MAX_SECONDS = 10.0
DEFAULT_OPEN_AFTER_FAILURES = 3
DEFAULT_STALL_SECONDS = 15.0
DEFAULT_ERROR_ATTEMPTS = 3
DEFAULT_ERROR_BACKOFF_SECONDS = 2.0


class Delivery:
    """Writes records to MLflow off the caller's thread; never raises; see the module doc.

    It holds a ``Supervisor`` (probe / replay thread) and a ``Circuit``; the workers are its own.
    """

    def __init__(
        self,
        write: Callable[..., None],
        *,
        spool: Spool | None = None,
        workers: int = DEFAULT_WORKERS,
        retry_max_seconds: float = DEFAULT_RETRY_MAX_SECONDS,
        queue_max: int = DEFAULT_QUEUE_MAX,
        shutdown_timeout_seconds: float = DEFAULT_SHUTDOWN_TIMEOUT_SECONDS,
        probe: Callable[[], Any] | None = None,
        probe_max_seconds: float = DEFAULT_PROBE_MAX_SECONDS,
        stall_seconds: float = DEFAULT_STALL_SECONDS,
        open_after_failures: int = DEFAULT_OPEN_AFTER_FAILURES,
        error_attempts: int = DEFAULT_ERROR_ATTEMPTS,
        error_backoff_seconds: float = DEFAULT_ERROR_BACKOFF_SECONDS,
        name: str = "otel_mlflow-delivery",
    ) -> None:
        self._write = write
        self._pass_attempt = accepts_attempt(write)
        self._spool = spool
        self._retry_max = max(float(retry_max_seconds), 0.0)
        self._shutdown_timeout = max(float(shutdown_timeout_seconds), 0.0)
        self._error_attempts = max(int(error_attempts), 1)
        self._errors = ErrorBackoff(error_backoff_seconds)
        # worker thread -> path of the spool copy shutdown made of its in-flight record
        self._taken_over: dict[int, Path | None] = {}
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(int(queue_max), 1))
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._closed = False
        self._inflight: dict[int, tuple[Any, float]] = {}  # thread -> (record, started)
        self._pending = 0  # submitted, not yet written or spooled
        self.stats: dict[str, int] = {
            "submitted": 0, "written": 0, "retries": 0, "spooled": 0, "replayed": 0,
            "rejected": 0, "dropped": 0, "errors": 0,
        }
        self._circuit = Circuit(
            open_after_failures,
            spool_label=str(spool.directory) if spool is not None else "(none)",
            on_open=self._circuit_opened,
            on_close=self._circuit_closed,
        )
        self._keeper = Keeper(spool, self._circuit, self._errors, self._count)
        self._supervisor = Supervisor(
            spool=spool,
            circuit=self._circuit,
            errors=self._errors,
            write=self._call_write,
            note_error=self._keeper.note_error,
            count=self._count,
            oldest_inflight=self._oldest_inflight,
            probe=probe,
            probe_max_seconds=probe_max_seconds,
            stall_seconds=stall_seconds,
            error_attempts=self._error_attempts,
            replay_at_start=spool is not None and spool.pending() > 0,
            name=name,
        )
        self._name = name
        self._n_workers = max(int(workers), 1)
        self._start_workers()
        self._supervisor.start()
        register_fork_hook(self.restart_in_child, "delivery.fork")

    def _start_workers(self) -> None:
        self._threads: list[threading.Thread] = [
            threading.Thread(target=self._worker_main, name=f"{self._name}-{index}", daemon=True)
            for index in range(self._n_workers)
        ]
        for thread in self._threads:
            thread.start()

    def restart_in_child(self) -> None:
        """After ``os.fork()``, in the child (only the forking thread survives there): new queue,
        locks, events and threads.

        Records queued or in flight in the parent are the parent's to write (its copies live
        on), so the child starts empty: writing them here too would duplicate runs. Spool
        entries the parent has claimed keep the parent's claim (``Spool.restart_in_child``).
        A shut-down ``Delivery`` stays shut down.
        """
        self._queue = queue.Queue(maxsize=self._queue.maxsize)
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._inflight = {}
        self._taken_over = {}
        self._pending = 0
        self._errors.restart_in_child()
        self._circuit.restart_in_child()
        self.stats = dict.fromkeys(self.stats, 0)
        self._supervisor.restart_in_child()
        if self._closed:
            self._stop.set()
            self._threads = []
            return
        self._start_workers()

    # --- public ------------------------------------------------------------------------------
    @property
    def circuit_open(self) -> bool:
        return self._circuit.is_open

    @property
    def spool(self) -> Spool | None:
        return self._spool

    def submit(self, record: Any) -> None:
        """Hand a record over; never blocks on MLflow and never raises.

        A full queue spools the record on the caller's thread (a file write); without a spool it
        is dropped with an ERROR log and the ``delivery.dropped`` fault counter.
        """
        try:
            with self._lock:
                self.stats["submitted"] += 1
                closed = self._closed
                direct = closed or (self._circuit.is_open and self._spool is not None)
                if not direct:
                    self._pending += 1
            if direct:
                # Shut down, or MLflow known down: the workers may all hang in a request, so
                # the record goes to disk now instead of waiting in memory.
                self._spool_record(record, "delivery shut down" if closed else None)
                return
            try:
                self._queue.put_nowait(record)
            except queue.Full:
                self._spool_record(record, "delivery queue full")
                self._done_one()
        except Exception as exc:  # noqa: BLE001
            _faults.report("delivery.submit", exc)

    def flush(self, timeout_seconds: float = 30.0) -> bool:
        """Wait until every submitted record is written or spooled, then for one replay pass of
        the spool (after one immediate probe when the circuit is open). True when nothing is
        left waiting (in memory or in the spool); entries still failing make it False at once
        instead of being replayed in a loop until the timeout."""
        deadline = time.monotonic() + max(timeout_seconds, 0.0)
        with self._idle:
            while self._pending > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(min(left, 0.1))
        return self._supervisor.settle_spool(deadline)

    def shutdown(self, timeout_seconds: float | None = None) -> None:
        """Drain for at most ``timeout_seconds`` and never longer than the constructor's
        ``shutdown_timeout_seconds`` (the SDK passes its own 30 s budget here; the user's bound
        wins); spool the rest; one log line. Idempotent."""
        timeout = self._shutdown_timeout
        if timeout_seconds is not None:
            timeout = min(timeout, max(timeout_seconds, 0.0))
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            self.flush(timeout)
        except Exception as exc:  # noqa: BLE001
            _faults.report("delivery.shutdown", exc)
        self._stop.set()
        self._supervisor.stop()
        leftovers = self._drain_queue_to_spool()
        with self._lock:
            stuck = list(self._inflight.items())
            self._inflight.clear()  # taken over: the workers no longer spool these
        for ident, (record, _) in stuck:
            # The hanging request may still succeed: its worker then deletes this copy (and if
            # it is replayed first, the writer's trace-id lookup makes that a no-op).
            path = self._spool_record(record, None)
            with self._lock:
                self._taken_over[ident] = path
            leftovers += 1
        # One short budget for all joins: threads stuck in a hanging request are daemons and
        # their records are already spooled, so waiting on each in turn would only stretch
        # the bound.
        joined_by = time.monotonic() + 0.5
        for thread in self._threads:
            thread.join(timeout=max(0.0, joined_by - time.monotonic()))
        self._supervisor.join(joined_by - time.monotonic())
        if self._spool is not None:
            self._spool.close()
            waiting = self._spool.pending()
            if waiting:
                _logger.warning(
                    "otel_mlflow: %d trace(s) not written to MLflow at shutdown are kept in the "
                    "spool %s; they are replayed on the next start or by `otel-mlflow replay`",
                    waiting, self._spool.directory,
                )
        elif leftovers:
            _logger.error(
                "otel_mlflow: %d trace(s) could not be written to MLflow at shutdown and there "
                "is no spool: they are lost", leftovers,
            )

    # --- workers -----------------------------------------------------------------------------
    def _worker_main(self) -> None:
        suppress_instrumentation()
        ident = threading.get_ident()
        while not self._stop.is_set():
            try:
                record = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            with self._lock:
                self._inflight[ident] = (record, time.monotonic())
            try:
                self._deliver(record)
            except Exception as exc:  # noqa: BLE001 - a worker never dies
                _faults.report("delivery.worker", exc)
                if self._own(record):
                    self._spool_record(record, "unexpected delivery error")
            finally:
                with self._lock:
                    if self._inflight.get(ident, (None,))[0] is record:
                        del self._inflight[ident]
                self._done_one()

    def _own(self, record: Any) -> bool:
        """Called by the worker holding ``record`` before it spools it: True when it still owns
        it (and now gives it up), False when shutdown already spooled it."""
        ident = threading.get_ident()
        with self._lock:
            entry = self._inflight.get(ident)
            if entry is not None and entry[0] is record:
                del self._inflight[ident]
                return True
            return False

    def _written_after_takeover(self) -> None:
        """A request shutdown had given up on succeeded: drop the now needless spool copy."""
        with self._lock:
            path = self._taken_over.pop(threading.get_ident(), None)
        if path is not None and self._spool is not None:
            self._spool.discard(path)

    def _deliver(self, record: Any) -> None:
        if self._circuit.is_open or self._stop.is_set():
            if self._own(record):
                self._spool_record(record, None)
            return
        started = time.monotonic()
        attempt = 0
        while True:
            try:
                self._call_write(record, attempt)
            except Exception as exc:  # noqa: BLE001 - classified below
                kind = classify_error(exc)
                if kind is ErrorKind.TRANSIENT:
                    self._circuit.failed(exc)
                    delay = retry_delay(attempt)
                    out_of_budget = time.monotonic() - started + delay > self._retry_max
                    if self._circuit.is_open or out_of_budget or self._stop.is_set():
                        if out_of_budget:
                            self._circuit.open(exc)
                        if self._own(record):
                            self._spool_record(record, None)
                        return
                    with self._lock:
                        self.stats["retries"] += 1
                    attempt += 1
                    if self._stop.wait(delay):
                        if self._own(record):
                            self._spool_record(record, None)
                        return
                    continue
                self._handle_permanent(record, kind, exc)
                return
            with self._lock:
                self.stats["written"] += 1
            if not self._own(record):
                self._written_after_takeover()
            self._circuit.succeeded()  # a write went through: an open circuit closes
            return

    def _call_write(self, record: Any, attempt: int) -> None:
        if self._pass_attempt:
            self._write(record, attempt=attempt)
        else:
            self._write(record)

    def _handle_permanent(self, record: Any, kind: ErrorKind, exc: BaseException) -> None:
        if self._own(record):  # else shutdown spooled it meanwhile; a replay meets the same
            self._keeper.settle(record, kind, exc)

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.stats[key] += n

    def _oldest_inflight(self) -> float | None:
        """When the longest-running write started (monotonic), None when none runs."""
        with self._lock:
            if not self._inflight:
                return None
            return min(started for _, started in self._inflight.values())

    # --- the circuit's reactions ---------------------------------------------------------------
    def _circuit_opened(self) -> None:
        if self._spool is not None:
            self._drain_queue_to_spool()
        self._supervisor.wake()

    def _circuit_closed(self) -> None:
        self._supervisor.want_replay()

    def _drain_queue_to_spool(self) -> int:
        """Spool every queued record (the circuit opened, or shutdown); how many there were."""
        count = 0
        while True:
            try:
                record = self._queue.get_nowait()
            except queue.Empty:
                return count
            self._spool_record(record, None)
            self._done_one()
            count += 1

    def _spool_record(self, record: Any, reason: str | None) -> Path | None:
        return self._keeper.spool(record, reason)

    def _done_one(self) -> None:
        with self._idle:
            self._pending = max(self._pending - 1, 0)
            if self._pending == 0:
                self._idle.notify_all()
