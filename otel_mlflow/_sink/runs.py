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

Active-run mode (``record.target_run_id`` set; ``record.members`` for a batch of traces; the code is
``otel_mlflow._sink.active_runs``): one
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
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from otel_mlflow._common import settings as _config
from otel_mlflow._common.settings import resolve_tracking_uri

from otel_mlflow._common import faults as _faults
from otel_mlflow._sink.active_runs import ActiveRuns
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
    STATUS_ERROR,
    TAG_ROOT_SPAN_ID,
    TraceRecord,
)

_logger = logging.getLogger(__name__)

DEFAULT_EXPERIMENT_NAME = "Default"
_TERMINAL = frozenset({"FINISHED", "FAILED", "KILLED"})
_MAX_REMEMBERED_TRACES = 100_000
_MAX_CACHED_RUNS = 16
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
        self._repos: dict[str, Any] = {}
        self._log_trace: Callable[..., None] | None = None
        self._log_trace_missing = False
        # Chain versions: LoggedModel, source tags, prompts.json, prompt links (``_sink/versions``).
        self._versions = VersionWriter(lambda: self.client, register_prompts=register_prompts,
                                       link_traces=self.link_traces)
        # Active-run mode (``record.target_run_id``): ``otel_mlflow._sink.active_runs``.
        self._active_runs = ActiveRuns(self)
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
                self._active_runs.write(record, attempt)
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
