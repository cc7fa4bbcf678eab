"""Read an experiment's runs from MLflow, page by page, as :class:`RunFacts` (read only).

The only module of ``otel_mlflow.compare`` that talks to MLflow. It never writes: a bad
experiment name is reported, never created.

- ``MlflowClient.search_runs`` is paged (``page_size`` runs per request, MLflow's
  ``page_token``), ordered by start time, active runs only; ``since_seconds`` becomes the filter
  ``attributes.start_time >= <now - since>``.
- A run seen on two pages (runs written while reading shift MLflow's offset pages) counts once.
- Runs still ``RUNNING`` (half-written by a retry, or a user's active run) are counted in
  ``skipped_running`` and left out of the figures.
- Only the tags, params and metrics the comparison reads are kept per run, so memory stays
  small per run however wide the runs are.
- A progress bar (``tqdm``) counts runs on ``progress`` (stderr) when one is given.
- LoggedModel names come from ``MlflowClient.get_logged_model`` once per distinct id; an id MLflow
  does not know keeps no name (the id is shown).
"""

from __future__ import annotations

import time
from pathlib import Path
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from otel_mlflow._record import schema as S
from otel_mlflow.compare.aggregate import BASE_COLUMNS, CompareError, GroupBy, RunFacts

DEFAULT_PAGE_SIZE = 1000  # MLflow's own default page (SEARCH_MAX_RESULTS_DEFAULT)

_TAGS = (S.TAG_STATUS, S.TAG_CHAIN_VERSION, S.TAG_MODEL_ID)
_METRICS = frozenset(c.metric for c in BASE_COLUMNS if c.metric is not None)


def _kept_metric(name: str) -> bool:
    return name in _METRICS or name.startswith(S.M_FEEDBACK_PREFIX)


@dataclass(frozen=True)
class RunsRead:
    experiment_id: str
    runs: list[RunFacts]
    skipped_running: int
    model_names: dict[str, str]


def _facts(run: Any, by: GroupBy) -> RunFacts:
    tags = run.data.tags
    kept_tags = {key: tags[key] for key in _TAGS if key in tags}
    params: dict[str, str] = {}
    if by.kind == "tag" and by.key in tags:
        kept_tags[by.key] = tags[by.key]
    elif by.kind == "param" and by.key in run.data.params:
        params[by.key] = run.data.params[by.key]
    metrics = {key: value for key, value in run.data.metrics.items() if _kept_metric(key)}
    return RunFacts(run.info.run_id, run.info.status, kept_tags, params, metrics,
                    int(run.info.start_time or 0))


def _bar(progress: TextIO | None) -> Any:
    if progress is None:
        return None
    from tqdm import tqdm

    return tqdm(unit="run", desc="compare: reading runs", file=progress, leave=False)


def _check_store_exists(tracking_uri: str) -> None:
    """A sqlite URI naming no file is a typo: MlflowClient would create an empty store there."""
    if tracking_uri.startswith("sqlite:///"):
        path = Path(tracking_uri[len("sqlite:///"):].split("?", 1)[0])
        if str(path) != ":memory:" and not path.exists():
            raise CompareError(f"no MLflow store at {tracking_uri} (file {path} does not exist)")


def read_runs(experiment: str, by: GroupBy, *, tracking_uri: str,
              since_seconds: float | None = None, page_size: int = DEFAULT_PAGE_SIZE,
              progress: TextIO | None = None,
              now: Callable[[], float] = time.time) -> RunsRead:
    """Every active run of ``experiment`` (by name) started in the window, as facts.

    Raises :class:`CompareError` for an unknown experiment (with the names that exist).
    """
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    _check_store_exists(tracking_uri)
    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        known = sorted(e.name for e in client.search_experiments(max_results=20))
        hint = f"; experiments there: {', '.join(known)}" if known else ""
        raise CompareError(f"unknown experiment {experiment!r} at {tracking_uri}{hint}")
    filter_string = ""
    if since_seconds is not None:
        start_ms = int((now() - since_seconds) * 1000)
        filter_string = f"attributes.start_time >= {start_ms}"
    runs: list[RunFacts] = []
    skipped = 0
    seen: set[str] = set()
    bar = _bar(progress)
    token: str | None = None
    try:
        while True:
            page = client.search_runs([found.experiment_id], filter_string=filter_string,
                                      run_view_type=ViewType.ACTIVE_ONLY, max_results=page_size,
                                      order_by=["attributes.start_time ASC"], page_token=token)
            for run in page:
                if run.info.run_id in seen:  # a run written meanwhile shifted the pages
                    continue
                seen.add(run.info.run_id)
                if run.info.status == "RUNNING":
                    skipped += 1
                else:
                    runs.append(_facts(run, by))
            if bar is not None:
                bar.update(len(page))
                bar.refresh()  # one redraw per page, however fast it came (tqdm skips < 0.1 s)
            token = page.token
            if not token:
                break
    finally:
        if bar is not None:
            bar.close()
    names: dict[str, str] = {}
    for model_id in sorted({r.tags[S.TAG_MODEL_ID] for r in runs if r.tags.get(S.TAG_MODEL_ID)}):
        try:
            names[model_id] = client.get_logged_model(model_id).name
        except Exception:  # an id MLflow does not know (deleted model): show the id alone
            continue
    return RunsRead(found.experiment_id, runs, skipped, names)
