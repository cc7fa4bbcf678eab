"""``log_feedback``: user feedback on a traced LangChain run, as an MLflow assessment + metric.

Usage::

    import uuid, otel_mlflow
    run_id = uuid.uuid4()
    answer = chain.invoke(inputs, config={"callbacks": [tracer], "run_id": run_id})
    otel_mlflow.log_feedback(run_id, "helpful", True, rationale="solved it", source="user-42")

What happens (``docs/experiments.md``, "Feedback"): the call validates its arguments (a bad
``run_id`` / ``name`` / ``value`` raises ``TypeError`` / ``ValueError`` at once: nothing was
queued), then queues the feedback for the delivery side and returns a ``Future`` without doing
any I/O. A worker logs, once the trace of that LangChain ROOT run id is in MLflow (held until
then: ``otel_mlflow._delivery.feedback``), one MLflow feedback assessment on the trace and the run
metric ``feedback.<name>`` (the mean of the numeric / boolean values of that name). The future
resolves to the assessment id, or fails with ``LookupError`` after the hold (one warning line
with the run id, name and value); a value that is not numeric is recorded as the assessment only
(one warning line, no metric). It uses the tracking store and experiment of the process's live
``MlflowSpanExporter``\\s; with none, the future fails at once (``RuntimeError``).
"""

from __future__ import annotations

import math
import re
import uuid
from concurrent.futures import Future
from typing import Any

from otel_mlflow._common import settings as _config
from otel_mlflow._delivery import feedback as _delivery
from otel_mlflow._sink.feedback import FeedbackItem

_NAME = re.compile(r"^[\w\-. /]{1,200}$")  # a valid MLflow metric key after "feedback."
_SCALARS = (str, int, float, bool)


def log_feedback(
    run_id: uuid.UUID | str,
    name: str,
    value: Any,
    *,
    rationale: str | None = None,
    source: str | None = None,
) -> Future[str]:
    """Record feedback on the trace of the LangChain root run ``run_id``; never blocks on I/O.

    ``value``: a number, bool, str, or a list / dict of those (MLflow's feedback values); only
    numbers and bools become the ``feedback.<name>`` metric. ``source``: who gave it (a user id),
    stored as the assessment's HUMAN source id. Returns a future of the assessment id.
    """
    lc_run_id = _run_id(run_id)
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"feedback name must be 1-200 letters, digits, '_-. /'; got {name!r}")
    _check_value(value)
    if rationale is not None and not isinstance(rationale, str):
        raise TypeError("rationale must be a str")
    if source is not None and not isinstance(source, str):
        raise TypeError("source must be a str")
    from otel_mlflow._export.providers import live_exporters

    writers = [e.writer for e in live_exporters() if e.writer is not None]
    item = FeedbackItem(lc_run_id, name, value, rationale, source)
    if not writers:
        future: Future[str] = Future()
        future.set_exception(RuntimeError(
            "no MlflowSpanExporter in this process: call otel_mlflow.configure() first"))
        return future
    hold = _config.env_float(_config.FEEDBACK_HOLD_SECONDS, _delivery.DEFAULT_HOLD_SECONDS)
    return _delivery.queue().submit(item, writers, max(0.0, hold))


def _run_id(run_id: Any) -> str:
    if isinstance(run_id, uuid.UUID):
        return str(run_id)
    if isinstance(run_id, str):
        try:
            return str(uuid.UUID(run_id))
        except ValueError:
            raise ValueError(f"run_id must be a LangChain run id (a UUID); got {run_id!r}") from None
    raise TypeError(f"run_id must be a uuid.UUID or its str; got {type(run_id).__name__}")


def _check_value(value: Any, depth: int = 0) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"feedback value must be finite; got {value!r}")
    if isinstance(value, _SCALARS):
        return
    if depth == 0 and isinstance(value, list):
        for v in value:
            _check_value(v, 1)
        return
    if depth == 0 and isinstance(value, dict) and all(isinstance(k, str) for k in value):
        for v in value.values():
            _check_value(v, 1)
        return
    raise TypeError(
        f"feedback value must be a number, bool, str, or a list / dict of those; got {value!r}")
