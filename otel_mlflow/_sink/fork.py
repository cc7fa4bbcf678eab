"""MLflow client state a forked child must not share with its parent.

After ``os.fork()`` the child inherits the parent's open database connections (the embedded
``sqlite:///`` store's SQLAlchemy pool) and HTTP keep-alive sockets (MLflow's cached
``requests`` sessions). Using them from two processes corrupts both sides: sqlite's POSIX locks
are per process, so a child writing through the parent's connection can wait out the 20 s
``busy_timeout`` or break the parent's lock. The fix is the one SQLAlchemy documents for
multiprocessing: in the child, ``engine.dispose(close=False)`` drops the pooled connections
*without closing them* (closing would release the parent's locks), so the child opens its own.
The cached HTTP sessions are forgotten the same way. Writers' locks are replaced too, since
only the forking thread survives a fork and a lock held by another thread would stay held.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any

from otel_mlflow._common import faults as _faults

_writers: weakref.WeakSet[Any] = weakref.WeakSet()


def track_writer(writer: Any) -> None:
    """Give ``writer`` (an ``MlflowWriter``) a fresh lock in a forked child."""
    _writers.add(writer)


def reset_in_child() -> None:
    """Forget every inherited connection and lock (runs in the child right after a fork)."""
    for writer in list(_writers):
        writer._lock = threading.Lock()
    try:
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        for engine in list(SqlAlchemyStore._engine_map.values()):
            engine.dispose(close=False)
    except Exception as exc:  # noqa: BLE001 - a newer MLflow may keep its engines elsewhere
        _faults.report("sink.fork.engines", exc)
    try:
        from mlflow.utils import request_utils

        request_utils._cached_get_request_session.cache_clear()
    except Exception as exc:  # noqa: BLE001
        _faults.report("sink.fork.http", exc)


def _after_in_child() -> None:
    try:
        reset_in_child()
    except Exception as exc:  # noqa: BLE001 - never raise into the forking app
        _faults.report("sink.fork", exc)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_in_child)
