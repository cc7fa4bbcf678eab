"""The one replay rule for a claimed spool entry: write -> classify -> remove/reject/release.

Used by every replay there is: ``otel-mlflow replay`` (``_delivery.replay``), and the
supervisor's probe and replay pass (``_delivery.supervisor``). The caller claims the entry
(``Spool.claim_next``) and acts on the returned :class:`EntryResult` (counters, logs, whether
to go on); the spool state after the call is decided here alone:

1. the write succeeds -> the entry is removed (``WRITTEN``);
2. MLflow rejected the record (``ErrorKind.REJECTED``) -> moved to ``rejected/`` (``REJECTED``);
3. an outage or refused credentials (``TRANSIENT``, ``AUTH``) -> released for a later pass
   (``RELEASED``);
4. an unexpected error (``ERROR``): without ``note_error`` released (``RELEASED``); with it,
   the failure is counted (``note_error(name, exc)`` returns the failures so far) and the entry is
   released to wait for its backoff (``BACKOFF``), or moved to ``rejected/`` once it failed
   ``error_attempts`` times (``REJECTED``, with ``kind`` ``ERROR``).

Never raises for a failed write; a spool I/O error (rare: the spool handles its own) propagates.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from otel_mlflow._common.faults import short
from otel_mlflow._delivery.errors import ErrorKind, classify_error
from otel_mlflow._delivery.spool import Spool
from otel_mlflow._delivery.spool_entry import SpoolEntry


class Outcome(enum.Enum):
    WRITTEN = "written"
    RELEASED = "released"
    REJECTED = "rejected"
    BACKOFF = "backoff"


@dataclass(frozen=True)
class EntryResult:
    """What happened to one entry; ``kind`` and ``error`` are None when it was written."""

    outcome: Outcome
    kind: ErrorKind | None = None
    error: BaseException | None = None


def replay_entry(
    spool: Spool,
    entry: SpoolEntry,
    write: Callable[[Any], None],
    *,
    describe: Callable[[BaseException], str] = short,
    note_error: Callable[[str, BaseException], int] | None = None,
    error_attempts: int = 1,
) -> EntryResult:
    """Write the claimed ``entry`` with ``write(record)`` and settle it in ``spool`` (module doc).

    ``describe(exc)`` gives the reason stored beside a rejected entry.
    """
    try:
        write(entry.record)
    except Exception as exc:  # noqa: BLE001 - classified below, never raised
        kind = classify_error(exc)
        if kind is ErrorKind.REJECTED:
            spool.reject(entry, describe(exc))
            return EntryResult(Outcome.REJECTED, kind, exc)
        if kind is ErrorKind.ERROR and note_error is not None:
            failures = note_error(entry.name, exc)
            if failures >= error_attempts:
                spool.reject(
                    entry, f"{describe(exc)}; failed {failures} times with an unexpected error"
                )
                return EntryResult(Outcome.REJECTED, kind, exc)
            spool.release(entry)
            return EntryResult(Outcome.BACKOFF, kind, exc)
        spool.release(entry)
        return EntryResult(Outcome.RELEASED, kind, exc)
    spool.remove(entry)
    return EntryResult(Outcome.WRITTEN)
