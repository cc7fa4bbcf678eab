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
   - ERROR (anything else: a bug, an unexpected exception): spooled, counted in ``fault_counts``.

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

``shutdown(timeout)`` drains within the bound; records still queued or stuck in a hanging
request are spooled, and ONE log line says how many traces wait in the spool and where.
"""

from __future__ import annotations

import enum
import inspect
import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from opentelemetry import context as otel_context

from otel_mlflow import _faults
from otel_mlflow._spool import REJECTED_DIR, Spool

_logger = logging.getLogger(__name__)

DEFAULT_WORKERS = 2
DEFAULT_RETRY_MAX_SECONDS = 30.0
DEFAULT_QUEUE_MAX = 1_000  # beyond this, records wait on disk (spool), not in memory
DEFAULT_SHUTDOWN_TIMEOUT_SECONDS = 10.0
DEFAULT_PROBE_MAX_SECONDS = 10.0
DEFAULT_OPEN_AFTER_FAILURES = 3
DEFAULT_STALL_SECONDS = 15.0
_BACKOFF_BASE_SECONDS = 0.25
_BACKOFF_CAP_SECONDS = 8.0
_PROBE_FIRST_SECONDS = 0.5


class DeliveryRecord(Protocol):
    @property
    def trace_id(self) -> str: ...

    def to_json(self) -> str: ...


class ErrorKind(enum.Enum):
    TRANSIENT = "transient"
    AUTH = "auth"
    REJECTED = "rejected"
    ERROR = "error"


_TRANSIENT_STATUS = frozenset({408, 425, 429})
_AUTH_STATUS = frozenset({401, 403})


def _status_of(exc: BaseException) -> int | None:
    """The HTTP status behind an exception, when it carries one."""
    try:
        from mlflow.exceptions import MlflowException
    except ImportError:  # pragma: no cover - mlflow is a dependency
        MlflowException = ()  # type: ignore[assignment,misc]  # noqa: N806
    if MlflowException and isinstance(exc, MlflowException):
        try:
            return int(exc.get_http_status_code())
        except Exception:  # noqa: BLE001
            return None
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None) if response is not None else None
    if status is None:
        status = getattr(exc, "status_code", None)
    try:
        return None if status is None else int(status)
    except (TypeError, ValueError):
        return None


def classify_error(exc: BaseException) -> ErrorKind:
    """Map a write failure to what delivery does with it (see the module doc)."""
    import requests

    if isinstance(exc, (requests.ConnectionError, requests.Timeout, ConnectionError, TimeoutError)):
        return ErrorKind.TRANSIENT
    status = _status_of(exc)
    if status is not None:
        if status in _AUTH_STATUS:
            return ErrorKind.AUTH
        if status >= 500 or status in _TRANSIENT_STATUS:
            return ErrorKind.TRANSIENT
        if 400 <= status < 500:
            return ErrorKind.REJECTED
    if isinstance(exc, OSError):
        return ErrorKind.TRANSIENT
    return ErrorKind.ERROR


def _accepts_attempt(write: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(write).parameters
    except (TypeError, ValueError):
        return False
    return "attempt" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def write_with_attempt(write: Callable[..., Any], record: Any, attempt: int) -> None:
    """Call ``write(record, attempt=n)`` when it takes ``attempt``, else ``write(record)``."""
    if _accepts_attempt(write):
        write(record, attempt=attempt)
    else:
        write(record)


def _suppress_instrumentation() -> None:
    # Attached for the thread's lifetime and never detached: the thread exists only to talk
    # to MLflow, and none of that talk may become spans in the app's own pipelines.
    ctx = otel_context.set_value(otel_context._SUPPRESS_INSTRUMENTATION_KEY, True)
    ctx = otel_context.set_value(otel_context._SUPPRESS_HTTP_INSTRUMENTATION_KEY, True, ctx)
    otel_context.attach(ctx)


class Delivery:
    """Writes records to MLflow off the caller's thread; never raises; see the module doc."""

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
        name: str = "otel_mlflow-delivery",
    ) -> None:
        self._write = write
        self._pass_attempt = _accepts_attempt(write)
        self._spool = spool
        self._retry_max = max(float(retry_max_seconds), 0.0)
        self._shutdown_timeout = max(float(shutdown_timeout_seconds), 0.0)
        self._probe = probe
        self._probe_max = max(float(probe_max_seconds), _PROBE_FIRST_SECONDS)
        self._open_after = max(int(open_after_failures), 1)
        self._stall = max(float(stall_seconds), 0.1)
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(int(queue_max), 1))
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._closed = False
        self._circuit_open = False
        self._consecutive_failures = 0
        self._inflight: dict[int, tuple[Any, float]] = {}  # thread -> (record, started)
        self._pending = 0  # submitted, not yet written or spooled
        self._replaying = False
        self._probes = 0
        self._replay_wanted = spool is not None and spool.pending() > 0
        self.stats: dict[str, int] = {
            "submitted": 0, "written": 0, "retries": 0, "spooled": 0, "replayed": 0,
            "rejected": 0, "dropped": 0,
        }
        self._threads: list[threading.Thread] = []
        for index in range(max(int(workers), 1)):
            thread = threading.Thread(
                target=self._worker_main, name=f"{name}-{index}", daemon=True
            )
            self._threads.append(thread)
        self._supervisor = threading.Thread(
            target=self._supervisor_main, name=f"{name}-supervisor", daemon=True
        )
        for thread in self._threads:
            thread.start()
        self._supervisor.start()

    # --- public ------------------------------------------------------------------------------
    @property
    def circuit_open(self) -> bool:
        return self._circuit_open

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
                direct = closed or (self._circuit_open and self._spool is not None)
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
        """Wait until every submitted record is written or spooled and, when MLflow is up, the
        spool is replayed. True when nothing is left waiting (in memory or in the spool)."""
        deadline = time.monotonic() + max(timeout_seconds, 0.0)
        with self._idle:
            while self._pending > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(min(left, 0.1))
        if self._spool is None:
            return True
        probed = False
        while True:
            if self._circuit_open:
                if probed or self._spool.pending() == 0:
                    return self._spool.pending() == 0
                # One immediate probe instead of the backoff wait: MLflow may be back already.
                probed = True
                if not self._probe_now(deadline):
                    return False
                continue
            with self._lock:
                busy = self._replaying
                if not busy and self._spool.pending() > 0:
                    self._replay_wanted = True
                    self._wake.set()
                    busy = True
            if not busy:
                return self._spool.pending() == 0
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

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
        self._wake.set()
        leftovers = 0
        while True:
            try:
                record = self._queue.get_nowait()
            except queue.Empty:
                break
            self._spool_record(record, None)
            self._done_one()
            leftovers += 1
        with self._lock:
            stuck = [record for record, _ in self._inflight.values()]
        for record in stuck:
            # The hanging request may still succeed; the writer's trace-id lookup makes the
            # later replay of this copy a no-op then.
            self._spool_record(record, None)
            leftovers += 1
        for thread in [*self._threads, self._supervisor]:
            thread.join(timeout=0.5)
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
        _suppress_instrumentation()
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
                self._spool_record(record, "unexpected delivery error")
            finally:
                with self._lock:
                    self._inflight.pop(ident, None)
                self._done_one()

    def _deliver(self, record: Any) -> None:
        if self._circuit_open or self._stop.is_set():
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
                    self._note_failure(exc)
                    delay = self._backoff(attempt)
                    out_of_budget = time.monotonic() - started + delay > self._retry_max
                    if self._circuit_open or out_of_budget or self._stop.is_set():
                        if out_of_budget:
                            self._open_circuit(exc)
                        self._spool_record(record, None)
                        return
                    with self._lock:
                        self.stats["retries"] += 1
                    attempt += 1
                    if self._stop.wait(delay):
                        self._spool_record(record, None)
                        return
                    continue
                self._handle_permanent(record, kind, exc)
                return
            with self._lock:
                self._consecutive_failures = 0
                self.stats["written"] += 1
                reopened = self._circuit_open
            if reopened:
                self._close_circuit()  # a write went through: MLflow is back
            return

    def _call_write(self, record: Any, attempt: int) -> None:
        if self._pass_attempt:
            self._write(record, attempt=attempt)
        else:
            self._write(record)

    def _handle_permanent(self, record: Any, kind: ErrorKind, exc: BaseException) -> None:
        trace_id = getattr(record, "trace_id", "?")
        if kind is ErrorKind.AUTH:
            _logger.error(
                "otel_mlflow: MLflow refused the credentials (%s); trace %s spooled, writes "
                "paused until MLflow accepts them (check MLFLOW_TRACKING_USERNAME/PASSWORD/TOKEN)",
                _short(exc), trace_id,
            )
            self._open_circuit(exc, log=False)
            self._spool_record(record, None)
        elif kind is ErrorKind.REJECTED:
            with self._lock:
                self.stats["rejected"] += 1
            _faults.report("delivery.rejected", exc)
            if self._spool is None:
                _logger.error(
                    "otel_mlflow: MLflow rejected trace %s (%s); no spool, dropped",
                    trace_id, _short(exc),
                )
                return
            target = self._spool.put(record, folder=REJECTED_DIR)
            _logger.error(
                "otel_mlflow: MLflow rejected trace %s (%s); kept in %s",
                trace_id,
                _short(exc),
                self._spool.directory / REJECTED_DIR if target else "(nowhere: spool failed)",
            )
            with self._lock:
                self.stats["spooled"] += 1
        else:
            _faults.report("delivery.write", exc)
            self._spool_record(record, None)

    def _note_failure(self, exc: BaseException) -> None:
        with self._lock:
            self._consecutive_failures += 1
            trip = self._consecutive_failures >= self._open_after
        if trip:
            self._open_circuit(exc)

    def _open_circuit(self, exc: BaseException, *, log: bool = True) -> None:
        with self._lock:
            if self._circuit_open:
                return
            self._circuit_open = True
        if log:
            _logger.warning(
                "otel_mlflow: MLflow unreachable (%s); traces go to the spool %s until it is back",
                _short(exc), self._spool.directory if self._spool is not None else "(none)",
            )
        if self._spool is not None:
            self._drain_queue_to_spool()
        self._wake.set()

    def _close_circuit(self) -> None:
        with self._lock:
            was_open = self._circuit_open
            self._circuit_open = False
            self._consecutive_failures = 0
            self._replay_wanted = True
        if was_open:
            _logger.warning("otel_mlflow: MLflow reachable again; replaying the spool")

    @staticmethod
    def _backoff(attempt: int) -> float:
        # Full jitter: spreads the retries of many workers/processes after a shared outage.
        cap = min(_BACKOFF_CAP_SECONDS, _BACKOFF_BASE_SECONDS * (2**attempt))
        return random.uniform(cap / 2, cap)

    def _spool_record(self, record: Any, reason: str | None) -> None:
        if self._spool is not None and self._spool.put(record):
            with self._lock:
                self.stats["spooled"] += 1
            return
        with self._lock:
            self.stats["dropped"] += 1
        _faults.report("delivery.dropped", message=reason or "no spool for an unwritten trace")
        _logger.error(
            "otel_mlflow: trace %s could not be written or spooled (%s); it is lost",
            getattr(record, "trace_id", "?"), reason or "no spool",
        )

    def _done_one(self) -> None:
        with self._idle:
            self._pending = max(self._pending - 1, 0)
            if self._pending == 0:
                self._idle.notify_all()

    # --- supervisor: probe while open, replay after recovery ---------------------------------
    def _supervisor_main(self) -> None:
        _suppress_instrumentation()
        interval = _PROBE_FIRST_SECONDS
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
                    interval = _PROBE_FIRST_SECONDS
                    self._close_circuit()
                else:
                    interval = min(interval * 2, self._probe_max)
                continue
            if self._replay_wanted and self._spool is not None:
                self._replay_pass()
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

    def _drain_queue_to_spool(self) -> None:
        while True:
            try:
                record = self._queue.get_nowait()
            except queue.Empty:
                return
            self._spool_record(record, None)
            self._done_one()

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
            entry = self._spool.claim_next()
            if entry is None:
                return True
            try:
                self._call_write(entry.record, 1)
            except Exception as exc:  # noqa: BLE001 - classified below
                kind = classify_error(exc)
                if kind is ErrorKind.REJECTED:
                    self._spool.reject(entry, _short(exc))
                    return True  # MLflow answered: it is up
                self._spool.release(entry)
                if kind is ErrorKind.ERROR:
                    # Not an outage (a bug or a bad record): do not keep the circuit open on it.
                    _faults.report("delivery.replay", exc)
                    return True
                raise
            self._spool.remove(entry)
            with self._lock:
                self.stats["replayed"] += 1
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
        skip: set[str] = set()
        spool.recover()  # entries claimed by processes that died since
        try:
            while not self._stop.is_set() and not self._circuit_open:
                entry = spool.claim_next(skip)
                if entry is None:
                    break
                try:
                    self._call_write(entry.record, 1)
                except Exception as exc:  # noqa: BLE001 - classified below
                    kind = classify_error(exc)
                    if kind is ErrorKind.REJECTED:
                        spool.reject(entry, _short(exc))
                        continue
                    spool.release(entry)
                    skip.add(entry.name)
                    if kind is ErrorKind.ERROR:
                        _faults.report("delivery.replay", exc)
                        continue
                    self._open_circuit(exc, log=kind is ErrorKind.TRANSIENT)
                    break
                spool.remove(entry)
                with self._lock:
                    self.stats["replayed"] += 1
        finally:
            with self._lock:
                self._replaying = False


def _short(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 300 else text[:297] + "..."
