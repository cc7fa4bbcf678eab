"""I/O: each chain version as an MLflow LoggedModel; its id on the run and the MLflow trace.

``ChainModels(client_getter).model_id(experiment_id, chain)`` returns the LoggedModel id of one
chain version (``TraceRecord.chain``, from ``otel_mlflow._record.version``), in priority order:

1. ``chain["model_id"]``: the LoggedModel the app set with ``mlflow.set_active_model`` (the user's
   choice wins; nothing is created);
2. this writer's cache (experiment id, version) -> id (bounded, ``_CACHE_MAX``);
3. ``search_logged_models`` in the experiment with the filter
   ``tags.`otel_mlflow.chain.version` = '<version>'``, oldest first: created once, found again by
   any process after any restart;
4. else ``create_logged_model`` named ``<chain name>-<version>``, an external model (tag
   ``mlflow.model.isExternal=true``, as ``mlflow.create_external_model`` sets it) whose params are
   the chain's configuration (``chain["params"]``), then ``finalize_logged_model(READY)``.

Two processes (or writers) that meet a new version at the same moment may both create it. The
rule that settles them, run by every creator after its ``finalize_logged_model``: wait
``_SETTLE_SECONDS`` (1 s, once per new version per writer, on a delivery worker), search the
version's models again and take the **first by (creation time, model id)**; if that is not the
model just created, delete the one just created (``delete_logged_model``, a soft delete) and use
the first. The lookup of step 3 orders the same way. Why: a creator's own model is used by no run
before the rule has run (the id is cached only after it), so deleting it loses nothing; every
creator whose search sees all the version's models picks the same first one as any later lookup.
The wait is there because a server takes a model's creation time before its insert commits, so
on a busy store (sqlite's write lock) a model with the earlier time can become visible after
another creator has already searched: without the wait, 8 writers racing on one server left two
models in one CI run. A split remains possible only when a create commits more than
``_SETTLE_SECONDS`` after another creator's search; every later lookup (other processes,
restarts) then still takes the first, so only the runs written before the cache entry expires
reference the other. ``tests/e2e/test_versions.py`` races eight writers (and four exporters) on
one new version.

``set_trace_model(client, experiment_id, record, run_id, model_id)`` puts ``mlflow.modelId`` (and
``mlflow.sourceRun``) into the MLflow trace's metadata: MLflow's OTLP ingestion has no path for
trace metadata, so after the spans are stored this sends ``StartTraceV3`` (the store's
``start_trace``) for the same trace id, which MLflow merges into the stored trace (metadata
upserted, tags merged, times and state as given: the trace's own). One request per trace.

``source_tags()``: the tags MLflow's fluent API gives a run (``mlflow.user``,
``mlflow.source.name``, ``mlflow.source.type``, ``mlflow.source.git.commit`` from a git checkout)
from MLflow's context registry (``mlflow.tracking.context.registry.resolve_tags``), resolved once
per writer process. A replay in another process records that process's source.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from otel_mlflow._common.forksafe import new_lock_after_fork
from otel_mlflow._record.model import TraceRecord
from otel_mlflow._record.schema import (
    STATUS_ERROR,
    TAG_CHAIN_VERSION,
    TAG_MLFLOW_GIT_COMMIT,
    TAG_MLFLOW_SOURCE_NAME,
    TAG_MLFLOW_SOURCE_TYPE,
    TAG_MLFLOW_USER,
)

_logger = logging.getLogger(__name__)

_CACHE_MAX = 1024
MODEL_IS_EXTERNAL = "mlflow.model.isExternal"  # mlflow.utils.mlflow_tags.MLFLOW_MODEL_IS_EXTERNAL
TRACE_MODEL_ID = "mlflow.modelId"  # mlflow.tracing.constant.TraceMetadataKey.MODEL_ID
TRACE_SOURCE_RUN = "mlflow.sourceRun"  # TraceMetadataKey.SOURCE_RUN
_SOURCE_TAGS = (TAG_MLFLOW_USER, TAG_MLFLOW_SOURCE_NAME, TAG_MLFLOW_SOURCE_TYPE,
                TAG_MLFLOW_GIT_COMMIT)
_MAX_NAME_CHARS = 200
_SETTLE_SECONDS = 1.0  # see the module docstring
_MAX_SAME_VERSION = 50  # models of one version looked at (more would mean something else broke)


def model_name(chain: Mapping[str, Any]) -> str:
    """The LoggedModel name of a chain version: ``<chain name>-<version>``."""
    name = str(chain.get("name") or "chain")[: _MAX_NAME_CHARS - 20]
    return f"{name}-{chain.get('version')}"


class ChainModels:
    """Finds or creates the LoggedModel of each chain version (see the module docstring)."""

    def __init__(self, client: Callable[[], Any]) -> None:
        self._client = client
        self._ids: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()
        new_lock_after_fork(self)

    def model_id(self, experiment_id: str, chain: Mapping[str, Any]) -> str | None:
        if not chain:
            return None
        if chain.get("model_id"):
            return str(chain["model_id"])
        version = str(chain.get("version") or "")
        if not version:
            return None
        key = (experiment_id, version)
        found = self._ids.get(key)
        if found is not None:
            return found
        with self._lock:  # one lookup / creation per version in this writer
            found = self._ids.get(key)
            if found is None:
                found = self._find(experiment_id, version) or self._create(experiment_id, chain)
                if len(self._ids) >= _CACHE_MAX:
                    self._ids.clear()
                self._ids[key] = found
        return found

    def _find(self, experiment_id: str, version: str) -> str | None:
        """The version's first model by (creation time, model id), or None."""
        quoted = version.replace("'", "\\'")
        models = self._client().search_logged_models(
            experiment_ids=[experiment_id],
            filter_string=f"tags.`{TAG_CHAIN_VERSION}` = '{quoted}'",
            order_by=[{"field_name": "creation_time", "ascending": True}],
            max_results=_MAX_SAME_VERSION,
        )
        if not models:
            return None
        return str(min(models, key=lambda m: (int(m.creation_timestamp or 0),
                                              str(m.model_id))).model_id)

    def _settle(self, experiment_id: str, version: str, created: str) -> str:
        """The rule of the module docstring, after ``created`` is finalized."""
        time.sleep(_SETTLE_SECONDS)  # a concurrent create may not have committed yet
        first = self._find(experiment_id, version) or created
        if first != created:
            try:
                self._client().delete_logged_model(created)
            except Exception as exc:  # noqa: BLE001 - an unused duplicate is only clutter
                _logger.debug("otel_mlflow: duplicate LoggedModel %s not deleted: %s",
                              created, exc)
            _logger.debug("otel_mlflow: chain version %s: LoggedModel %s (not %s, created "
                          "concurrently)", version, first, created)
        return first

    def _create(self, experiment_id: str, chain: Mapping[str, Any]) -> str:
        from mlflow.entities import LoggedModelStatus

        client = self._client()
        params = {str(k): str(v) for k, v in (chain.get("params") or {}).items()}
        model = client.create_logged_model(
            experiment_id,
            name=model_name(chain),
            tags={TAG_CHAIN_VERSION: str(chain["version"]), MODEL_IS_EXTERNAL: "true"},
            params=params,
        )
        client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
        _logger.debug("otel_mlflow: LoggedModel %s for chain version %s", model.model_id,
                      chain["version"])
        return self._settle(experiment_id, str(chain["version"]), str(model.model_id))


