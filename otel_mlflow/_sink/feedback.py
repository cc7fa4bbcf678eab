"""I/O: one piece of feedback on a LangChain run into MLflow (an assessment + a run metric).

``locate(writer, lc_run_id, hint)`` finds where the trace of a LangChain ROOT run id was written,
in priority order:

1. the hint the exporter noted in this process (``otel_mlflow._delivery.feedback``): the OTel
   trace id and, in active-run mode, the target run id;
2. the run tagged ``otel_mlflow.langchain.run_id`` = the id (run-per-trace mode; the exporter
   tags every run with its LangChain root run id);
3. the MLflow trace tagged ``otel_mlflow.langchain.run_id`` (the Traces payload carries it as a
   trace tag), whose root span names the active run it went into (``otel_mlflow.mlflow.run_id``).

Written means: the run is complete (FINISHED / FAILED: the writer sets it last, after the trace
upload) or, for an active run, the trace is in MLflow. ``locate`` returns None while it is not,
so the caller holds the feedback and asks again.

``log_assessment(writer, located, feedback)`` logs one MLflow feedback assessment on the trace
(a run written with ``link_traces`` off has no trace: no assessment, a warning), ``log_metric``
then the run metric ``feedback.<name>`` = the mean of every valid numeric (bool: 1 / 0) feedback named
``<name>`` on the run's traces, at step = their count. A value that is not numeric is kept as
the assessment and gets no metric. Raises on MLflow failures (the caller retries).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

from otel_mlflow._common import semconv as A
from otel_mlflow._record import M_FEEDBACK_PREFIX, TAG_LC_RUN_ID, TAG_TRACE_ID

_logger = logging.getLogger(__name__)

_TERMINAL = frozenset({"FINISHED", "FAILED", "KILLED"})
_TRACE_ID_PREFIX = "tr-"
_MAX_RUN_TRACES = 500  # traces read per run to compute the mean (MLflow's page limit)


@dataclass(frozen=True)
class Hint:
    """What the exporter of this process knows about a LangChain root run's trace."""

    otel_trace_id: str  # 32 hex
    target_run_id: str | None  # active-run mode


@dataclass(frozen=True)
class Located:
    trace_id: str  # MLflow's (tr-...)
    run_id: str | None  # None: the trace was found but not its run (no metric)
    experiment_id: str


@dataclass(frozen=True)
class FeedbackItem:
    lc_run_id: str
    name: str
    value: Any
    rationale: str | None
    source: str | None


