"""Claims: how processes sharing a spool directory keep off each other's entries.

An entry is claimed by renaming it to ``<name>.claim-<pid>-<token>`` before it is written, where
``token`` is one per open ``Spool`` (a new one in a forked child). A claim is stale, and released
on the next ``recover()``, when its process is dead or when it is this process's and its token
belongs to no open spool any more. A temporary file ``.tmp-<pid>-<name>`` is its writer's until
that process is dead. The registry of live tokens is per process and fork-safe.
"""

from __future__ import annotations

import os
import sys
import threading
import uuid

from otel_mlflow._common.forksafe import new_lock_after_fork

CLAIM_MARK = ".claim-"

_live_tokens: set[str] = set()
_live_lock = threading.Lock()
new_lock_after_fork(sys.modules[__name__], "_live_lock")


def new_claim_suffix() -> tuple[str, str]:
    """``(token, claim suffix)`` for a spool opened (or restarted) in this process, registered
    as live until ``forget_token``."""
    token = uuid.uuid4().hex[:12]
    with _live_lock:
        _live_tokens.add(token)
    return token, f"{CLAIM_MARK}{os.getpid()}-{token}"


def forget_token(token: str) -> None:
    with _live_lock:
        _live_tokens.discard(token)


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stale_claim(name: str) -> str | None:
    """The entry name behind a stale claim file ``name``; None when live or not a claim."""
    if CLAIM_MARK not in name:
        return None
    base, _, owner = name.partition(CLAIM_MARK)
    pid_text, _, token = owner.partition("-")
    pid = int(pid_text) if pid_text.isdigit() else -1
    if not pid_alive(pid):
        return base
    if pid == os.getpid():
        with _live_lock:
            if token not in _live_tokens:
                return base
    return None


def dead_writer_tmp(name: str, tmp_prefix: str) -> bool:
    """True for a temporary file whose writing process is dead (not this one)."""
    if not name.startswith(tmp_prefix):
        return False
    pid_text = name[len(tmp_prefix):].split("-", 1)[0]
    pid = int(pid_text) if pid_text.isdigit() else -1
    return pid != os.getpid() and not pid_alive(pid)
