"""How delivery calls a sink's ``write``: the record it passes and the ``attempt`` keyword.

A sink is any ``write(record)`` callable that raises on failure and is idempotent per trace id;
when it accepts ``attempt`` (or ``**kwargs``) it receives 0 on the first try and >= 1 on retries
and replays, so it can skip its trace-id lookup on first writes.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any


def accepts_attempt(write: Callable[..., Any]) -> bool:
    """True when ``write`` takes an ``attempt`` keyword (or ``**kwargs``)."""
    try:
        params = inspect.signature(write).parameters
    except (TypeError, ValueError):
        return False
    return "attempt" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def write_with_attempt(write: Callable[..., Any], record: Any, attempt: int) -> None:
    """Call ``write(record, attempt=n)`` when it takes ``attempt``, else ``write(record)``."""
    if accepts_attempt(write):
        write(record, attempt=attempt)
    else:
        write(record)
