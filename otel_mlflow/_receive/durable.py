"""The receiver's durable span log: requests are on disk (fsynced) before they are acknowledged.

Layout: ``<spool dir>/receiver/seg-<20 digits>.log``, append-only segments of records::

    header: length (4 bytes, big endian), crc32 of the body (4), type (1)
    SPANS body: n (4) + n distinct trace ids (16 bytes each) + ExportTraceServiceRequest bytes
    DONE  body: trace ids (16 bytes each) that left the receiver for good

Rules:

- ``append()`` writes one SPANS record and returns once it is fsynced (group commit: requests
  arriving together share one ``fsync``). Only then does the receiver answer 200, so a
  ``kill -9`` loses nothing it acknowledged; a torn record at the tail (a kill mid-write, never
  acknowledged) fails its length or crc check and is cut off at the next start.
- ``release(ids)`` is called when a trace was written to MLflow (or left for good: sampled out,
  rejected by MLflow, late spans of a written trace). It appends a DONE record (not fsynced: a
  lost marker only means the trace is offered again after a restart, and the writer's lookup by
  ``otel.trace_id`` makes that a no-op) and deletes every closed segment whose traces are all
  released and that the reader has passed.
- ``read()`` yields SPANS records in order, oldest first, only up to what is fsynced; the
  receiver's feeder hands them to the exporter at the pace the writer drains (the backlog waits
  here, on disk, not in memory).
- A new ``SpanLog`` on a directory with segments (a restart) reads their trace ids and DONE
  markers, deletes fully released segments and offers the rest again from the oldest
  (``reloaded`` holds their trace ids: the receiver writes them as retries, with the lookup).
- Segments roll over at ``segment_bytes``; ``size_bytes`` (all segments) is what the
  receiver compares with its backlog cap (429 beyond it).

Memory: a set of trace ids per segment for the traces not yet released (about 100 bytes per
held trace), plus a bounded set of recently released ids (late spans of a written trace are
released at once).
"""

from __future__ import annotations

import os
import struct
import threading
import zlib
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

SPANS = 1
DONE = 2
_HEADER = struct.Struct(">IIB")
_COUNT = struct.Struct(">I")
_ID_BYTES = 16
_PREFIX = "seg-"
_SUFFIX = ".log"
DEFAULT_SEGMENT_BYTES = 8 * 1024 * 1024
_MAX_RECORD_BYTES = 1 << 30
_MAX_RELEASED_IDS = 100_000


@dataclass
class _Segment:
    seq: int
    path: Path
    size: int = 0
    synced: int = 0
    closed: bool = False
    read_done: bool = False
    pending: set[int] = field(default_factory=set)


@dataclass(frozen=True)
class LogRecord:
    """One SPANS record as the reader yields it."""

    trace_ids: tuple[int, ...]
    payload: bytes


def encode_spans(trace_ids: Iterable[int], payload: bytes) -> bytes:
    ids = list(dict.fromkeys(trace_ids))
    body = _COUNT.pack(len(ids)) + b"".join(t.to_bytes(_ID_BYTES, "big") for t in ids) + payload
    return _HEADER.pack(len(body), zlib.crc32(body), SPANS) + body


def encode_done(trace_ids: Iterable[int]) -> bytes:
    body = b"".join(t.to_bytes(_ID_BYTES, "big") for t in trace_ids)
    return _HEADER.pack(len(body), zlib.crc32(body), DONE) + body


def decode_spans_body(body: bytes) -> LogRecord:
    (count,) = _COUNT.unpack_from(body, 0)
    start = _COUNT.size
    end = start + count * _ID_BYTES
    ids = tuple(int.from_bytes(body[i : i + _ID_BYTES], "big") for i in range(start, end, _ID_BYTES))
    return LogRecord(ids, body[end:])


def _ids_of_done(body: bytes) -> Iterator[int]:
    for i in range(0, len(body) - _ID_BYTES + 1, _ID_BYTES):
        yield int.from_bytes(body[i : i + _ID_BYTES], "big")


