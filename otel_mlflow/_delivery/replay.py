"""One replay pass over the spool, straight to MLflow (``otel-mlflow replay``).

Separate from ``spool`` (the on-disk store) because it writes through ``_sink.runs``; each entry
is settled by the one replay rule (``replay_entry``), the same the exporter's supervisor uses.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from otel_mlflow._common import faults as _faults
from otel_mlflow._common.settings import resolve_tracking_uri
from otel_mlflow._delivery.errors import ErrorKind
from otel_mlflow._delivery.replay_entry import Outcome, replay_entry
from otel_mlflow._delivery.spool import Spool
from otel_mlflow._delivery.spool_entry import ReplayResult, SpoolEntry
from otel_mlflow._delivery.write_call import write_with_attempt

_logger = logging.getLogger(__name__)


def replay(
    spool_dir: str | os.PathLike[str] | None = None,
    tracking_uri: str | None = None,
    on_progress: Callable[[int, int | None], None] | None = None,
    *,
    writer_factory: Callable[[str, str | None, bool], Callable[[Any], None]] | None = None,
    include_rejected: bool = False,
    loads: Callable[[str], Any] | None = None,
) -> ReplayResult:
    """Write every spooled trace to MLflow now (``otel-mlflow replay``); never raises.

    ``on_progress(done, total)`` is called after each entry. Entries that fail stay in the spool
    (``remaining``) or, when MLflow rejected them as invalid, move to ``rejected/`` (``failed``).
    The first connection failure ends the pass: the rest stays for the next replay.
    Entries in ``rejected/`` are never retried automatically (not by the exporter, not by a
    plain replay); ``include_rejected`` first moves them back into the queue, for a retry after
    the cause was fixed (a newer MLflow server, a changed limit); those MLflow still refuses go
    back to ``rejected/``.
    ``writer_factory(tracking_uri, experiment_name, link_traces)`` builds the write function
    (default: ``MlflowWriter(...).write``, one per experiment found in the spool); ``loads``
    turns an entry's JSON text back into the record that writer takes (default:
    ``TraceRecord.from_json``).
    """
    uri = resolve_tracking_uri(tracking_uri)
    # Opening releases claims of dead processes.
    spool = Spool(spool_dir, tracking_uri=uri, loads=loads or _default_loads)
    if include_rejected:
        spool.restore_rejected()
    factory = writer_factory or _default_writer_factory
    writers: dict[tuple[str | None, bool], Callable[..., None]] = {}
    total = spool.pending()
    written = failed = done = 0
    skip: set[str] = set()
    try:
        if on_progress is not None:
            _call_progress(on_progress, 0, total)
        while True:
            entry = spool.claim_next(skip)
            if entry is None:
                break
            result = replay_entry(
                spool, entry, _entry_writer(entry, writers, factory, uri),
                describe=_faults.describe,
            )
            if result.outcome is Outcome.WRITTEN:
                written += 1
            else:
                failed += 1
                if result.outcome is not Outcome.REJECTED:
                    skip.add(entry.name)
                    assert result.error is not None
                    _logger.warning(
                        "otel_mlflow: replay of trace %s failed (%s)",
                        entry.trace_id, _faults.describe(result.error),
                    )
                    if result.kind in (ErrorKind.TRANSIENT, ErrorKind.AUTH):
                        break
            done += 1
            if on_progress is not None:
                _call_progress(on_progress, done, total)
    finally:
        remaining = spool.pending()
        rejected = spool.rejected_count()
        spool.close()
    return ReplayResult(written=written, failed=failed, remaining=remaining, rejected=rejected)


def _entry_writer(
    entry: SpoolEntry,
    writers: dict[tuple[str | None, bool], Callable[..., None]],
    factory: Callable[[str, str | None, bool], Callable[[Any], None]],
    uri: str,
) -> Callable[[Any], None]:
    """The write for ``entry``'s experiment; the writer is built inside the write, so a failing
    ``factory`` is classified like a failing write."""
    key = (entry.experiment_name, True if entry.link_traces is None else entry.link_traces)

    def write(record: Any) -> None:
        writer = writers.get(key)
        if writer is None:
            writer = writers[key] = factory(uri, key[0], key[1])
        write_with_attempt(writer, record, 1)

    return write


def _call_progress(cb: Callable[[int, int | None], None], done: int, total: int | None) -> None:
    try:
        cb(done, total)
    except Exception as exc:  # noqa: BLE001 - a broken progress bar must not stop a replay
        _faults.report("spool.progress", exc)


def _default_loads(text: str) -> Any:
    from otel_mlflow._record import TraceRecord  # the record type MlflowWriter writes

    return TraceRecord.from_json(text)


def _default_writer_factory(
    tracking_uri: str, experiment_name: str | None, link_traces: bool
) -> Callable[[Any], None]:
    from otel_mlflow._sink.runs import MlflowWriter

    return MlflowWriter(tracking_uri, experiment_name, link_traces).write
