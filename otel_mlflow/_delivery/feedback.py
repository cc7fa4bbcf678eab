"""Feedback delivery: held until its trace is written, applied on a worker thread.

``log_feedback`` (``otel_mlflow._feedback``) only validates and calls ``FeedbackQueue.submit``,
which appends to a bounded queue and returns a ``Future``: the caller never waits on I/O. One
daemon worker (started on first use) takes each item and asks ``otel_mlflow._sink.feedback``
where its trace is:

- written: the assessment and the metric are logged; the future's result is the assessment id;
- not written yet (the trace is still buffered, in delivery, or in the spool during an outage):
  the item is held and asked about again, with backoff (0.2 s doubling to 5 s), until
  ``hold_seconds`` (``OTEL_MLFLOW_FEEDBACK_HOLD_SECONDS``, default 600) after the call; then
  the future fails with ``LookupError`` and one warning names the run id, the name and the value;
- an MLflow failure: retried the same way within the hold.

The hint index (``note``): the exporter notes, for every record it builds, the LangChain root
run id -> OTel trace id (+ active run id), bounded to the latest ``_MAX_HINTS``; without a hint
(another process wrote the trace, or the process restarted) the sink searches MLflow by tags.

``drain(timeout)`` (called by ``otel_mlflow.flush()``, after the exporters are drained) waits
until every item has been tried at least once and none whose trace this process wrote is still
held; items for other runs (not written by this process, a typo'd id) stay held in the
background and do not hold ``flush()`` up.

Bounds: at most ``_MAX_PENDING`` items are held; more fail at once (``OverflowError``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from otel_mlflow._common import faults as _faults
from otel_mlflow._sink.feedback import FeedbackItem, Hint, Located, locate, log_assessment, log_metric

_logger = logging.getLogger(__name__)

DEFAULT_HOLD_SECONDS = 600.0
_MAX_PENDING = 10_000
_MAX_HINTS = 100_000
_FIRST_BACKOFF = 0.2
_MAX_BACKOFF = 5.0

_hints: OrderedDict[str, Hint] = OrderedDict()
_hints_lock = threading.Lock()


def note(lc_run_id: str | None, otel_trace_id: str, target_run_id: str | None) -> None:
    """Remember where the trace of a LangChain root run goes (called by the exporter)."""
    if not lc_run_id:
        return
    with _hints_lock:
        _hints[lc_run_id] = Hint(otel_trace_id, target_run_id)
        _hints.move_to_end(lc_run_id)
        while len(_hints) > _MAX_HINTS:
            _hints.popitem(last=False)


def hint(lc_run_id: str) -> Hint | None:
    with _hints_lock:
        return _hints.get(lc_run_id)


def forget_hints() -> None:
    """Drop every hint (what a restarted process starts with)."""
    with _hints_lock:
        _hints.clear()


@dataclass
class _Pending:
    item: FeedbackItem
    writers: list[Any]
    future: Future[str]
    hold_seconds: float
    deadline: float
    due: float = 0.0
    backoff: float = _FIRST_BACKOFF
    attempts: int = 0
    # Set once the assessment is logged: a retry then only redoes the metric (no duplicate).
    located: tuple[Any, Located] | None = None
    assessed: bool = False
    assessment_id: str | None = None  # None after ``assessed``: the run has no MLflow trace
    last_error: BaseException | None = field(default=None)


class FeedbackQueue:
    """The process's feedback worker; see the module doc."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._pending: list[_Pending] = []
        self._busy = 0
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def submit(
        self, item: FeedbackItem, writers: list[Any], hold_seconds: float = DEFAULT_HOLD_SECONDS
    ) -> Future[str]:
        future: Future[str] = Future()
        with self._lock:
            if len(self._pending) >= _MAX_PENDING:
                error = OverflowError(f"{_MAX_PENDING} feedback items already held")
                _logger.warning("otel_mlflow: feedback %r=%r on LangChain run %s not recorded: %s",
                                item.name, item.value, item.lc_run_id, error)
                future.set_exception(error)
                return future
            self._pending.append(_Pending(item, writers, future, hold_seconds,
                                          time.monotonic() + hold_seconds))
            self._ensure_thread()
            self._wake.notify()
        return future

    def pending_count(self) -> int:
        with self._lock:
            return len(self._pending) + self._busy

    def drain(self, timeout: float) -> bool:
        """Wait until nothing is held or being applied; True when so within ``timeout``."""
        deadline = time.monotonic() + max(timeout, 0.0)
        with self._lock:
            while self._busy or any(
                p.attempts == 0 or hint(p.item.lc_run_id) is not None for p in self._pending
            ):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._wake.wait(min(left, 0.1))
        return True

    def _ensure_thread(self) -> None:
        if self._pid != os.getpid():  # forked child: the parent's worker is not here
            self._pid, self._thread = os.getpid(), None
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._main, name="otel_mlflow-feedback",
                                            daemon=True)
            self._thread.start()

    def _main(self) -> None:
        while True:
            with self._lock:
                now = time.monotonic()
                ready = [p for p in self._pending if p.due <= now]
                if not ready:
                    wait = min((p.due for p in self._pending), default=now + 1.0) - now
                    self._wake.wait(max(0.01, min(wait, 1.0)))
                    continue
                for p in ready:
                    self._pending.remove(p)
                self._busy += len(ready)
            for p in ready:
                try:
                    self._attempt(p)
                except Exception as exc:  # noqa: BLE001 - the worker must survive any bug
                    _faults.report("feedback.worker", exc)
                    if not p.future.done():
                        p.future.set_exception(exc)
                finally:
                    with self._lock:
                        self._busy -= 1
                        self._wake.notify_all()

    def _attempt(self, p: _Pending) -> None:
        item = p.item
        p.attempts += 1
        try:
            if p.located is None:
                for writer in p.writers:
                    located = locate(writer, item.lc_run_id, hint(item.lc_run_id))
                    if located is not None:
                        p.located = (writer, located)
                        break
            if p.located is not None:
                writer, located = p.located
                if not p.assessed:
                    p.assessment_id = log_assessment(writer, located, item)
                    p.assessed = True
                log_metric(writer, located, item, traced=p.assessment_id is not None)
                p.future.set_result(p.assessment_id or "")
                return
        except Exception as exc:  # noqa: BLE001 - MLflow down or failing: retried within the hold
            p.last_error = exc
        now = time.monotonic()
        if now >= p.deadline:
            reason = (f"MLflow failed: {p.last_error}" if p.last_error is not None else
                      f"no trace of LangChain root run {item.lc_run_id} was written within "
                      f"{p.hold_seconds:g} s")
            _logger.warning("otel_mlflow: feedback %r=%r on LangChain run %s not recorded: %s",
                            item.name, item.value, item.lc_run_id, reason)
            p.future.set_exception(LookupError(reason))
            return
        p.due = min(now + p.backoff, p.deadline)
        p.backoff = min(p.backoff * 2, _MAX_BACKOFF)
        with self._lock:
            self._pending.append(p)
            self._wake.notify_all()


_queue: FeedbackQueue | None = None
_queue_lock = threading.Lock()


def queue() -> FeedbackQueue:
    """The process's queue (built on first use)."""
    global _queue
    with _queue_lock:
        if _queue is None:
            _queue = FeedbackQueue()
        return _queue


def drain(timeout: float) -> bool:
    with _queue_lock:
        current = _queue
    return True if current is None else current.drain(timeout)
