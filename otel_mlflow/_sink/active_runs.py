"""Active-run mode: a batch of traces written INTO the run the app started (``mlflow.start_run``).

``ActiveRuns(writer).write(record, attempt)`` is what ``MlflowWriter.write`` calls when
``record.target_run_id`` is set; it uses the writer's client, artifact uploads, Traces-view link
and chain-version hooks. What a batch writes (see ``otel_mlflow._sink.runs`` for the whole
contract): one ``log_batch`` with each trace's metrics at its own step (a per-run counter kept in
the tag ``otel_mlflow.trace_count``, read once per run with ``get_run``), the run totals and the
run's version tags; ``llm_calls.json`` appended to (read once per run from the store, then kept in
memory; rows whose ``span_id`` is already in the table are not appended twice); the batch's span
trees as ``span_trees/<first trace id>.json``; the run's ``span_tree.html``; each trace in the
Traces view with its own LoggedModel.

Version tags: ``otel_mlflow.chain.version``, ``otel_mlflow.model_id`` and
``otel_mlflow.app.version`` list what the run's traces were, comma-separated, first seen first, at
most ``_MAX_VERSIONS_LISTED`` each (seeded from the run's tags when a restarted writer meets it).
"""

from __future__ import annotations

import json
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from otel_mlflow._record import (
    ARTIFACT_TABLE,
    ARTIFACT_TREES_DIR,
    TAG_APP_VERSION,
    TAG_CHAIN_VERSION,
    TAG_LOGGED_ARTIFACTS,
    TAG_MODEL_ID,
    TAG_TRACE_COUNT,
    TraceRecord,
)
from otel_mlflow._sink import run_views as _views

_MAX_REMEMBERED_TRACES = 100_000
_MAX_CACHED_RUNS = 16

@dataclass
class _ActiveRunState:
    """What the writer keeps per active run: ids, the next step, the table rows."""

    experiment_id: str
    artifact_uri: str
    next_step: int
    logged_artifacts: list[dict[str, str]]
    table_columns: list[str] | None = None
    table_rows: list[list[Any]] = field(default_factory=list)
    table_span_ids: set[str] = field(default_factory=set)
    steps: dict[str, int] = field(default_factory=dict)
    # Chain versions / LoggedModels / app versions seen in the run, first seen first (run tags).
    versions: dict[str, list[str]] = field(default_factory=dict)
    views: _views.ActiveRunViews = field(default_factory=_views.ActiveRunViews)
    lock: threading.Lock = field(default_factory=threading.Lock)


# Active-run mode: the run's version tags list what its traces were, first seen first, bounded.
_ACTIVE_VERSION_TAGS = (TAG_CHAIN_VERSION, TAG_MODEL_ID, TAG_APP_VERSION)
_MAX_VERSIONS_LISTED = 10


def _version_tags(state: _ActiveRunState, members: Sequence[TraceRecord],
                  plans: Sequence[Any]) -> dict[str, str]:
    """The run's version tags after this batch (all of them, so a retried batch re-sends them:
    the tags ride in the batch's ``log_batch`` and setting a tag again is harmless)."""
    for member, plan in zip(members, plans):
        values = {TAG_CHAIN_VERSION: member.tags.get(TAG_CHAIN_VERSION),
                  TAG_MODEL_ID: plan.model_id, TAG_APP_VERSION: member.tags.get(TAG_APP_VERSION)}
        for key, value in values.items():
            seen = state.versions.setdefault(key, [])
            if value and str(value) not in seen and len(seen) < _MAX_VERSIONS_LISTED:
                seen.append(str(value))
    return {key: ",".join(seen) for key, seen in state.versions.items() if seen}


