"""The durable on-disk spool: finished traces that could not be written to MLflow yet.

One file per trace record, written atomically (temporary file, ``fsync``, ``rename``, directory
``fsync``), so a ``kill -9`` of the app at any moment leaves either a complete entry or none; a
complete temporary file left by a kill between ``fsync`` and ``rename`` is recovered on the next
start. Entries are replayed oldest first, by :class:`otel_mlflow._delivery.workers.Delivery` when MLflow is
reachable again (also by a new process started on the same directory) and by
``otel-mlflow replay`` (:func:`otel_mlflow._delivery.replay.replay`).

Where: ``otel_mlflow._delivery.spool_dir`` (argument > ``OTEL_MLFLOW_SPOOL_DIR`` > a cache
directory per tracking URI). The entry format: ``spool_entry``; claims shared by processes:
``spool_claims``. The spool never imports the record type: it stores ``record.to_json()`` and
decodes with the caller's ``loads`` (without one, ``entry.record`` is the record's JSON text).

Limits and safety:

- Directory mode 0700, files 0600 (a trace holds prompts and outputs).
- Bounded by ``spool_max_bytes`` (``OTEL_MLFLOW_SPOOL_MAX_BYTES``, default 512 MiB). When full,
  the OLDEST entries are deleted to make room, with an ERROR log line and the ``dropped`` counter
  (also ``fault_counts()["spool.dropped"]``); nothing is dropped silently.
- An entry that cannot be parsed is moved to ``quarantine/`` with a log line; replay never crashes
  on it. An entry MLflow rejected as invalid (4xx other than auth), or that kept failing with an
  unexpected error (``Delivery``'s ``error_attempts``), is moved to ``rejected/`` with an ERROR
  line, so one bad record cannot block the others forever. Nothing retries ``rejected/``
  automatically; ``replay(include_rejected=True)`` (``otel-mlflow replay --include-rejected``)
  puts its entries back in line first.
- Log lines quoting an exception are redacted (``_faults.describe``).
- Several processes may share a directory: an entry is claimed before it is written
  (``spool_claims``); claims of dead processes (or closed spools) are released on the next start.
- Entries never hold MLflow credentials: the tracking URI is not stored, only the experiment name
  and the link-traces switch the record was meant for.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from otel_mlflow._common import faults as _faults
from otel_mlflow._common import settings as _config
from otel_mlflow._delivery.spool_claims import (
    dead_writer_tmp,
    forget_token,
    new_claim_suffix,
    stale_claim,
)
from otel_mlflow._delivery.spool_dir import fsync_dir, make_private_dir, resolve_spool_dir
from otel_mlflow._delivery.threads import register_fork_hook
from otel_mlflow._delivery.spool_entry import (
    SUFFIX,
    TMP_PREFIX,
    SpoolEntry,
    SpoolRecord,
    decode_entry,
    encode_entry,
    entry_name,
    is_entry_name,
)

_logger = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 512 * 1024 * 1024
QUARANTINE_DIR = "quarantine"
REJECTED_DIR = "rejected"
_DROP_LOG_INTERVAL_SECONDS = 10.0


class Spool:
    """A bounded directory of trace records waiting for MLflow. Thread-safe; see the module doc.

    ``meta`` (``experiment_name``, ``link_traces``) is stored with every entry so a replay by
    another process writes the record where the exporter meant to.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
        *,
        tracking_uri: str | None = None,
        max_bytes: int | None = None,
        experiment_name: str | None = None,
        link_traces: bool | None = None,
        loads: Callable[[str], Any] | None = None,
    ) -> None:
        self.directory = resolve_spool_dir(directory, tracking_uri)
        if max_bytes is None:
            max_bytes = _config.env_int(_config.SPOOL_MAX_BYTES, DEFAULT_MAX_BYTES)
        self.max_bytes = max(int(max_bytes), 1)
        self.experiment_name = experiment_name
        self.link_traces = link_traces
        self._loads: Callable[[str], Any] = loads or str
        self._token, self._claim_suffix = new_claim_suffix()
        self._lock = threading.Lock()
        self._seq = 0
        self._bytes: int | None = None
        self.dropped = 0
        self.quarantined = 0
        self.rejected = 0
        self._drops_unlogged = 0
        self._last_drop_log = 0.0
        register_fork_hook(self.restart_in_child, "spool.fork")
        self._ready = False
        try:
            self._prepare()
        except OSError as exc:
            _faults.report("spool.open", exc)

    def restart_in_child(self) -> None:
        """After ``os.fork()``, in the child: a fresh lock and a claim suffix of its own.

        The parent's claims keep the parent's pid and token, so the child never releases (and
        re-writes) an entry the parent is writing, and its own claims are released by a
        ``recover()`` elsewhere once the child exits; the parent's counters are not inherited.
        """
        self._token, self._claim_suffix = new_claim_suffix()
        self._lock = threading.Lock()
        self._bytes = None

    # --- setup -------------------------------------------------------------------------------
    def _prepare(self) -> None:
        make_private_dir(self.directory)
        self._recover()
        self._ready = True

    def _ensure_ready(self) -> None:
        if not self._ready:
            self._prepare()

    def recover(self) -> None:
        """Release claims of dead processes (and closed spools); never raises."""
        try:
            self._recover()
        except OSError as exc:
            _faults.report("spool.recover", exc)

    def _recover(self) -> None:
        """Release stale claims and finish (or delete) temporary files left by a dead writer."""
        for path in list(self.directory.iterdir()):
            base = stale_claim(path.name)
            if base is not None:
                self._rename_quietly(path, self.directory / base)
            elif dead_writer_tmp(path.name, TMP_PREFIX):
                self._recover_tmp(path)

    def _recover_tmp(self, path: Path) -> None:
        # A kill between fsync and rename leaves a complete temporary file: keep it.
        final = path.name[len(TMP_PREFIX) :].split("-", 1)[1] if "-" in path.name else ""
        try:
            decode_entry(path.read_bytes())
        except (OSError, ValueError, UnicodeDecodeError):
            try:
                path.unlink()
            except OSError:
                pass
            return
        if final.endswith(SUFFIX):
            self._rename_quietly(path, self.directory / final)

    @staticmethod
    def _rename_quietly(src: Path, dst: Path) -> bool:
        try:
            os.replace(src, dst)
            return True
        except OSError:
            return False

    # --- inventory ---------------------------------------------------------------------------
    def _entries(self) -> list[Path]:
        try:
            names = [p for p in self.directory.iterdir() if is_entry_name(p.name)]
        except OSError:
            return []
        names.sort(key=lambda p: p.name)
        return names

    def has_entry(self, name: str) -> bool:
        """True when the entry ``name`` waits in the replay queue (not claimed, not set aside)."""
        return (self.directory / name).exists()

    def pending(self) -> int:
        """Entries waiting for replay (claimed ones excluded)."""
        return len(self._entries())

    def size_bytes(self) -> int:
        """Bytes held by waiting and claimed entries (what the cap applies to)."""
        total = 0
        try:
            for path in self.directory.iterdir():
                if SUFFIX in path.name and not path.name.startswith("."):
                    try:
                        total += path.stat().st_size
                    except OSError:
                        pass
        except OSError:
            pass
        return total

    # --- writing -----------------------------------------------------------------------------
    def put(self, record: SpoolRecord, folder: str | None = None) -> Path | None:
        """Write ``record`` durably and return the entry's path; None (logged, counted) when the
        disk refused it.

        ``folder`` (``REJECTED_DIR``) files it outside the replay queue, next to it.
        """
        try:
            trace_id, data = encode_entry(
                record, experiment_name=self.experiment_name, link_traces=self.link_traces
            )
            with self._lock:
                self._ensure_ready()
                self._make_room(len(data))
                self._seq += 1
                name = entry_name(self._seq, trace_id)
            if folder is not None:
                make_private_dir(self.directory / folder)
                self._write_atomic(name, data, self.directory / folder)
                return self.directory / folder / name
            self._write_atomic(name, data, self.directory)
            with self._lock:
                if self._bytes is not None:
                    self._bytes += len(data)
            return self.directory / name
        except Exception as exc:  # noqa: BLE001 - a full disk must not reach the app
            _faults.report("spool.put", exc)
            _logger.error(
                "otel_mlflow: could not spool trace %s to %s: %s",
                getattr(record, "trace_id", "?"), self.directory, _faults.describe(exc),
            )
            return None

    def discard(self, path: Path) -> bool:
        """Delete a waiting entry (its trace reached MLflow after all); False when it is gone
        or claimed by a replay (which then finds the run written and skips it)."""
        try:
            size = path.stat().st_size
            path.unlink()
        except OSError:
            return False
        with self._lock:
            if self._bytes is not None:
                self._bytes = max(self._bytes - size, 0)
        return True

    def rejected_count(self) -> int:
        """Entries set aside in ``rejected/``."""
        try:
            return sum(1 for p in (self.directory / REJECTED_DIR).iterdir()
                       if p.name.endswith(SUFFIX))
        except OSError:
            return 0

    def restore_rejected(self) -> int:
        """Move every entry of ``rejected/`` back into the replay queue (``otel-mlflow replay
        --include-rejected``); returns how many. Entries keep their names, so their age order."""
        folder = self.directory / REJECTED_DIR
        moved = 0
        try:
            paths = sorted(p for p in folder.iterdir() if p.name.endswith(SUFFIX))
        except OSError:
            return 0
        for path in paths:
            if self._rename_quietly(path, self.directory / path.name):
                moved += 1
        if moved:
            with self._lock:
                self._bytes = None
            fsync_dir(self.directory)
        return moved

    def _write_atomic(self, name: str, data: bytes, directory: Path) -> None:
        tmp = directory / f"{TMP_PREFIX}{os.getpid()}-{name}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, directory / name)
        fsync_dir(directory)

    def _make_room(self, incoming: int) -> None:
        """Drop the oldest entries until ``incoming`` bytes fit under the cap (lock held)."""
        if self._bytes is None or self._bytes + incoming > self.max_bytes:
            self._bytes = self.size_bytes()  # re-measure: other processes share the directory
        if self._bytes + incoming <= self.max_bytes:
            return
        dropped = 0
        for path in self._entries():
            if self._bytes + incoming <= self.max_bytes:
                break
            try:
                size = path.stat().st_size
                path.unlink()
            except OSError:
                continue
            self._bytes -= size
            dropped += 1
        if dropped:
            self.dropped += dropped
            self._drops_unlogged += dropped
            for _ in range(dropped):
                _faults.report("spool.dropped", message="spool full; oldest trace dropped")
            now = time.monotonic()
            if now - self._last_drop_log >= _DROP_LOG_INTERVAL_SECONDS:
                _logger.error(
                    "otel_mlflow: spool %s is full (max %d bytes): dropped the %d oldest trace(s) "
                    "(%d in total); raise OTEL_MLFLOW_SPOOL_MAX_BYTES or bring MLflow back",
                    self.directory, self.max_bytes, self._drops_unlogged, self.dropped,
                )
                self._drops_unlogged = 0
                self._last_drop_log = now

    # --- reading -----------------------------------------------------------------------------
    def claim_next(self, skip: set[str] | None = None) -> SpoolEntry | None:
        """Claim and load the oldest waiting entry (quarantining unreadable ones), or None."""
        for path in self._entries():
            if skip and path.name in skip:
                continue
            claimed = path.with_name(path.name + self._claim_suffix)
            if not self._rename_quietly(path, claimed):
                continue  # another process claimed it first
            entry = self._load(claimed, path.name)
            if entry is not None:
                return entry
        return None

    def _load(self, claimed: Path, name: str) -> SpoolEntry | None:
        try:
            data = claimed.read_bytes()
            envelope = decode_entry(data)
            record = self._loads(envelope["record"])
            link = envelope.get("link_traces")
            return SpoolEntry(
                path=claimed,
                name=name,
                trace_id=str(envelope.get("trace_id") or getattr(record, "trace_id", "")),
                record=record,
                experiment_name=envelope.get("experiment_name"),
                link_traces=None if link is None else bool(link),
                size=len(data),
            )
        except Exception as exc:  # noqa: BLE001 - a corrupt entry never stops a replay
            self._set_aside(claimed, name, QUARANTINE_DIR)
            self.quarantined += 1
            _faults.report("spool.corrupt", exc)
            _logger.warning(
                "otel_mlflow: unreadable spool entry %s moved to %s (%s)",
                name, self.directory / QUARANTINE_DIR, _faults.describe(exc),
            )
            return None

    def _set_aside(self, claimed: Path, name: str, folder: str) -> Path:
        target_dir = self.directory / folder
        try:
            make_private_dir(target_dir)
        except OSError:
            pass
        target = target_dir / name
        self._rename_quietly(claimed, target)
        with self._lock:
            self._bytes = None
        return target

    def release(self, entry: SpoolEntry) -> None:
        """Put a claimed entry back (it stays first in line)."""
        self._rename_quietly(entry.path, self.directory / entry.name)

    def remove(self, entry: SpoolEntry) -> None:
        """Delete a claimed entry that was written to MLflow."""
        try:
            entry.path.unlink()
        except FileNotFoundError:
            pass  # released by shutdown meanwhile and replayed elsewhere: the writer is idempotent
        with self._lock:
            if self._bytes is not None:
                self._bytes = max(self._bytes - entry.size, 0)

    def reject(self, entry: SpoolEntry, reason: str) -> Path:
        """Move an entry MLflow refused as invalid to ``rejected/`` (kept on disk, logged)."""
        target = self._set_aside(entry.path, entry.name, REJECTED_DIR)
        self.rejected += 1
        _logger.error(
            "otel_mlflow: MLflow rejected trace %s (%s); kept in %s",
            entry.trace_id, reason, target,
        )
        return target

    def iter_claims(self) -> Iterator[Path]:
        """Files this spool instance holds claimed right now."""
        try:
            for path in self.directory.iterdir():
                if path.name.endswith(self._claim_suffix):
                    yield path
        except OSError:
            return

    def release_all_claims(self) -> int:
        """Release every claim of this instance (shutdown while a write hangs)."""
        count = 0
        for path in list(self.iter_claims()):
            base = path.name[: -len(self._claim_suffix)]
            if self._rename_quietly(path, self.directory / base):
                count += 1
        return count

    def close(self) -> None:
        self.release_all_claims()
        forget_token(self._token)
