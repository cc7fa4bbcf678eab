"""``Delivery``'s supervisor thread: probe MLflow while the circuit is open, replay the spool after.

One thread per ``Delivery`` (see ``otel_mlflow._delivery.workers`` for the whole policy). While the circuit
is open it probes with backoff (``probe()``, or by default replaying the oldest spooled record);
when a probe succeeds it closes the circuit and replays the spool, oldest first, one pass at a
time; it also replays entries whose unexpected-error backoff is due, and opens the circuit when a
worker's write has hung for ``stall_seconds``. A mixin of ``Delivery``: it works on the state
``Delivery.__init__`` sets up (declared below).
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from otel_mlflow._common import faults as _faults
from otel_mlflow._delivery.policy import ErrorBackoff, ErrorKind
from otel_mlflow._delivery.policy import short as _short
from otel_mlflow._delivery.policy import suppress_instrumentation
from otel_mlflow._delivery.replay_entry import EntryResult, Outcome, replay_entry
from otel_mlflow._delivery.spool import Spool, SpoolEntry

_logger = logging.getLogger("otel_mlflow._delivery.workers")

PROBE_FIRST_SECONDS = 0.5


class Supervisor:
    """Probe / replay / stall detection for ``Delivery`` (see the module docstring)."""

    # State owned by ``Delivery.__init__``.
    _spool: Spool | None
    _lock: threading.Lock
    _idle: threading.Condition
    _wake: threading.Event
    _stop: threading.Event
    _queue: queue.Queue[Any]
    _errors: ErrorBackoff
    _error_attempts: int
    _probe: Callable[[], Any] | None
    _probe_max: float
    _stall: float
    _inflight: dict[Any, tuple[Any, float]]
    _circuit_open: bool
    _replay_wanted: bool
    _replaying: bool
    _passes_done: int
    _probes: int
    stats: dict[str, int]

    if TYPE_CHECKING:  # provided by ``Delivery``
        def _note_error(self, name: str) -> int: ...
        def _open_circuit(self, exc: BaseException, *, log: bool = True) -> None: ...
        def _close_circuit(self) -> None: ...
        def _spool_record(self, record: Any, reason: str | None) -> Any: ...
        def _done_one(self) -> None: ...
        def _call_write(self, record: Any, attempt: int) -> None: ...

    def _replay_entry(self, entry: SpoolEntry) -> EntryResult:
        """Settle one claimed entry by the one replay rule (``replay_entry``), then count it."""
        assert self._spool is not None
        result = replay_entry(
            self._spool, entry, self._write_first_attempt,
            note_error=self._note_replay_error, error_attempts=self._error_attempts,
        )
        if result.outcome is Outcome.WRITTEN:
            self._errors.forget(entry.name)
            with self._lock:
                self.stats["replayed"] += 1
        elif result.outcome is Outcome.REJECTED and result.kind is ErrorKind.ERROR:
            # Its unexpected-error attempts are used up (the first one was the worker's write).
            self._errors.forget(entry.name)
            with self._lock:
                self.stats["rejected"] += 1
        return result

    def _write_first_attempt(self, record: Any) -> None:
        self._call_write(record, 1)

    def _note_replay_error(self, name: str, exc: BaseException) -> int:
        _faults.report("delivery.replay", exc)
        return self._note_error(name)

    def _supervisor_main(self) -> None:
        suppress_instrumentation()
        interval = PROBE_FIRST_SECONDS
        while not self._stop.is_set():
            if self._circuit_open:
                self._wake.wait(random.uniform(interval / 2, interval))
                self._wake.clear()
                if self._stop.is_set():
                    return
                ok = self._probe_once()
                with self._lock:
                    self._probes += 1
                    self._idle.notify_all()
                if ok:
                    interval = PROBE_FIRST_SECONDS
                    self._close_circuit()
                else:
                    interval = min(interval * 2, self._probe_max)
                continue
            if self._replay_wanted and self._spool is not None:
                self._replay_pass()
                continue
            if self._spool is not None and self._errors.any_due(self._spool.has_entry):
                with self._lock:
                    self._replay_wanted = True
                continue
            self._check_stall()
            self._wake.wait(0.5)
            self._wake.clear()

    def _check_stall(self) -> None:
        """Open the circuit when a write has hung for ``stall_seconds``.

        MLflow's own HTTP client retries a refused connection for minutes before it raises, so an
        outage may show up as hanging writes, not as errors. Opening the circuit sends new
        records (and the queued ones) to the spool, durable, instead of waiting in memory.
        """
        with self._lock:
            if self._circuit_open or not self._inflight:
                return
            oldest = min(started for _, started in self._inflight.values())
        hung = time.monotonic() - oldest
        if hung >= self._stall:
            self._open_circuit(TimeoutError(f"no answer from MLflow for {hung:.0f} s"))

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

    def _probe_now(self, deadline: float) -> bool:
        """Ask the supervisor for a probe now; True when the circuit closed before ``deadline``."""
        with self._idle:
            seen = self._probes
            self._wake.set()
            while self._probes == seen and self._circuit_open:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(min(left, 0.1))
        return not self._circuit_open

    def _probe_once(self) -> bool:
        try:
            if self._probe is not None:
                self._probe()
                return True
            if self._spool is None:
                return True  # nothing to probe with; new records will test the way
            self._spool.recover()
            entry = self._spool.claim_next(self._errors.waiting())
            if entry is None:
                return True
            result = self._replay_entry(entry)
            if result.outcome is Outcome.RELEASED and result.error is not None:
                raise result.error  # an outage: the probe failed
            # Written, or MLflow answered (rejected), or not an outage (a bug or a bad record):
            # do not keep the circuit open on it.
            return True
        except Exception as exc:  # noqa: BLE001 - a failed probe keeps the circuit open
            _logger.debug("otel_mlflow: MLflow probe failed: %s", _short(exc))
            return False

    def _replay_pass(self) -> None:
        spool = self._spool
        assert spool is not None
        with self._lock:
            self._replaying = True
            self._replay_wanted = False
        skip = self._errors.waiting()
        spool.recover()  # entries claimed by processes that died since
        try:
            while not self._stop.is_set() and not self._circuit_open:
                entry = spool.claim_next(skip)
                if entry is None:
                    break
                result = self._replay_entry(entry)
                if result.outcome is Outcome.WRITTEN or result.kind is ErrorKind.REJECTED:
                    continue
                skip.add(entry.name)
                if result.outcome is not Outcome.RELEASED or result.error is None:
                    continue  # an unexpected error: backoff, or rejected/ when used up
                self._open_circuit(result.error, log=result.kind is ErrorKind.TRANSIENT)
                break
        finally:
            with self._idle:
                self._replaying = False
                self._passes_done += 1
                self._idle.notify_all()