def numeric(value: Any) -> float | None:
    """The metric value of a feedback value: bool -> 1 / 0, finite numbers; else None."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float) and math.isfinite(float(value)):
        return float(value)
    return None


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


def locate(writer: Any, lc_run_id: str, hint: Hint | None) -> Located | None:
    client = writer.client
    experiment_id = writer.experiment_id()
    if hint is not None:
        trace_id = _TRACE_ID_PREFIX + hint.otel_trace_id
        if hint.target_run_id:
            return Located(trace_id, hint.target_run_id, experiment_id) if _trace_exists(
                client, trace_id) else None
        runs = client.search_runs(
            [experiment_id], f"tags.`{TAG_TRACE_ID}` = '{_quote(hint.otel_trace_id)}'",
            max_results=5,
        )
        return _complete(runs, experiment_id)
    runs = client.search_runs(
        [experiment_id], f"tags.`{TAG_LC_RUN_ID}` = '{_quote(lc_run_id)}'", max_results=5
    )
    if runs:
        return _complete(runs, experiment_id)
    traces = client.search_traces(
        locations=[experiment_id],
        filter_string=f"tag.`{TAG_LC_RUN_ID}` = '{_quote(lc_run_id)}'",
        max_results=1,
    )
    if not traces:
        return None
    trace = traces[0]
    root = next((s for s in trace.data.spans if s.attributes.get(A.ROOT)), None)
    run_id = root.attributes.get(A.MLFLOW_RUN_ID) if root is not None else None
    return Located(trace.info.trace_id, str(run_id) if run_id else None, experiment_id)


def _complete(runs: list[Any], experiment_id: str) -> Located | None:
    for run in runs:
        otel_id = run.data.tags.get(TAG_TRACE_ID)
        if otel_id and run.info.status in _TERMINAL:
            return Located(_TRACE_ID_PREFIX + otel_id, run.info.run_id, experiment_id)
    return None


def _trace_exists(client: Any, trace_id: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        client._tracing_client.get_trace_info(trace_id)  # noqa: SLF001 - no public getter
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"):
            return False
        raise
    return True


def log_assessment(writer: Any, located: Located, item: FeedbackItem) -> str | None:
    """Log the feedback assessment on the trace; its id, or None when the run has no MLflow
    trace (written with ``link_traces`` off: then only the metric is logged)."""
    from mlflow.entities import AssessmentSource, AssessmentSourceType, Feedback

    if located.run_id is not None and not _trace_exists(writer.client, located.trace_id):
        _logger.warning("otel_mlflow: feedback %r on LangChain run %s: its run has no MLflow "
                        "trace (link_traces off); no assessment, only the %s%s metric",
                        item.name, item.lc_run_id, M_FEEDBACK_PREFIX, item.name)
        return None
    source = AssessmentSource(source_type=AssessmentSourceType.HUMAN,
                              source_id=item.source or "otel_mlflow.log_feedback")
    logged = writer.client._tracing_client.log_assessment(  # noqa: SLF001 - no MlflowClient wrapper
        located.trace_id,
        Feedback(name=item.name, value=item.value, source=source, rationale=item.rationale),
    )
    return str(logged.assessment_id or "")


def log_metric(writer: Any, located: Located, item: FeedbackItem, *, traced: bool = True) -> None:
    """Log ``feedback.<name>`` (the mean) on the run, or say once why there is none.

    ``traced=False`` (no MLflow trace, so no assessments to average): the new mean is folded
    into the metric's latest point (mean, count = step).
    """
    client = writer.client
    if located.run_id is None:
        _logger.warning("otel_mlflow: feedback %r on LangChain run %s: its MLflow run is not "
                        "known; recorded as an assessment only, no %s%s metric",
                        item.name, item.lc_run_id, M_FEEDBACK_PREFIX, item.name)
    elif numeric(item.value) is None:
        _logger.warning("otel_mlflow: feedback %r on LangChain run %s: value %r is not numeric "
                        "or boolean; recorded as an assessment only, no %s%s metric",
                        item.name, item.lc_run_id, item.value, M_FEEDBACK_PREFIX, item.name)
    else:
        key = M_FEEDBACK_PREFIX + item.name
        if traced:
            values = _numeric_feedback(client, located, item.name)
            mean, count = (sum(values) / len(values), len(values)) if values else (None, 0)
        else:
            history = client.get_metric_history(located.run_id, key)
            last = max(history, key=lambda m: m.step, default=None)
            n = last.step if last is not None else 0
            value = numeric(item.value) or 0.0
            mean = ((last.value * n if last is not None else 0.0) + value) / (n + 1)
            count = n + 1
        if mean is not None:
            client.log_metric(located.run_id, key, mean, timestamp=int(time.time() * 1000),
                              step=count)


def _numeric_feedback(client: Any, located: Located, name: str) -> list[float]:
    """Every valid numeric feedback named ``name`` on the run's traces."""
    infos = [t.info for t in client.search_traces(
        locations=[located.experiment_id], run_id=located.run_id, include_spans=False,
        max_results=_MAX_RUN_TRACES,
    )]
    if not any(info.trace_id == located.trace_id for info in infos):
        infos.append(client._tracing_client.get_trace_info(located.trace_id))  # noqa: SLF001
    values: list[float] = []
    for info in infos:
        for assessment in info.assessments or []:
            if getattr(assessment, "name", None) != name or not getattr(assessment, "valid", True):
                continue
            feedback = getattr(assessment, "feedback", None)
            if feedback is None or getattr(feedback, "error", None) is not None:
                continue
            value = numeric(feedback.value)
            if value is not None:
                values.append(value)
    return values
