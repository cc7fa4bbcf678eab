"""Every MlflowClient call that writes runs: ``TraceRecord`` -> an MLflow run (or an active run).

``MlflowWriter(tracking_uri, experiment_name, link_traces).write(record)`` runs on a delivery
worker, raises on failure (delivery retries and spools) and is idempotent.

Run-per-trace mode (``record.target_run_id is None``), at most 6 requests for the run itself,
then one search that settles duplicates written by other processes (``otel_mlflow._sink.converge``):

1. ``create_run`` with every tag (``otel.trace_id`` among them), named after the root span;
2. one ``log_batch`` with the metrics (step 0, timestamp = trace end) and params;
3. ``llm_calls.json``, 4. ``span_tree.json`` and 5. ``span_tree.html`` (the waterfall page;
   off with ``span_tree_html=False`` / ``OTEL_MLFLOW_SPAN_TREE_HTML=false``), one upload each
   (and ``prompts.json`` for a chain with prompt templates);
6. one ``UpdateRun`` (the store's ``update_run_info``) to FINISHED (trace OK) or FAILED (trace
   ERROR) with the trace's end time.

The Traces-view link (``otel_mlflow._sink.traces.log_trace``) comes on top, before step 6: one
``POST /v1/traces`` that also links the trace to the run on a first attempt against a tracking
server (the explicit ``link_traces_to_run`` call, which raises on failure, is added on retries and
replays, and always for local stores).

Artifacts behind a tracking server that proxies them (``mlflow-artifacts:`` / ``http(s)://``
artifact URIs) are PUT straight from memory, one request each; any other artifact store gets a
temporary file through its artifact repository (``otel_mlflow._sink.artifacts``).

A chain version (``record.chain``) adds, through ``otel_mlflow._sink.versions``: the LoggedModel
lookup (once per version per writer) and MLflow's source tags before ``create_run``; after the
Traces-view link, ``mlflow.modelId`` in the trace's metadata (one request) and the Prompt
Registry links (cached per template).

A terminal run status is the "complete" marker: it is set last, so a run still RUNNING is
half-written.

Idempotency, in priority order: (1) a first attempt (``attempt == 0``) of a trace this writer has
not tried before creates the run directly (no lookup, keeping the request budget); (2) a retry,
a replay (``attempt >= 1``), a writer built with ``lookup_existing=True`` or a trace this writer
already tried first searches ``tags.otel.trace_id`` in the experiment; a complete run found ends
the write, a half-written one is completed (tags, metrics, params and artifacts are re-sent; MLflow
drops identical metric points and accepts identical params); only when none is found is a run
created. Either way, once a run of the trace is terminal, ``converge`` keeps the smallest terminal
run id among the trace's runs and deletes the others, so concurrent writers in several processes
end with exactly one run (see ``otel_mlflow._sink.converge``).

Active-run mode (``record.target_run_id`` set; ``record.members`` for a batch of traces): one
``log_batch`` with each trace's metrics at its own step (a per-run counter kept in the tag
``otel_mlflow.trace_count``, read once per run with ``get_run``), ``llm_calls.json`` appended to
(the table is read once per run from the store, then kept in memory; rows whose ``span_id`` is
already in the table are not appended twice), and the batch's span trees as
``span_trees/<first trace id>.json`` = ``{"<trace id>": {"trace_id": ..., "spans": [...]}, ...}``.
The same ``log_batch`` carries the run totals (``run.*``) and the run's ``span_tree.html`` is
re-uploaded per batch (``otel_mlflow._sink.run_views``: a bounded summary, rebuilt once from the
run when this process meets a run that already holds traces).
Params are not logged into an active run (they belong to the user and are immutable). A retry in
the same process reuses the steps assigned on the first attempt; a replay in another process may
log a batch's metric points a second time at new steps (rows and trees never duplicate).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from otel_mlflow._common import settings as _config
from otel_mlflow._common.settings import resolve_tracking_uri

from otel_mlflow._common import faults as _faults
from otel_mlflow._sink.versions import VersionWriter
from otel_mlflow._sink.converge import converge, same_part, search_trace_runs
from otel_mlflow._sink import fork as _fork
from otel_mlflow._sink import request_headers as _headers
from otel_mlflow._sink import artifacts as _artifacts
from otel_mlflow._sink import run_views as _views
from otel_mlflow._record import (
    ARTIFACT_TABLE,
    ARTIFACT_TREE,
    ARTIFACT_TREE_HTML,
    ARTIFACT_TREES_DIR,
    STATUS_ERROR,
    TAG_APP_VERSION,
    TAG_CHAIN_VERSION,
    TAG_LOGGED_ARTIFACTS,
    TAG_MODEL_ID,
    TAG_ROOT_SPAN_ID,
    TAG_TRACE_COUNT,
    TraceRecord,
)

_logger = logging.getLogger(__name__)

DEFAULT_EXPERIMENT_NAME = "Default"
_TERMINAL = frozenset({"FINISHED", "FAILED", "KILLED"})
_MAX_REMEMBERED_TRACES = 100_000
_MAX_CACHED_RUNS = 16
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


class MlflowWriter:
    """Writes ``TraceRecord``s to one tracking store; see the module docstring."""

    def __init__(
        self,
        tracking_uri: str | None = None,
        experiment_name: str | None = None,
        link_traces: bool = True,
        *,
        lookup_existing: bool = False,
        client: Any = None,
        register_prompts: bool | None = None,
        span_tree_html: bool | None = None,
    ) -> None:
        self.tracking_uri = resolve_tracking_uri(tracking_uri)
        self.experiment_name = _config.resolve_experiment_name(experiment_name)
        self.link_traces = bool(link_traces)
        self.lookup_existing = bool(lookup_existing)
        self.span_tree_html = (_config.env_bool(_config.SPAN_TREE_HTML, True)
                               if span_tree_html is None else bool(span_tree_html))
        self._client = client
        self._lock = threading.Lock()
        self._experiment_id: str | None = None
        self._tried: OrderedDict[str, None] = OrderedDict()
        self._active: OrderedDict[str, _ActiveRunState] = OrderedDict()
        self._repos: dict[str, Any] = {}
        self._log_trace: Callable[..., None] | None = None
        self._log_trace_missing = False
        # Chain versions: LoggedModel, source tags, prompts.json, prompt links (``_sink/versions``).
        self._versions = VersionWriter(lambda: self.client, register_prompts=register_prompts,
                                       link_traces=self.link_traces)
        _fork.track_writer(self)
        _headers.install()

    # --- lazily built MLflow objects (never in the app's thread) ---------------------------
    @property
    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                from mlflow.tracking import MlflowClient

                self._client = MlflowClient(tracking_uri=self.tracking_uri)
            return self._client

    def experiment_id(self) -> str:
        """The target experiment's id, created when missing (cached after the first call)."""
        if self._experiment_id is not None:
            return self._experiment_id
        client = self.client
        name = self.experiment_name or DEFAULT_EXPERIMENT_NAME
        exp = client.get_experiment_by_name(name)
        if exp is None:
            try:
                exp_id = client.create_experiment(name)
            except Exception:
                # Another process or worker may have created it in between.
                exp = client.get_experiment_by_name(name)
                if exp is None:
                    raise
                exp_id = exp.experiment_id
        else:
            exp_id = exp.experiment_id
        self._experiment_id = str(exp_id)
        return self._experiment_id

    def _repo(self, artifact_uri: str) -> Any:
        repo = self._repos.get(artifact_uri)
        if repo is None:
            from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

            repo = get_artifact_repository(artifact_uri, tracking_uri=self.tracking_uri)
            if len(self._repos) > _MAX_CACHED_RUNS:
                self._repos.clear()
            self._repos[artifact_uri] = repo
        return repo

    def _upload_json(self, artifact_uri: str, artifact_file: str, payload: Any) -> None:
        text = json.dumps(payload, ensure_ascii=False, allow_nan=True)
        _artifacts.upload_text(self._repo(artifact_uri), artifact_file, text,
                               _artifacts.JSON_CONTENT_TYPE)

    def _upload_html(self, artifact_uri: str, page: str | None) -> None:
        if page is not None:
            _artifacts.upload_text(self._repo(artifact_uri), ARTIFACT_TREE_HTML, page,
                                   _artifacts.HTML_CONTENT_TYPE)

    def _link(self, experiment_id: str, run_id: str, otlp: bytes, *, explicit: bool) -> None:
        if not self.link_traces or not otlp:
            return
        if self._log_trace is None and not self._log_trace_missing:
            try:
                from otel_mlflow._sink.traces import log_trace

                self._log_trace = log_trace
            except ImportError as exc:
                self._log_trace_missing = True
                _faults.report("writer.link_traces_unavailable", exc)
        if self._log_trace is not None:
            self._log_trace(self.client, experiment_id, run_id, otlp, link_explicitly=explicit)

    # --- entry point ---------------------------------------------------------------------
    def write(self, record: TraceRecord, attempt: int = 0) -> None:
        """Write one record (raises on failure; safe to call again with the same record)."""
        with _headers.cached_headers():  # MLflow's Databricks probe once, not per request
            if record.target_run_id:
                self._write_active(record, attempt)
            else:
                self._write_trace_run(record, attempt)

    # --- run per trace ---------------------------------------------------------------------
    def _remember(self, trace_id: str) -> bool:
        """Mark a trace as tried; True when it had been tried before."""
        with self._lock:
            seen = trace_id in self._tried
            self._tried[trace_id] = None
            self._tried.move_to_end(trace_id)
            while len(self._tried) > _MAX_REMEMBERED_TRACES:
                self._tried.popitem(last=False)
            return seen

    def find_run(
        self, experiment_id: str, trace_id: str, root_span_id: str | None = None
    ) -> Any | None:
        """The run of ``trace_id`` (of its part rooted at ``root_span_id``; a complete one
        first), or None."""
        runs = [run for run in search_trace_runs(self.client, experiment_id, trace_id)
                if same_part(run, root_span_id)]
        if not runs:
            return None
        for run in runs:
            if run.info.status in _TERMINAL:
                return run
        return runs[0]

    def _write_trace_run(self, record: TraceRecord, attempt: int) -> None:
        from mlflow.entities import Metric, Param, RunTag

        client = self.client
        experiment_id = self.experiment_id()
        tried_before = self._remember(record.trace_id)
        part = record.tags.get(TAG_ROOT_SPAN_ID)
        run = None
        repeat = attempt > 0 or tried_before or self.lookup_existing
        if repeat:
            run = self.find_run(experiment_id, record.trace_id, part)
            if run is not None and run.info.status in _TERMINAL:
                _logger.debug("otel_mlflow: trace %s already written", record.trace_id)
                converge(client, experiment_id, record.trace_id, part)
                return
        tags: Sequence[Any] = ()
        plan = self._versions.prepare(experiment_id, record)
        run_tags = {**record.tags, **plan.tags}
        if run is None:
            run = client.create_run(
                experiment_id,
                start_time=record.start_time_ms,
                tags=run_tags,
                run_name=record.run_name or None,
            )
        else:
            # Completing a half-written run: its tags may be the part that failed.
            tags = [RunTag(k, v) for k, v in run_tags.items()]
        run_id = run.info.run_id
        metrics = [Metric(k, float(v), record.end_time_ms, 0) for k, v in record.metrics.items()]
        params = [Param(k, v) for k, v in record.params.items()]
        client.log_batch(run_id, metrics=metrics, params=params, tags=tags)
        artifact_uri = run.info.artifact_uri
        self._upload_json(artifact_uri, ARTIFACT_TABLE, record.table.to_dict())
        self._upload_json(artifact_uri, ARTIFACT_TREE, dict(record.tree))
        if self.span_tree_html:
            self._upload_html(artifact_uri, _views.trace_page_text(record))
        self._link(experiment_id, run_id, record.otlp, explicit=repeat)
        self._versions.finish(
            plan, experiment_id, record, run_id,
            lambda name, payload: self._upload_json(artifact_uri, name, payload),
        )
        self._terminate(run_id, "FAILED" if record.status == STATUS_ERROR else "FINISHED",
                        record.end_time_ms)
        # Another process may have written the same trace id meanwhile: settle on one run.
        converge(client, experiment_id, record.trace_id, part)

    def _terminate(self, run_id: str, status: str, end_time_ms: int) -> None:
        # The store call, not MlflowClient.set_terminated: against a server that one also sends
        # a get_run and prints "View run ..." to the app's stdout.
        from mlflow.entities import RunStatus

        store = self.client._tracking_client.store  # noqa: SLF001 - no public store getter
        store.update_run_info(run_id, RunStatus.from_string(status), end_time_ms, None)

    # --- active run ------------------------------------------------------------------------
    def _active_state(self, run_id: str) -> _ActiveRunState:
        with self._lock:
            state = self._active.get(run_id)
            if state is not None:
                self._active.move_to_end(run_id)
                return state
        run = self.client.get_run(run_id)
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
        state.views = _views.load(self.client, run, next_step, page=self.span_tree_html,
                                  repo=self._repo(state.artifact_uri))
        with self._lock:
            existing = self._active.get(run_id)
            if existing is not None:
                return existing
            self._active[run_id] = state
            while len(self._active) > _MAX_CACHED_RUNS:
                self._active.popitem(last=False)
        return state

    def _load_table(self, state: _ActiveRunState) -> None:
        """Read the run's existing ``llm_calls.json`` (e.g. logged by the user) to append to it."""
        with tempfile.TemporaryDirectory(prefix="otel_mlflow-") as tmp:
            path = self._repo(state.artifact_uri).download_artifacts(ARTIFACT_TABLE, tmp)
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

    def _write_active(self, record: TraceRecord, attempt: int) -> None:
        from mlflow.entities import Metric, RunTag

        run_id = str(record.target_run_id)
        state = self._active_state(run_id)
        members = record.traces
        # Chain versions: each trace's LoggedModel (found or created once per version).
        plans = [self._versions.prepare(state.experiment_id, m) for m in members]
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
            self.client.log_batch(run_id, metrics=metrics, tags=tags)
            self._append_rows(state, members)
            self._upload_json(
                state.artifact_uri,
                ARTIFACT_TABLE,
                {"columns": state.table_columns, "data": state.table_rows},
            )
            trees = {m.trace_id: dict(m.tree) for m in members if m.tree}
            if trees:
                self._upload_json(
                    state.artifact_uri, f"{ARTIFACT_TREES_DIR}/{members[0].trace_id}.json", trees
                )
            if self.span_tree_html:
                self._upload_html(state.artifact_uri, state.views.page(run_id))
            # Serialized OTLP requests concatenate into one valid request (repeated fields).
            otlp = b"".join(m.otlp for m in members)
            self._link(state.experiment_id, run_id, otlp, explicit=attempt > 0)
            for member, plan in zip(members, plans):
                self._versions.finish_trace(plan, state.experiment_id, member, run_id)