def set_trace_model(client: Any, experiment_id: str, record: TraceRecord, run_id: str,
                    model_id: str | None, tags: Mapping[str, str] | None = None) -> None:
    """``mlflow.modelId`` / ``mlflow.sourceRun`` (and ``tags``) into the stored MLflow trace."""
    metadata = {TRACE_SOURCE_RUN: run_id}
    if model_id:
        metadata[TRACE_MODEL_ID] = model_id
    from mlflow.entities import TraceInfo, TraceLocation, TraceState

    info = TraceInfo(
        trace_id="tr-" + record.trace_id,
        trace_location=TraceLocation.from_experiment_id(experiment_id),
        request_time=record.start_time_ms,
        execution_duration=max(0, record.end_time_ms - record.start_time_ms),
        state=TraceState.ERROR if record.status == STATUS_ERROR else TraceState.OK,
        trace_metadata=metadata,
        tags=dict(tags or {}),
    )
    client._tracking_client.store.start_trace(info)  # noqa: SLF001 - no public setter


_source: dict[str, str] | None = None
_source_lock = threading.Lock()
new_lock_after_fork(sys.modules[__name__], "_source_lock")


def source_tags() -> dict[str, str]:
    """MLflow's standard source tags for runs written by this process (module docstring)."""
    global _source
    if _source is None:
        with _source_lock:
            if _source is None:
                try:
                    from mlflow.tracking.context.registry import resolve_tags

                    tags = resolve_tags()
                    _source = {k: str(tags[k]) for k in _SOURCE_TAGS if tags.get(k)}
                except Exception as exc:  # noqa: BLE001 - source tags are best effort
                    _logger.debug("otel_mlflow: no MLflow source tags (%s)", exc)
                    _source = {}
    return _source
