"""A lock held by another thread at fork time is a fresh one in the child (real os.fork)."""

from __future__ import annotations

import os
import threading
import types

import pytest

from otel_mlflow._common.forksafe import new_lock_after_fork


class Owner:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        new_lock_after_fork(self)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork (POSIX)")
def test_object_and_module_locks_held_elsewhere_are_free_in_the_child() -> None:
    owner = Owner()
    module = types.ModuleType("held")
    module._live_lock = threading.Lock()  # type: ignore[attr-defined]
    new_lock_after_fork(module, "_live_lock")
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with owner._lock, module._live_lock:  # type: ignore[attr-defined]
            held.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    assert held.wait(10)
    try:
        pid = os.fork()
        if pid == 0:  # the child: the holder thread is gone, its locks must not be
            free = (owner._lock.acquire(timeout=2)
                    and module._live_lock.acquire(timeout=2))  # type: ignore[attr-defined]
            os._exit(0 if free else 1)
        _, status = os.waitpid(pid, 0)
    finally:
        release.set()
        thread.join(10)
    assert os.waitstatus_to_exitcode(status) == 0
    assert not owner._lock.locked()  # the parent's own lock is untouched, and released
