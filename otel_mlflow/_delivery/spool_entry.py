"""The spool's entry format: file names, the JSON envelope, and the entry types.

An entry is one file ``<time_ns>-<pid>-<seq>-<trace id>.trace.json`` (names sort oldest first)
holding a JSON envelope: ``format`` (``FORMAT_VERSION``), ``trace_id``, ``experiment_name``,
``link_traces`` (what the exporter meant the record for; never the tracking URI, so never a
credential), ``spooled_at`` and ``record``, the record's own JSON text. The spool never knows the
record's type: it stores ``record.to_json()`` and hands the text to the caller's ``loads``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

FORMAT_VERSION = 1
SUFFIX = ".trace.json"
TMP_PREFIX = ".tmp-"


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


def encode_entry(
    record: SpoolRecord, *, experiment_name: str | None, link_traces: bool | None
) -> tuple[str, bytes]:
    """``(trace id, envelope bytes)`` for ``record``."""
    body = record.to_json()
    trace_id = str(record.trace_id)
    envelope = {
        "format": FORMAT_VERSION,
        "trace_id": trace_id,
        "experiment_name": experiment_name,
        "link_traces": link_traces,
        "spooled_at": time.time(),
        "record": body if isinstance(body, str) else body.decode("utf-8"),
    }
    return trace_id, json.dumps(envelope, ensure_ascii=False).encode("utf-8")


def entry_name(seq: int, trace_id: str) -> str:
    """Time first: names sort oldest first; pid + sequence keep them unique."""
    return f"{time.time_ns():020d}-{os.getpid()}-{seq:06d}-{trace_id[:32]}{SUFFIX}"


def decode_entry(data: bytes) -> dict[str, Any]:
    """The envelope of an entry file; ValueError when it is not one."""
    envelope = json.loads(data.decode("utf-8"))
    if not isinstance(envelope, dict) or "record" not in envelope:
        raise ValueError("not a spool entry")
    return envelope


def is_entry_name(name: str) -> bool:
    return name.endswith(SUFFIX) and not name.startswith(".")


def entry_meta(entry: SpoolEntry) -> Mapping[str, Any]:
    """The exporter settings stored with an entry (for logs and tests)."""
    return {"experiment_name": entry.experiment_name, "link_traces": entry.link_traces}
