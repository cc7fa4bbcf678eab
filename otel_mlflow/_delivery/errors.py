"""What a failed write means: :func:`classify_error` maps it to an :class:`ErrorKind`.

Priority: connection errors and timeouts are TRANSIENT; then the HTTP status: 401/403 AUTH,
5xx/408/425/429 TRANSIENT, other 4xx REJECTED; then other ``OSError`` TRANSIENT; anything else
ERROR. ``otel_mlflow._delivery.workers`` says what delivery does with each kind.
"""

from __future__ import annotations

import enum


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
