"""The durable on-disk spool: finished traces that could not be written to MLflow yet.

One file per trace record, written atomically (temporary file, ``fsync``, ``rename``, directory
``fsync``), so a ``kill -9`` of the app at any moment leaves either a complete entry or none; a
complete temporary file left by a kill between ``fsync`` and ``rename`` is recovered on the next
start. Entries are replayed oldest first, by :class:`otel_mlflow._delivery.workers.Delivery` when MLflow is
reachable again (also by a new process started on the same directory) and by
``otel-mlflow replay`` (:func:`otel_mlflow._delivery.replay.replay`).

Directory, in priority order:

1. ``spool_dir`` argument;
2. ``OTEL_MLFLOW_SPOOL_DIR``;
3. ``$XDG_CACHE_HOME`` (else ``~/.cache``) ``/otel_mlflow/spool/<hash of the tracking URI>``;
4. ``./.otel_mlflow_spool/<hash>`` in the working directory when the cache directory cannot be
   created.

The hash is taken over the tracking URI without credentials, with a relative ``sqlite:///`` path
made absolute, so each store has its own spool and a password change keeps the same spool.

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
- Several processes may share a directory: an entry is claimed by renaming it to
  ``<name>.claim-<pid>-<token>`` before it is written; claims of dead processes (or of closed
  spools in this process) are released on the next start.
- Entries never hold MLflow credentials: the tracking URI is not stored, only the experiment name
  and the link-traces switch the record was meant for.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from otel_mlflow._common import settings as _config
from otel_mlflow._common.settings import resolve_tracking_uri

from otel_mlflow._common import faults as _faults

_logger = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 512 * 1024 * 1024
FORMAT_VERSION = 1
_SUFFIX = ".trace.json"
_TMP_PREFIX = ".tmp-"
_CLAIM_MARK = ".claim-"
QUARANTINE_DIR = "quarantine"
REJECTED_DIR = "rejected"
_DROP_LOG_INTERVAL_SECONDS = 10.0

# Claim tokens of spools open in this process; a claim carrying our pid but a token not in this
# set belongs to a spool that was closed (or crashed) here and may be released.
_live_tokens: set[str] = set()
_live_lock = threading.Lock()


def _reinit_module_in_child() -> None:
    # A parent thread may have held the lock at fork time; the child starts with a free one.
    global _live_lock
    _live_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reinit_module_in_child)


def _register_fork_hook(spool: Spool) -> None:
    """Restart ``spool`` in a forked child, through a weakref (a closed spool is not kept)."""
    if not hasattr(os, "register_at_fork"):
        return
    ref = weakref.ref(spool)

    def _after_in_child() -> None:
        live = ref()
        if live is not None:
            live.restart_in_child()

    os.register_at_fork(after_in_child=_after_in_child)


class SpoolRecord(Protocol):
    """What the spool needs from a trace record (``otel_mlflow._record.TraceRecord``)."""

    @property
    def trace_id(self) -> str: ...

    def to_json(self) -> str: ...


@dataclass(frozen=True)
class SpoolEntry:
    """One claimed entry: the record, where it came from and what it was meant for."""

    path: Path  # the claimed file
    name: str  # the entry's file name before the claim
    trace_id: str
    record: Any
    experiment_name: str | None
    link_traces: bool | None
    size: int


@dataclass(frozen=True)
class ReplayResult:
    """Outcome of one replay pass: records written, failed (kept or set aside), left waiting,
    and how many entries sit in ``rejected/`` afterwards (never retried automatically)."""

    written: int
    failed: int
    remaining: int
    rejected: int = 0


def _load_record(text: str) -> Any:
    from otel_mlflow._record import TraceRecord

    return TraceRecord.from_json(text)


def _normalize_uri(tracking_uri: str) -> str:
    """The URI without userinfo; a relative sqlite path made absolute (it depends on the cwd)."""
    uri = tracking_uri.strip()
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        rel = uri[len("sqlite:///") :]
        return "sqlite:///" + os.path.abspath(rel)
    try:
        parts = urlsplit(uri)
        if parts.username is not None or parts.password is not None:
            host = parts.hostname or ""
            if parts.port is not None:
                host = f"{host}:{parts.port}"
            uri = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    except ValueError:
        pass
    return uri


def default_spool_dir(tracking_uri: str | None = None) -> Path:
    """The spool directory for a tracking URI when none is configured (see the module doc)."""
    uri = _normalize_uri(resolve_tracking_uri(tracking_uri))
    digest = hashlib.sha256(uri.encode("utf-8")).hexdigest()[:16]
    cache = _config.env_str(_config.XDG_CACHE_HOME) or os.path.join(
        os.path.expanduser("~"), ".cache"
    )
    candidate = Path(cache) / "otel_mlflow" / "spool" / digest
    try:
        _make_private_dir(candidate)
        return candidate
    except OSError:
        return Path.cwd() / ".otel_mlflow_spool" / digest


def resolve_spool_dir(spool_dir: str | os.PathLike[str] | None, tracking_uri: str | None) -> Path:
    """Argument > ``OTEL_MLFLOW_SPOOL_DIR`` > :func:`default_spool_dir`."""
    if spool_dir:
        return Path(spool_dir).expanduser()
    env = _config.env_str(_config.SPOOL_DIR)
    if env:
        return Path(env).expanduser()
    return default_spool_dir(tracking_uri)


def _make_private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    # mkdir's mode is masked by the umask and ignored for existing directories.
    if (path.stat().st_mode & 0o777) != 0o700:
        os.chmod(path, 0o700)


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


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
        self._loads = loads or _load_record
        self._token = uuid.uuid4().hex[:12]
        self._claim_suffix = f"{_CLAIM_MARK}{os.getpid()}-{self._token}"
        self._lock = threading.Lock()
        self._seq = 0
        self._bytes: int | None = None
        self.dropped = 0
        self.quarantined = 0
        self.rejected = 0
        self._drops_unlogged = 0
        self._last_drop_log = 0.0
        with _live_lock:
            _live_tokens.add(self._token)
        _register_fork_hook(self)
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
        self._token = uuid.uuid4().hex[:12]
        self._claim_suffix = f"{_CLAIM_MARK}{os.getpid()}-{self._token}"
        self._lock = threading.Lock()
        self._bytes = None
        with _live_lock:
            _live_tokens.add(self._token)

    # --- setup -------------------------------------------------------------------------------
    def _prepare(self) -> None:
        _make_private_dir(self.directory)
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
            name = path.name
            if _CLAIM_MARK in name:
                base, _, owner = name.partition(_CLAIM_MARK)
                pid_text, _, token = owner.partition("-")
                pid = int(pid_text) if pid_text.isdigit() else -1
                stale = not _pid_alive(pid) or (
                    pid == os.getpid() and token not in _live_tokens_snapshot()
                )
                if stale:
                    self._rename_quietly(path, self.directory / base)
            elif name.startswith(_TMP_PREFIX):
                pid_text = name[len(_TMP_PREFIX) :].split("-", 1)[0]
                pid = int(pid_text) if pid_text.isdigit() else -1
                if pid != os.getpid() and not _pid_alive(pid):
                    self._recover_tmp(path)

    def _recover_tmp(self, path: Path) -> None:
        # A kill between fsync and rename leaves a complete temporary file: keep it.
        final = path.name[len(_TMP_PREFIX) :].split("-", 1)[1] if "-" in path.name else ""
        try:
            data = path.read_bytes()
            json.loads(data.decode("utf-8"))
        except (OSError, ValueError, UnicodeDecodeError):
            try:
                path.unlink()
            except OSError:
                pass
            return
        if final.endswith(_SUFFIX):
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
            names = [
                p for p in self.directory.iterdir()
                if p.name.endswith(_SUFFIX) and not p.name.startswith(".")
            ]
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
                if _SUFFIX in path.name and not path.name.startswith("."):
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
            body = record.to_json()
            trace_id = str(record.trace_id)
            envelope = {
                "format": FORMAT_VERSION,
                "trace_id": trace_id,
                "experiment_name": self.experiment_name,
                "link_traces": self.link_traces,
                "spooled_at": time.time(),
                "record": body if isinstance(body, str) else body.decode("utf-8"),
            }
            data = json.dumps(envelope, ensure_ascii=False).encode("utf-8")
            with self._lock:
                self._ensure_ready()
                self._make_room(len(data))
                self._seq += 1
                # Time first: names sort oldest first; pid + sequence keep them unique.
                name = (
                    f"{time.time_ns():020d}-{os.getpid()}-{self._seq:06d}-{trace_id[:32]}{_SUFFIX}"
                )
            if folder is not None:
                _make_private_dir(self.directory / folder)
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
                       if p.name.endswith(_SUFFIX))
        except OSError:
            return 0

    def restore_rejected(self) -> int:
        """Move every entry of ``rejected/`` back into the replay queue (``otel-mlflow replay
        --include-rejected``); returns how many. Entries keep their names, so their age order."""
        folder = self.directory / REJECTED_DIR
        moved = 0
        try:
            paths = sorted(p for p in folder.iterdir() if p.name.endswith(_SUFFIX))
        except OSError:
            return 0
        for path in paths:
            if self._rename_quietly(path, self.directory / path.name):
                moved += 1
        if moved:
            with self._lock:
                self._bytes = None
            _fsync_dir(self.directory)
        return moved

    def _write_atomic(self, name: str, data: bytes, directory: Path) -> None:
        tmp = directory / f"{_TMP_PREFIX}{os.getpid()}-{name}"
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
        _fsync_dir(directory)

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
            envelope = json.loads(data.decode("utf-8"))
            if not isinstance(envelope, dict) or "record" not in envelope:
                raise ValueError("not a spool entry")
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
            _make_private_dir(target_dir)
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
        with _live_lock:
            _live_tokens.discard(self._token)


def _live_tokens_snapshot() -> set[str]:
    with _live_lock:
        return set(_live_tokens)


def entry_meta(entry: SpoolEntry) -> Mapping[str, Any]:
    """The exporter settings stored with an entry (for logs and tests)."""
    return {"experiment_name": entry.experiment_name, "link_traces": entry.link_traces}
