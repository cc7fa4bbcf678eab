"""What delivery does with a failed write, and the small policies around it.

- :func:`classify_error` maps a write failure to an :class:`ErrorKind` (priority: connection
  errors and timeouts are TRANSIENT; then the HTTP status: 401/403 AUTH, 5xx/408/425/429
  TRANSIENT, other 4xx REJECTED; then other ``OSError`` TRANSIENT; anything else ERROR).
- :class:`ErrorBackoff` remembers spool entries that failed with an unexpected error (ERROR):
  when each may be retried (exponential backoff) and how often it failed, so such an entry is
  neither replayed in a loop nor retried forever (``Delivery`` moves it to ``rejected/`` after
  its attempts). Bounded; in memory only (a new process gives an entry fresh attempts).
- :func:`write_with_attempt` passes ``attempt`` to writers that accept it.
- :func:`short` formats an exception for a log line, redacted and capped.
"""

from __future__ import annotations

import enum
import inspect
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

from opentelemetry import context as otel_context

from otel_mlflow._common import faults as _faults

_ERROR_BACKOFF_CAP_SECONDS = 300.0
_MAX_ERROR_ENTRIES = 10_000


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


def suppress_instrumentation() -> None:
    # Attached for the thread's lifetime and never detached: the thread exists only to talk
    # to MLflow, and none of that talk may become spans in the app's own pipelines.
    ctx = otel_context.set_value(otel_context._SUPPRESS_INSTRUMENTATION_KEY, True)
    ctx = otel_context.set_value(otel_context._SUPPRESS_HTTP_INSTRUMENTATION_KEY, True, ctx)
    otel_context.attach(ctx)


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


def short(exc: BaseException) -> str:
    """The exception for a log line: redacted (no secret from a URL or header), capped."""
    text = _faults.describe(exc)
    return text if len(text) <= 300 else text[:297] + "..."
