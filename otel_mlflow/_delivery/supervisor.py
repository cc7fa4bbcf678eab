"""``Supervisor``: the thread that probes MLflow while the circuit is open and replays the spool.

One per ``Delivery`` (see ``otel_mlflow._delivery.workers`` for the whole policy), which holds
it and hands it exactly what it needs: the spool, the circuit, the unexpected-error backoff, a
``write(record, attempt)`` call, a stats counter and a view of the writes in flight. While the
circuit is open it probes with backoff (``probe()``, or by default replaying the oldest spooled
record); when a probe succeeds it closes the circuit and replays the spool, oldest first, one
pass at a time; it also replays entries whose unexpected-error backoff is due, and opens the
circuit when a write has hung for ``stall_seconds``. Every entry is settled by the one replay
rule, ``otel_mlflow._delivery.replay_entry``.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from otel_mlflow._common import faults as _faults
from otel_mlflow._common.faults import short
from otel_mlflow._delivery.backoff import ErrorBackoff
from otel_mlflow._delivery.circuit import Circuit
from otel_mlflow._delivery.errors import ErrorKind
from otel_mlflow._delivery.replay_entry import EntryResult, Outcome, replay_entry
from otel_mlflow._delivery.spool import Spool
from otel_mlflow._delivery.spool_entry import SpoolEntry
from otel_mlflow._delivery.threads import suppress_instrumentation

_logger = logging.getLogger("otel_mlflow._delivery.workers")

PROBE_FIRST_SECONDS = 0.5
_IDLE_TICK_SECONDS = 0.5


class Supervisor:
    """Probe / replay / stall detection for one ``Delivery`` (see the module doc)."""

    def __init__(
        self,
        *,
        spool: Spool | None,
        circuit: Circuit,
        errors: ErrorBackoff,
        write: Callable[[Any, int], None],
        note_error: Callable[[str], int],
        count: Callable[[str], None],
        oldest_inflight: Callable[[], float | None],
        probe: Callable[[], Any] | None,
        probe_max_seconds: float,
        stall_seconds: float,
        error_attempts: int,
        replay_at_start: bool,
        name: str,
    ) -> None:
        self._spool = spool
        self._circuit = circuit
        self._errors = errors
        self._write = write
        self._note_error = note_error
        self._count = count
        self._oldest_inflight = oldest_inflight
        self._probe = probe
        self._probe_max = max(float(probe_max_seconds), PROBE_FIRST_SECONDS)
        self._stall = max(float(stall_seconds), 0.1)
        self._error_attempts = max(int(error_attempts), 1)
        self._name = name
        self._new_sync(replay_wanted=replay_at_start)
        self._stopped = False
        self._thread: threading.Thread | None = None

    def _new_sync(self, *, replay_wanted: bool) -> None:
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._replay_wanted = replay_wanted
        self._replaying = False
        self._passes_done = 0
        self._probes = 0

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._main, name=f"{self._name}-supervisor", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stopped = True
        self._stop.set()
        self._wake.set()

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(max(0.0, timeout))

    def restart_in_child(self) -> None:
        """After ``os.fork()``: new locks and events, a new thread unless stopped."""
        self._new_sync(replay_wanted=False)
        if self._stopped:
            self._stop.set()
            self._thread = None
            return
        self.start()

    # --- asked by Delivery -----------------------------------------------------------------
    def wake(self) -> None:
        self._wake.set()

    def want_replay(self) -> None:
        with self._lock:
            self._replay_wanted = True

    def settle_spool(self, deadline: float) -> bool:
        """``Delivery.flush``'s second half: one replay pass of the spool (after one immediate
        probe when the circuit is open). True when the spool is empty; entries still failing
        make it False at once instead of being replayed in a loop until ``deadline``."""
        spool = self._spool
        if spool is None:
            return True
        probed = False
        replayed = False
        while True:
            if self._circuit.is_open:
                if probed or spool.pending() == 0:
                    return spool.pending() == 0
                # One immediate probe instead of the backoff wait: MLflow may be back already.
                probed = True
                if not self._probe_now(deadline):
                    return False
                continue
            if spool.pending() == 0:
                if not self._replaying:
                    return True
                # A pass may be writing an entry it took out of the spool: wait for its end.
                if not self._pass_end(deadline):
                    return False
                continue
            if replayed:
                # One full pass ran and entries remain (in backoff after an unexpected error,
                # or spooled meanwhile): report it instead of replaying in a loop.
                return False
            replayed = True
            if not self._replay_once(deadline):
                return False

    def _probe_now(self, deadline: float) -> bool:
        """Ask for a probe now; True when the circuit closed before ``deadline``."""
        with self._idle:
            seen = self._probes
            self._wake.set()
            while self._probes == seen and self._circuit.is_open:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(min(left, 0.1))
        return not self._circuit.is_open

    def _replay_once(self, deadline: float) -> bool:
        """Ask for a replay pass that starts now and wait for its end (or for the circuit to
        open); False when ``deadline`` passed first."""
        with self._idle:
            target = self._passes_done + (2 if self._replaying else 1)
            self._replay_wanted = True
            self._wake.set()
            while self._passes_done < target and not self._circuit.is_open:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(min(left, 0.1))
        return True

    def _pass_end(self, deadline: float) -> bool:
        """Wait for the end of the replay pass running now; False when ``deadline`` passed."""
        with self._idle:
            target = self._passes_done + 1
            while self._replaying and self._passes_done < target:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(min(left, 0.1))
        return True

    # --- the thread ------------------------------------------------------------------------
    def _main(self) -> None:
        suppress_instrumentation()
        interval = PROBE_FIRST_SECONDS
        while not self._stop.is_set():
            if self._circuit.is_open:
                self._wake.wait(random.uniform(interval / 2, interval))
                self._wake.clear()
                if self._stop.is_set():
                    return
                ok = self._probe_once()
                with self._idle:
                    self._probes += 1
                    self._idle.notify_all()
                if ok:
                    interval = PROBE_FIRST_SECONDS
                    self._circuit.close()
                else:
                    interval = min(interval * 2, self._probe_max)
                continue
            if self._replay_wanted and self._spool is not None:
                self._replay_pass()
                continue
            if self._spool is not None and self._errors.any_due(self._spool.has_entry):
                self.want_replay()
                continue
            self._check_stall()
            self._wake.wait(_IDLE_TICK_SECONDS)
            self._wake.clear()

    def _check_stall(self) -> None:
        """Open the circuit when a write has hung for ``stall_seconds``.

        MLflow's own HTTP client retries a refused connection for minutes before it raises, so an
        outage may show up as hanging writes, not as errors. Opening the circuit sends new
        records (and the queued ones) to the spool, durable, instead of waiting in memory.
        """
        if self._circuit.is_open:
            return
        oldest = self._oldest_inflight()
        if oldest is None:
            return
        hung = time.monotonic() - oldest
        if hung >= self._stall:
            self._circuit.open(TimeoutError(f"no answer from MLflow for {hung:.0f} s"))

    def _replay_entry(self, entry: SpoolEntry) -> EntryResult:
        """Settle one claimed entry by the one replay rule (``replay_entry``), then count it."""
        assert self._spool is not None
        result = replay_entry(
            self._spool, entry, self._write_first_attempt,
            note_error=self._note_replay_error, error_attempts=self._error_attempts,
        )
        if result.outcome is Outcome.WRITTEN:
            self._errors.forget(entry.name)
            self._count("replayed")
        elif result.outcome is Outcome.REJECTED and result.kind is ErrorKind.ERROR:
            # Its unexpected-error attempts are used up (the first one was the worker's write).
            self._errors.forget(entry.name)
            self._count("rejected")
        return result

    def _write_first_attempt(self, record: Any) -> None:
        self._write(record, 1)

    def _note_replay_error(self, name: str, exc: BaseException) -> int:
        _faults.report("delivery.replay", exc)
        return self._note_error(name)

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
            _logger.debug("otel_mlflow: MLflow probe failed: %s", short(exc))
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
            while not self._stop.is_set() and not self._circuit.is_open:
                entry = spool.claim_next(skip)
                if entry is None:
                    break
                result = self._replay_entry(entry)
                if result.outcome is Outcome.WRITTEN or result.kind is ErrorKind.REJECTED:
                    continue
                skip.add(entry.name)
                if result.outcome is not Outcome.RELEASED or result.error is None:
                    continue  # an unexpected error: backoff, or rejected/ when used up
                self._circuit.open(result.error, log=result.kind is ErrorKind.TRANSIENT)
                break
        finally:
            with self._idle:
                self._replaying = False
                self._passes_done += 1
                self._idle.notify_all()
