"""Faults inside otel_mlflow: logged once per interval, counted, never raised.

A bug in the tracer, a full disk or an MLflow server answering 500 must not reach user code.
Callers catch broadly and hand the exception here; ``fault_counts()`` exposes the counters
(tests and the benchmark scripts read them).

Every logged text passes through the default redactor's text redaction
(``otel_mlflow._common.redact.default_redactor().redact_text``) first: an exception message may quote
a request URL with a password, a header or an API key, and logs must never hold one. At DEBUG
level the traceback is appended, redacted the same way (never handed to ``logging`` as
``exc_info``, which would print the raw message). :func:`redact` is the same filter for the
other modules' log lines that quote an exception.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections import Counter

_logger = logging.getLogger("otel_mlflow")

LOG_INTERVAL_SECONDS = 60.0
_WITHHELD = "[message withheld: redaction failed]"

_lock = threading.Lock()
_counts: Counter[str] = Counter()
_last_logged: dict[str, float] = {}
_local = threading.local()


def redact(text: str) -> str:
    """``text`` with secrets masked by the default redactor; never raises, fails closed.

    Re-entrant use (the redactor reporting its own fault, which lands here again) and any
    error yield a fixed placeholder instead of the unredacted text.
    """
    if getattr(_local, "busy", False):
        return _WITHHELD
    _local.busy = True
    try:
        # Imported here: _redact imports this module for its own fault reports.
        from otel_mlflow._common.redact import default_redactor

        return default_redactor().redact_text(text)
    except Exception:  # noqa: BLE001 - fail closed
        return _WITHHELD
    finally:
        _local.busy = False


def describe(exc: BaseException) -> str:
    """``"ExceptionType: message"``, redacted (for log lines quoting an exception)."""
    return redact(f"{type(exc).__name__}: {exc}")


def short(exc: BaseException) -> str:
    """The exception for a log line: redacted (no secret from a URL or header), capped."""
    text = describe(exc)
    return text if len(text) <= 300 else text[:297] + "..."


def report(where: str, exc: BaseException | None = None, message: str | None = None) -> None:
    """Count a fault at ``where`` and log it (redacted) unless the same place logged within
    the interval."""
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
        if exc is not None and _logger.isEnabledFor(logging.DEBUG):
            text += "\n" + "".join(traceback.format_exception(exc)).rstrip()
        _logger.warning("otel_mlflow fault in %s (%d so far): %s", where, count, redact(text))
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
