"""The ``TraceRecord`` data model: one trace's contribution to MLflow, immutable and spoolable.

``TraceRecord`` / ``Table`` are frozen dataclasses with a JSON round trip (``to_json`` /
``from_json``) for the on-disk spool; ``merge_batch`` groups active-run records for one target run
into one write. No I/O, no MLflow import.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from otel_mlflow._record.schema import STATUS_ERROR, STATUS_OK, TABLE_COLUMNS

@dataclass(frozen=True)
class Table:
    """An ``mlflow.log_table`` JSON table (pandas ``orient="split"``)."""

    columns: tuple[str, ...] = TABLE_COLUMNS
    rows: tuple[tuple[Any, ...], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"columns": list(self.columns), "data": [list(row) for row in self.rows]}


@dataclass(frozen=True)
class TraceRecord:
    """Everything one trace contributes to MLflow; immutable, JSON round-trippable.

    ``target_run_id`` set means active-run mode: the trace goes into that existing run. A record
    with ``members`` is a batch of active-run traces for one target run (``merge_batch``); its
    own ``trace_id`` is the first member's and its table is the members' rows in order.
    """

    trace_id: str
    run_name: str
    target_run_id: str | None
    experiment_id: str | None
    tags: Mapping[str, str]
    params: Mapping[str, str]
    metrics: Mapping[str, float]
    table: Table
    tree: Mapping[str, Any]
    otlp: bytes
    start_time_ms: int
    end_time_ms: int
    status: str
    partial: bool = False
    members: tuple[TraceRecord, ...] = field(default=())
    # The chain version's facts for the LoggedModel, prompts.json and prompt links (plain JSON;
    # ``otel_mlflow._record.version``); empty when the trace carries no version.
    chain: Mapping[str, Any] = field(default_factory=dict)

    @property
    def traces(self) -> tuple[TraceRecord, ...]:
        """The single traces in this record (itself, or the members of a batch)."""
        return self.members or (self,)

    def to_json(self) -> str:
        return json.dumps(_record_to_dict(self), ensure_ascii=False, allow_nan=True)

    @classmethod
    def from_json(cls, text: str) -> TraceRecord:
        return _record_from_dict(json.loads(text))


def _record_to_dict(rec: TraceRecord) -> dict[str, Any]:
    return {
        "trace_id": rec.trace_id,
        "run_name": rec.run_name,
        "target_run_id": rec.target_run_id,
        "experiment_id": rec.experiment_id,
        "tags": dict(rec.tags),
        "params": dict(rec.params),
        "metrics": dict(rec.metrics),
        "table": rec.table.to_dict(),
        "tree": rec.tree,
        "otlp": base64.b64encode(rec.otlp).decode("ascii"),
        "start_time_ms": rec.start_time_ms,
        "end_time_ms": rec.end_time_ms,
        "status": rec.status,
        "partial": rec.partial,
        "members": [_record_to_dict(m) for m in rec.members],
        "chain": dict(rec.chain),
    }


def _record_from_dict(data: Mapping[str, Any]) -> TraceRecord:
    table = data.get("table") or {}
    return TraceRecord(
        trace_id=str(data["trace_id"]),
        run_name=str(data.get("run_name", "")),
        target_run_id=data.get("target_run_id"),
        experiment_id=data.get("experiment_id"),
        tags={str(k): str(v) for k, v in (data.get("tags") or {}).items()},
        params={str(k): str(v) for k, v in (data.get("params") or {}).items()},
        metrics={str(k): float(v) for k, v in (data.get("metrics") or {}).items()},
        table=Table(
            columns=tuple(table.get("columns") or TABLE_COLUMNS),
            rows=tuple(tuple(row) for row in table.get("data") or ()),
        ),
        tree=data.get("tree") or {},
        otlp=base64.b64decode(data.get("otlp") or ""),
        start_time_ms=int(data.get("start_time_ms", 0)),
        end_time_ms=int(data.get("end_time_ms", 0)),
        status=str(data.get("status", STATUS_OK)),
        partial=bool(data.get("partial", False)),
        members=tuple(_record_from_dict(m) for m in data.get("members") or ()),
        chain=dict(data.get("chain") or {}),
    )


def merge_batch(records: Sequence[TraceRecord]) -> TraceRecord:
    """Several active-run records for the same target run as one batch record (one write).

    The batch's table is the members' rows in order; its metrics/params/tags are the first
    member's (the writer logs each member's metrics as its own step).
    """
    if not records:
        raise ValueError("merge_batch needs at least one record")
    flat = [m for rec in records for m in rec.traces]
    if len(flat) == 1:
        return flat[0]
    first = flat[0]
    return TraceRecord(
        trace_id=first.trace_id,
        run_name=first.run_name,
        target_run_id=first.target_run_id,
        experiment_id=first.experiment_id,
        tags=first.tags,
        params={},
        metrics=first.metrics,
        table=Table(rows=tuple(row for m in flat for row in m.table.rows)),
        tree={},
        otlp=b"",
        start_time_ms=min(m.start_time_ms for m in flat),
        end_time_ms=max(m.end_time_ms for m in flat),
        status=STATUS_ERROR if any(m.status == STATUS_ERROR for m in flat) else STATUS_OK,
        partial=any(m.partial for m in flat),
        members=tuple(flat),
    )