def scan(path: Path) -> tuple[list[tuple[int, int, bytes]], int]:
    """The valid records of one segment as ``(type, offset, body)`` and the length they cover
    (where a torn or corrupt tail starts)."""
    records: list[tuple[int, int, bytes]] = []
    good = 0
    with open(path, "rb") as handle:
        data = handle.read()
    while good + _HEADER.size <= len(data):
        length, crc, kind = _HEADER.unpack_from(data, good)
        start = good + _HEADER.size
        if length > _MAX_RECORD_BYTES or start + length > len(data):
            break
        body = data[start : start + length]
        if zlib.crc32(body) != crc or kind not in (SPANS, DONE):
            break
        records.append((kind, good, body))
        good = start + length
    return records, good


class SpanLog:
    """The append-only, fsynced span log of one receiver (see the module doc). Thread-safe."""

    def __init__(self, directory: str | os.PathLike[str],
                 segment_bytes: int = DEFAULT_SEGMENT_BYTES) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.segment_bytes = max(int(segment_bytes), 1024)
        self._lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._data = threading.Condition(self._lock)
        self._segments: OrderedDict[int, _Segment] = OrderedDict()
        self._trace_segments: dict[int, set[int]] = {}
        self._released: OrderedDict[int, None] = OrderedDict()
        self._closed = False
        self._retired: list[int] = []  # fds of rolled segments, closed under the sync lock
        self.reloaded: frozenset[int] = frozenset()
        self._reload()
        self._current = self._new_segment(max(self._segments, default=0) + 1)
        self._fd = os.open(self._current.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        _fsync_dir(self.directory)

    # --- start ---------------------------------------------------------------------------------
    def _reload(self) -> None:
        done: set[int] = set()
        found: list[tuple[_Segment, list[tuple[int, int, bytes]]]] = []
        for path in sorted(self.directory.glob(f"{_PREFIX}*{_SUFFIX}")):
            seq_text = path.name[len(_PREFIX) : -len(_SUFFIX)]
            if not seq_text.isdigit():
                continue
            records, good = scan(path)
            if good < path.stat().st_size:
                with open(path, "r+b") as handle:  # cut the torn tail (never acknowledged)
                    handle.truncate(good)
                    os.fsync(handle.fileno())
            seg = _Segment(int(seq_text), path, size=good, synced=good, closed=True)
            found.append((seg, records))
            for kind, _, body in records:
                if kind == DONE:
                    done.update(_ids_of_done(body))
        for seg, records in found:
            for kind, _, body in records:
                if kind == SPANS:
                    seg.pending.update(t for t in decode_spans_body(body).trace_ids
                                       if t not in done)
            self._segments[seg.seq] = seg
            for trace_id in seg.pending:
                self._trace_segments.setdefault(trace_id, set()).add(seg.seq)
        for trace_id in done:
            self._remember_released(trace_id)
        self.reloaded = frozenset(self._trace_segments)
        for seg in list(self._segments.values()):
            if not seg.pending:
                seg.read_done = True
                self._delete(seg)

    def _new_segment(self, seq: int) -> _Segment:
        seg = _Segment(seq, self.directory / f"{_PREFIX}{seq:020d}{_SUFFIX}")
        self._segments[seq] = seg
        return seg

    # --- writing -------------------------------------------------------------------------------
    def append(self, trace_ids: Iterable[int], payload: bytes) -> None:
        """Write one SPANS record; returns once it is on disk (fsynced). Raises ``OSError``."""
        ids = list(dict.fromkeys(trace_ids))
        data = encode_spans(ids, payload)
        with self._lock:
            if self._closed:
                raise OSError("the span log is closed")
            if self._current.size and self._current.size + len(data) > self.segment_bytes:
                self._roll()
            seg = self._current
            _write_all(self._fd, data)
            seg.size += len(data)
            end = seg.size
            for trace_id in ids:
                if trace_id in self._released:
                    continue  # late spans of a trace already written: nothing to hold
                seg.pending.add(trace_id)
                self._trace_segments.setdefault(trace_id, set()).add(seg.seq)
            fd = self._fd
        with self._sync_lock:
            if seg.synced >= end:
                return  # another request's fsync covered this record (group commit)
            with self._lock:
                upto = seg.size if seg is self._current else seg.synced
            if seg is self._current or upto < end:
                os.fsync(fd)
            with self._lock:
                seg.synced = max(seg.synced, upto, end)
                self._data.notify_all()
                retired, self._retired = self._retired, []
            for old in retired:  # no fsync can use them now: we hold the sync lock
                os.close(old)

    def _roll(self) -> None:
        """Under the lock: close the current segment (fsynced) and start the next."""
        os.fsync(self._fd)
        self._retired.append(self._fd)  # an append may be about to fsync it: closed later
        old = self._current
        old.synced = old.size
        old.closed = True
        self._current = self._new_segment(old.seq + 1)
        self._fd = os.open(self._current.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        _fsync_dir(self.directory)
        self._data.notify_all()
        self._maybe_delete(old)

    def release(self, trace_ids: Iterable[int]) -> None:
        """The traces left the receiver for good: DONE marker, segments freed when possible."""
        ids = [t for t in trace_ids if t not in self._released]
        if not ids:
            return
        with self._lock:
            freed: set[int] = set()
            for trace_id in ids:
                self._remember_released(trace_id)
                for seq in self._trace_segments.pop(trace_id, ()):
                    seg = self._segments.get(seq)
                    if seg is not None:
                        seg.pending.discard(trace_id)
                        freed.add(seq)
            if self._closed:
                return
            data = encode_done(ids)
            if self._current.size and self._current.size + len(data) > self.segment_bytes:
                self._roll()
            _write_all(self._fd, data)
            self._current.size += len(data)
            for seq in freed:
                seg = self._segments.get(seq)
                if seg is not None:
                    self._maybe_delete(seg)

    def _remember_released(self, trace_id: int) -> None:
        self._released[trace_id] = None
        while len(self._released) > _MAX_RELEASED_IDS:
            self._released.popitem(last=False)

    def is_released(self, trace_id: int) -> bool:
        return trace_id in self._released

    def _maybe_delete(self, seg: _Segment) -> None:
        if seg.closed and seg.read_done and not seg.pending:
            self._delete(seg)

    def _delete(self, seg: _Segment) -> None:
        self._segments.pop(seg.seq, None)
        try:
            seg.path.unlink()
        except FileNotFoundError:
            pass

    # --- reading -------------------------------------------------------------------------------
    def read(self, stop: threading.Event, poll_seconds: float = 0.2) -> Iterator[LogRecord]:
        """SPANS records in log order, only what is fsynced; waits for more until ``stop``."""
        seq = min(self._segments, default=self._current.seq)
        offset = 0
        handle = None
        try:
            while not stop.is_set():
                with self._lock:
                    seg = self._segments.get(seq)
                    if seg is None:  # deleted meanwhile (cannot happen before it is read)
                        later = [s for s in self._segments if s > seq]
                        if not later:
                            self._data.wait(poll_seconds)
                            continue
                        seq, offset = later[0], 0
                        continue
                    if offset >= seg.synced:
                        if seg.closed and offset >= seg.size:
                            seg.read_done = True
                            self._maybe_delete(seg)
                            nxt = [s for s in self._segments if s > seq]
                            if nxt:
                                if handle is not None:
                                    handle.close()
                                    handle = None
                                seq, offset = nxt[0], 0
                            continue
                        self._data.wait(poll_seconds)
                        continue
                    upto = seg.synced
                if handle is None or handle.name != str(seg.path):
                    if handle is not None:
                        handle.close()
                    handle = open(seg.path, "rb")  # noqa: SIM115 - closed in finally
                handle.seek(offset)
                data = handle.read(upto - offset)
                pos = 0
                while pos + _HEADER.size <= len(data):
                    length, _, kind = _HEADER.unpack_from(data, pos)
                    start = pos + _HEADER.size
                    if start + length > len(data):
                        break
                    if kind == SPANS:
                        yield decode_spans_body(data[start : start + length])
                    pos = start + length
                    if stop.is_set():
                        break
                offset += pos
        finally:
            if handle is not None:
                handle.close()

    # --- state ---------------------------------------------------------------------------------
    def size_bytes(self) -> int:
        with self._lock:
            return sum(seg.size for seg in self._segments.values())

    def held_traces(self) -> int:
        with self._lock:
            return len(self._trace_segments)

    def segments(self) -> int:
        with self._lock:
            return len(self._segments)

    def close(self) -> None:
        """fsync (DONE markers included) and close; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                os.fsync(self._fd)
            finally:
                for fd in (self._fd, *self._retired):
                    os.close(fd)
                self._retired = []
            self._data.notify_all()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


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
