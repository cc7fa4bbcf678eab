"""Locks that a forked child gets fresh.

Only the forking thread survives ``os.fork()``; a lock another thread held at that moment stays
held in the child for good. ``new_lock_after_fork(owner, attr)`` gives ``owner`` (an object or a
module) a new ``threading.Lock`` in ``attr`` in every forked child. The owner is held weakly, so
registering does not keep it alive; nothing happens where ``os.register_at_fork`` is missing.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any


def new_lock_after_fork(owner: Any, attr: str = "_lock") -> None:
    """Set ``owner.<attr>`` to a new lock in a forked child (``owner`` held weakly)."""
    if not hasattr(os, "register_at_fork"):
        return
    ref = weakref.ref(owner)

    def _after_in_child() -> None:
        alive = ref()
        if alive is not None:
            setattr(alive, attr, threading.Lock())

    os.register_at_fork(after_in_child=_after_in_child)
