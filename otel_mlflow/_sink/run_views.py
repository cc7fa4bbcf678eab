"""The run's summary views, read and written for ``MlflowWriter``: ``run.*`` totals, ``span_tree.html``.

Run-per-trace mode: ``trace_page_text(record)`` is the run's ``span_tree.html`` (one more artifact
upload, next to ``span_tree.json``).

Active-run mode: one ``ActiveRunViews`` per target run, kept in the writer's bounded per-run
state. For each trace that gets a new step, ``add(trace)`` counts it into the running summary
(``otel_mlflow._record.run_totals``) and keeps its tree for the page (at most
``MAX_PAGE_TRACES``). ``metrics(timestamp, step)`` are the ``run.*`` points the writer adds to the
batch's one ``log_batch``, at the batch's last step, so MLflow's "latest value" is the current
total; ``page(run_id)`` is the run's ``span_tree.html``, re-uploaded per batch. Building a page
never fails a write: a page that cannot be built is skipped and counted as the fault
``writer.span_tree_html`` (the upload itself raises like every other write).

``load(client, run, ...)`` builds the views for a run the writer meets for the first time in this
process. A run with no traces of ours yet (``otel_mlflow.trace_count`` 0) costs nothing. A run that
already holds traces (a restart, another process, an evicted cache entry) is made whole from what
it holds, once: the metric history of the per-trace metrics it has (one ``get_metric_history``
per metric, about ten requests) for the totals, and, with the page on, a root artifact listing and
the previous ``span_tree.html`` (the page embeds its trees) for the page. A failed read raises:
the write fails and is retried, and nothing half-loaded is cached.
"""

from __future__ import annotations

import tempfile
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from otel_mlflow._common import faults as _faults
from otel_mlflow._record import ARTIFACT_TREE_HTML, TraceRecord
from otel_mlflow._record.run_totals import SOURCE_METRICS, RunTotals, steps_from_history
from otel_mlflow._record.span_tree_html import (
    MAX_PAGE_TRACES,
    page_tree,
    run_page,
    trace_page,
    trees_from_page,
)

@dataclass
class ActiveRunViews:
    """The running ``run.*`` summary and the last traces' trees of one active run."""

    totals: RunTotals = field(default_factory=RunTotals)
    trees: deque[Mapping[str, Any]] = field(default_factory=lambda: deque(maxlen=MAX_PAGE_TRACES))
    # False with the page switched off: no page trees are cut and kept for a page never built.
    keep_trees: bool = True

    def add(self, trace: TraceRecord) -> None:
        self.totals.add(trace.metrics)
        if trace.tree and self.keep_trees:
            try:
                self.trees.append(page_tree(trace.tree))  # bounded: cut values, <= 300 spans
            except Exception as exc:  # a page bug must not keep the run's data out of MLflow
                _faults.report("writer.span_tree_html", exc)

    def metrics(self, timestamp_ms: int, step: int) -> list[Any]:
        from mlflow.entities import Metric

        return [Metric(k, float(v), timestamp_ms, step) for k, v in self.totals.metrics().items()]

    def page(self, run_id: str) -> str | None:
        """The run's ``span_tree.html``; None (a fault, counted) when the page cannot be built."""
        try:
            return run_page(list(self.trees), run_id=run_id, total_traces=self.totals.traces)
        except Exception as exc:  # a page bug must not keep the run's data out of MLflow
            _faults.report("writer.span_tree_html", exc)
            return None


def trace_page_text(record: TraceRecord) -> str | None:
    """The ``span_tree.html`` of a run-per-trace run; None (a fault, counted) on a page bug."""
    try:
        return trace_page(record.tree)
    except Exception as exc:  # a page bug must not keep the run's data out of MLflow
        _faults.report("writer.span_tree_html", exc)
        return None


def load(client: Any, run: Any, trace_count: int, *, page: bool, repo: Any) -> ActiveRunViews:
    """The views of ``run`` (an ``mlflow.entities.Run``), rebuilt from the run when it has traces."""
    views = ActiveRunViews(keep_trees=page)
    if trace_count <= 0:
        return views
    run_id = run.info.run_id
    present = [key for key in SOURCE_METRICS if key in run.data.metrics]
    history = {
        key: [(m.step, m.value) for m in client.get_metric_history(run_id, key)]
        for key in present
    }
    views.totals = RunTotals.from_steps(steps_from_history(history))
    if page and any(f.path == ARTIFACT_TREE_HTML for f in client.list_artifacts(run_id)):
        with tempfile.TemporaryDirectory(prefix="otel_mlflow-") as tmp:
            path = repo.download_artifacts(ARTIFACT_TREE_HTML, tmp)
            with open(path, encoding="utf-8") as handle:
                trees, _ = trees_from_page(handle.read())
        views.trees.extend(trees)
    return views
