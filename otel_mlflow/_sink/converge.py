"""One run per trace id across processes: the convergent rule every writer runs after its write.

Run ids are made by the server and run tags have no uniqueness, so "search ``otel.trace_id``, then
create" races: two processes (two exporters, or a replay in one while another writes) can both
find nothing and both create. Instead of preventing the second run, every writer settles the
duplicates after it has written its own:

    after its run of trace T with root span R is terminal (FINISHED / FAILED / KILLED), a writer
    searches the active runs tagged ``otel.trace_id = T``; among the terminal ones tagged
    ``otel.root_span_id = R`` it keeps the smallest ``run_id`` and deletes (MLflow's soft
    ``delete_run``) every other one, its own or another writer's. Runs still RUNNING are left
    alone.

The root span id makes the key "the same part of the same trace": several processes of a
distributed trace that export directly (not through a receiver) each write their own part, with
their own root (a span whose parent is remote); those runs are different data and are all kept.
Runs without the tag (written by older versions) are never deleted.

Why it converges to exactly one run (proof in ``docs/team-server.md``): a run is deleted only by a
writer that saw a smaller terminal run, so the smallest terminal run is never deleted; and the
writer whose terminal update commits last searches after every other run is terminal, so it sees
them all and deletes all but the smallest. It relies only on what the server guarantees: a search
sent after a write's response sees that write (each request is its own committed transaction, on
sqlite and PostgreSQL alike) and ``delete_run`` is idempotent. A RUNNING run is never deleted,
because its writer may be about to terminate it and keep it.

``surplus_runs`` is the pure rule; ``converge`` is the two MLflow calls (one search, deletes only
when there are duplicates). A writer whose run was deleted has already finished; its retries find
the kept run and stop.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from otel_mlflow._common import faults as _faults
from otel_mlflow._record import TAG_ROOT_SPAN_ID, TAG_TRACE_ID

_logger = logging.getLogger(__name__)

TERMINAL = frozenset({"FINISHED", "FAILED", "KILLED"})
# More runs of one trace id than this means something else is wrong; bounded like all state.
_MAX_RUNS = 100


def surplus_runs(runs: Iterable[tuple[str, str, str | None]], root_span_id: str) -> list[str]:
    """The run ids to delete from ``(run_id, status, root span id tag)`` of one trace id (sorted).

    Only terminal runs of the same part (``root_span_id``) count; all but the smallest go.
    """
    same = sorted({run_id for run_id, status, root in runs
                   if status in TERMINAL and root == root_span_id})
    return same[1:]


def same_part(run: Any, root_span_id: str | None) -> bool:
    """Whether a found run holds the part of the trace rooted at ``root_span_id``.

    A run without the tag (older versions) matches any part, as the trace id alone used to.
    """
    tag = run.data.tags.get(TAG_ROOT_SPAN_ID)
    return tag is None or root_span_id is None or tag == root_span_id


def search_trace_runs(client: Any, experiment_id: str, trace_id: str) -> Sequence[Any]:
    """The active runs tagged with ``trace_id`` in the experiment (one ``search_runs``)."""
    from mlflow.entities import ViewType

    return list(
        client.search_runs(
            [experiment_id],
            filter_string=f"tags.`{TAG_TRACE_ID}` = '{trace_id}'",
            run_view_type=ViewType.ACTIVE_ONLY,
            max_results=_MAX_RUNS,
        )
    )


def converge(client: Any, experiment_id: str, trace_id: str, root_span_id: str | None
             ) -> str | None:
    """Apply the rule to one part of a trace; the kept run id (None when none is terminal yet).

    Raises when the search fails (the caller's write is retried, and the retry converges again).
    A delete the server refuses (another user's run under basic-auth) is reported, not raised.
    """
    if root_span_id is None:
        return None
    runs = search_trace_runs(client, experiment_id, trace_id)
    found = [(run.info.run_id, run.info.status, run.data.tags.get(TAG_ROOT_SPAN_ID))
             for run in runs]
    surplus = surplus_runs(found, root_span_id)
    kept = min((r for r, s, root in found if s in TERMINAL and root == root_span_id),
               default=None)
    for run_id in surplus:
        try:
            client.delete_run(run_id)
        except Exception as exc:  # noqa: BLE001 - classified below
            if _status_code(exc) not in (401, 403):
                raise
            _faults.report("writer.converge_delete_denied", exc)
            continue
        _logger.debug("otel_mlflow: trace %s: deleted duplicate run %s (kept %s)",
                      trace_id, run_id, kept)
    return kept


def _status_code(exc: BaseException) -> int | None:
    code = getattr(exc, "error_code", None)
    if code in ("PERMISSION_DENIED", "UNAUTHENTICATED"):
        return 403
    status = getattr(getattr(exc, "response", None), "status_code", None)
    return int(status) if isinstance(status, int) else None
