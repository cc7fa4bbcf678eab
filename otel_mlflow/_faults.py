"""Faults inside otel_mlflow: logged once per interval, counted, never raised.

A bug in the tracer, a full disk or an MLflow server answering 500 must not reach user code.
Callers catch broadly and hand the exception here; ``fault_counts()`` exposes the counters
(tests and the benchmark scripts read them).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter

_logger = logging.getLogger("otel_mlflow")

LOG_INTERVAL_SECONDS = 60.0

_lock = threading.Lock()
_counts: Counter[str] = Counter()
_last_logged: dict[str, float] = {}


def report(where: str, exc: BaseException | None = None, message: str | None = None) -> None:
    """Count a fault at ``where`` and log it unless the same place logged within the interval."""
    try:
        now = time.monotonic()
        with _lock:
            _counts[where] += 1
            count = _counts[where]
            last = _last_logged.get(where)
            if last is not None and now - last < LOG_INTERVAL_SECONDS:
                return
            _last_logged[where] = now
        text = message or (f"{type(exc).__name__}: {exc}" if exc is not None else "fault")
        _logger.warning(
            "otel_mlflow fault in %s (%d so far): %s",
            where,
            count,
            text,
            exc_info=exc if _logger.isEnabledFor(logging.DEBUG) else None,
        )
    except Exception:  # noqa: BLE001 - the fault reporter itself must never raise
        pass


def fault_counts() -> dict[str, int]:
    """A snapshot of fault counters by place."""
    with _lock:
        return dict(_counts)


def reset_fault_counts() -> None:
    with _lock:
        _counts.clear()
        _last_logged.clear()
