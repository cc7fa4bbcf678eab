"""Backoff: the jittered delay between retries of one write, and :class:`ErrorBackoff`.

- :func:`retry_delay` is the exponential backoff with full jitter a worker waits between
  transient failures of one record (it spreads the retries of many workers and processes after
  a shared outage).
- :class:`ErrorBackoff` remembers spool entries that failed with an unexpected error (ERROR):
  when each may be retried (exponential backoff) and how often it failed, so such an entry is
  neither replayed in a loop nor retried forever (``Delivery`` moves it to ``rejected/`` after
  its attempts). Bounded; in memory only (a new process gives an entry fresh attempts).
"""

from __future__ import annotations

import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

_ERROR_BACKOFF_CAP_SECONDS = 300.0
_MAX_ERROR_ENTRIES = 10_000
_RETRY_BASE_SECONDS = 0.25
_RETRY_CAP_SECONDS = 8.0


def retry_delay(attempt: int) -> float:
    """Seconds before retry ``attempt + 1``: uniform in [cap/2, cap], cap = 0.25 s * 2^attempt
    up to 8 s."""
    cap = min(_RETRY_CAP_SECONDS, _RETRY_BASE_SECONDS * (2**attempt))
    return random.uniform(cap / 2, cap)


class ErrorBackoff:
    """Spool entry name -> (failures with an unexpected error, monotonic time of the next try).

    Thread-safe; holds at most ``_MAX_ERROR_ENTRIES`` names (oldest forgotten first).
    """

    def __init__(self, base_seconds: float) -> None:
        self._base = max(float(base_seconds), 0.0)
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[int, float]] = OrderedDict()

    def note(self, name: str) -> int:
        """Count one failure of ``name``; returns its failures so far (next try: base * 2^n)."""
        with self._lock:
            failures = self._entries.pop(name, (0, 0.0))[0] + 1
            delay = min(self._base * (2 ** (failures - 1)), _ERROR_BACKOFF_CAP_SECONDS)
            self._entries[name] = (failures, time.monotonic() + delay)
            while len(self._entries) > _MAX_ERROR_ENTRIES:
                self._entries.popitem(last=False)
        return failures

    def restart_in_child(self) -> None:
        """After ``os.fork()``: a new lock, nothing remembered (the child's own attempts)."""
        self._lock = threading.Lock()
        self._entries = OrderedDict()

    def forget(self, name: str) -> None:
        with self._lock:
            self._entries.pop(name, None)

    def waiting(self) -> set[str]:
        """Names whose next try is not due yet (a replay pass skips them)."""
        now = time.monotonic()
        with self._lock:
            return {name for name, (_, due) in self._entries.items() if due > now}

    def any_due(self, exists: Callable[[str], bool]) -> bool:
        """True when a remembered entry that still ``exists`` is due for its next try; entries
        that are gone are forgotten, so they cannot trigger replay passes forever."""
        now = time.monotonic()
        with self._lock:
            due = [name for name, (_, at) in self._entries.items() if at <= now]
        for name in due:
            if exists(name):
                return True
            self.forget(name)
        return False
