"""Many app processes writing one ``mlflow server``: PostgreSQL backend (2 workers) and sqlite.

Real parts only: a real PostgreSQL cluster (``tests/_support/postgres.py``), real ``mlflow server``
processes, real app processes (``tests/_support/writer_app.py``: the OTel SDK and the exporter).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from otel_mlflow._record import TAG_PARTIAL, TAG_TRACE_ID
from tests._support.mlflow_server import MlflowServer

ROOT = Path(__file__).resolve().parents[2]


def run_writers(
    url: str, experiment: str, processes: int, traces: int, same_ids: int | None = None,
    *, tmp: Path,
) -> list[dict[str, object]]:
    """Start ``processes`` writer apps, release them together once all are set up; summaries."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), OTEL_SDK_DISABLED="false")
    go = tmp / f"go-{experiment}"
    cmd = [sys.executable, "-m", "tests._support.writer_app", url, experiment,
           "--traces", str(traces), "--go-file", str(go)]
    if same_ids is not None:
        cmd += ["--same-ids", str(same_ids)]
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(processes)]
    for proc in procs:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready", proc.stderr and proc.stderr.read()
    go.touch()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    # Faults (a write slower than 15 s on a loaded machine goes through the spool) are allowed:
    # the runs on the server are what must be right.
    print("writer faults:", [r["faults"] for r in results])
    return results


def runs_of(url: str, experiment: str, view: int = ViewType.ACTIVE_ONLY) -> list[object]:
    client = MlflowClient(url)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None
    return list(client.search_runs([exp.experiment_id], run_view_type=view, max_results=5000))


def assert_one_complete_run_per_trace(runs: list[object], trace_ids: set[str]) -> None:
    per_trace = Counter(run.data.tags.get(TAG_TRACE_ID) for run in runs)  # type: ignore[attr-defined]
    duplicates = {t: n for t, n in per_trace.items() if n != 1}
    assert duplicates == {}
    assert set(per_trace) == trace_ids
    assert {run.info.status for run in runs} == {"FINISHED"}  # type: ignore[attr-defined]
    assert not [run for run in runs if TAG_PARTIAL in run.data.tags]  # type: ignore[attr-defined]


def test_four_processes_on_postgres_give_one_complete_run_per_trace(
    mlflow_pg_server: MlflowServer, tmp_path: Path
) -> None:
    results = run_writers(mlflow_pg_server.url, "pg-load", processes=4, traces=25, tmp=tmp_path)
    trace_ids = {t for r in results for t in r["trace_ids"]}  # type: ignore[attr-defined]
    assert len(trace_ids) == 100
    assert_one_complete_run_per_trace(runs_of(mlflow_pg_server.url, "pg-load"), trace_ids)


@pytest.mark.parametrize("backend", ["postgres", "sqlite"])
def test_writers_of_the_same_trace_ids_leave_exactly_one_run_each(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    server: MlflowServer = request.getfixturevalue(
        "mlflow_pg_server" if backend == "postgres" else "mlflow_server"
    )
    experiment = f"same-ids-{backend}"
    writers, traces = 3, 10
    results = run_writers(server.url, experiment, processes=writers, traces=traces, same_ids=11,
                          tmp=tmp_path)
    trace_ids = {t for r in results for t in r["trace_ids"]}  # type: ignore[attr-defined]
    assert len(trace_ids) == traces  # every process wrote the same ids
    assert_one_complete_run_per_trace(runs_of(server.url, experiment), trace_ids)
    # First attempts create without a lookup, so every writer made its own run: the duplicates
    # really happened and the rule deleted all but one of each.
    deleted = runs_of(server.url, experiment, ViewType.DELETED_ONLY)
    assert 0 < len(deleted) <= (writers - 1) * traces
    assert {run.data.tags[TAG_TRACE_ID] for run in deleted} <= trace_ids  # type: ignore[attr-defined]
