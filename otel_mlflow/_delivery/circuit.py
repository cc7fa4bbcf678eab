"""``Circuit``: whether MLflow is known to be down, and the one log line for each change.

Open after ``open_after`` consecutive transient failures (all workers together), or when asked
directly (an auth failure, a hung write, a retry budget used up); closed by the first write or
probe that goes through. While it is open, delivery sends records straight to the spool and the
supervisor probes. ``on_open`` / ``on_close`` are the owner's reactions (spool the queue and wake
the supervisor; ask for a replay pass); they run outside the lock.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from otel_mlflow._common.faults import short

_logger = logging.getLogger("otel_mlflow._delivery.workers")


class Circuit:
    """Thread-safe open/closed state with a consecutive-failure trip; see the module doc."""

    def __init__(
        self,
        open_after: int,
        *,
        spool_label: str,
        on_open: Callable[[], None],
        on_close: Callable[[], None],
    ) -> None:
        self._open_after = max(int(open_after), 1)
        self._spool_label = spool_label
        self._on_open = on_open
        self._on_close = on_close
        self._lock = threading.Lock()
        self._open = False
        self._failures = 0

    @property
    def is_open(self) -> bool:
        return self._open

    def restart_in_child(self) -> None:
        """After ``os.fork()``: a new lock, the failure count forgotten (the state is kept)."""
        self._lock = threading.Lock()
        self._failures = 0

    def failed(self, exc: BaseException) -> None:
        """One more transient failure; opens the circuit at ``open_after`` in a row."""
        with self._lock:
            self._failures += 1
            trip = self._failures >= self._open_after
        if trip:
            self.open(exc)

    def succeeded(self) -> None:
        """A write went through: the failure count restarts, an open circuit closes."""
        with self._lock:
            self._failures = 0
            was_open = self._open
        if was_open:
            self.close()  # MLflow is back

    def open(self, exc: BaseException, *, log: bool = True) -> None:
        with self._lock:
            if self._open:
                return
            self._open = True
        if log:
            _logger.warning(
                "otel_mlflow: MLflow unreachable (%s); traces go to the spool %s until it is back",
                short(exc), self._spool_label,
            )
        self._on_open()

    def close(self) -> None:
        with self._lock:
            was_open = self._open
            self._open = False
            self._failures = 0
        self._on_close()
        if was_open:
            _logger.warning("otel_mlflow: MLflow reachable again; replaying the spool")