class ActiveRuns:
    """The active-run half of an ``MlflowWriter`` (module docstring); state per run, bounded."""

    def __init__(self, writer: Any) -> None:
        self._writer = writer  # its ``_lock`` is renewed after a fork (``_sink/fork``)
        self._runs: OrderedDict[str, _ActiveRunState] = OrderedDict()

    def state(self, run_id: str) -> _ActiveRunState:
        with self._writer._lock:
            state = self._runs.get(run_id)
            if state is not None:
                self._runs.move_to_end(run_id)
                return state
        run = self._writer.client.get_run(run_id)
        tags: Mapping[str, str] = run.data.tags
        try:
            logged = json.loads(tags.get(TAG_LOGGED_ARTIFACTS, "[]"))
            if not isinstance(logged, list):
                logged = []
        except ValueError:
            logged = []
        try:
            next_step = int(tags.get(TAG_TRACE_COUNT, "0"))
        except ValueError:
            next_step = 0
        state = _ActiveRunState(
            experiment_id=str(run.info.experiment_id),
            artifact_uri=run.info.artifact_uri,
            next_step=next_step,
            logged_artifacts=logged,
            versions={key: [v for v in tags[key].split(",") if v]
                      for key in _ACTIVE_VERSION_TAGS if tags.get(key)},
        )
        if {"path": ARTIFACT_TABLE, "type": "table"} in logged:
            self._load_table(state)
        state.views = _views.load(self._writer.client, run, next_step, page=self._writer.span_tree_html,
                                  repo=self._writer._repo(state.artifact_uri))
        with self._writer._lock:
            existing = self._runs.get(run_id)
            if existing is not None:
                return existing
            self._runs[run_id] = state
            while len(self._runs) > _MAX_CACHED_RUNS:
                self._runs.popitem(last=False)
        return state

    def _load_table(self, state: _ActiveRunState) -> None:
        """Read the run's existing ``llm_calls.json`` (e.g. logged by the user) to append to it."""
        with tempfile.TemporaryDirectory(prefix="otel_mlflow-") as tmp:
            path = self._writer._repo(state.artifact_uri).download_artifacts(ARTIFACT_TABLE, tmp)
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
        columns = [str(c) for c in data.get("columns") or []]
        state.table_columns = columns
        state.table_rows = [list(row) for row in data.get("data") or []]
        if "span_id" in columns:
            index = columns.index("span_id")
            state.table_span_ids = {
                str(row[index]) for row in state.table_rows if len(row) > index
            }

    def _append_rows(self, state: _ActiveRunState, records: Sequence[TraceRecord]) -> None:
        if state.table_columns is None:
            state.table_columns = list(records[0].table.columns)
        columns = state.table_columns
        for rec in records:
            src = list(rec.table.columns)
            for name in src:
                if name not in columns:
                    # Union of columns: earlier rows get null in a column they lacked.
                    columns.append(name)
                    for row in state.table_rows:
                        row.append(None)
            positions = {name: i for i, name in enumerate(src)}
            span_pos = positions.get("span_id")
            for row in rec.table.rows:
                span_id = str(row[span_pos]) if span_pos is not None else None
                if span_id is not None and span_id in state.table_span_ids:
                    continue
                state.table_rows.append(
                    [row[positions[c]] if c in positions else None for c in columns]
                )
                if span_id is not None:
                    state.table_span_ids.add(span_id)

    def write(self, record: TraceRecord, attempt: int) -> None:
        from mlflow.entities import Metric, RunTag

        run_id = str(record.target_run_id)
        state = self.state(run_id)
        members = record.traces
        # Chain versions: each trace's LoggedModel (found or created once per version).
        plans = [self._writer._versions.prepare(state.experiment_id, m) for m in members]
        # One run, many workers: steps, the table and the tag list must change one batch at a time.
        with state.lock:
            metrics = []
            for member in members:
                step = state.steps.get(member.trace_id)
                if step is None:
                    step = state.next_step
                    state.next_step += 1
                    state.steps[member.trace_id] = step
                    state.views.add(member)
                metrics.extend(
                    Metric(k, float(v), member.end_time_ms, step)
                    for k, v in member.metrics.items()
                )
            metrics.extend(state.views.metrics(max(m.end_time_ms for m in members),
                                               state.next_step - 1))
            if len(state.steps) > _MAX_REMEMBERED_TRACES:
                state.steps.clear()
            entry = {"path": ARTIFACT_TABLE, "type": "table"}
            if entry not in state.logged_artifacts:
                state.logged_artifacts.append(entry)
            tags = [
                RunTag(TAG_LOGGED_ARTIFACTS, json.dumps(state.logged_artifacts)),
                RunTag(TAG_TRACE_COUNT, str(state.next_step)),
                *(RunTag(k, v) for k, v in _version_tags(state, members, plans).items()),
            ]
            self._writer.client.log_batch(run_id, metrics=metrics, tags=tags)
            self._append_rows(state, members)
            self._writer._upload_json(
                state.artifact_uri,
                ARTIFACT_TABLE,
                {"columns": state.table_columns, "data": state.table_rows},
            )
            trees = {m.trace_id: dict(m.tree) for m in members if m.tree}
            if trees:
                self._writer._upload_json(
                    state.artifact_uri, f"{ARTIFACT_TREES_DIR}/{members[0].trace_id}.json", trees
                )
            if self._writer.span_tree_html:
                self._writer._upload_html(state.artifact_uri, state.views.page(run_id))
            # Serialized OTLP requests concatenate into one valid request (repeated fields).
            otlp = b"".join(m.otlp for m in members)
            self._writer._link(state.experiment_id, run_id, otlp, explicit=attempt > 0)
            for member, plan in zip(members, plans):
                self._writer._versions.finish_trace(plan, state.experiment_id, member, run_id)
