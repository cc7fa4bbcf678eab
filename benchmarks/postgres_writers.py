"""MLflow server on PostgreSQL (2 workers): traces/s from 4 writer processes, server CPU per run.

Run from the repository root (PostgreSQL's server binaries must be installed, e.g. Debian's
``postgresql``; as root they run as the ``postgres`` user)::

    python benchmarks/postgres_writers.py                  # 4 x 50 traces, ~3-5 minutes on 2 cores
    python benchmarks/postgres_writers.py --processes 4 --traces 25

One PostgreSQL cluster and one ``mlflow server --workers 2`` on it (``tests/_support``), then:

1. **4 writer processes** (``tests/_support/writer_app.py``: real OTel SDK + exporter, 3-span
   traces, grace 0.05 s, ``--writer-workers`` delivery workers each, default 1) released together; traces/s = all traces / the slowest writer's time from
   the start signal to its last trace delivered. Server CPU per run: the server's process tree
   (``psutil``) over the whole phase / runs. The script checks one FINISHED run per trace id.
2. **Requests per run**, in this process: the same exporter writing 5-span traces one process
   alone (``exporter_throughput.case_run_per_trace``): every HTTP request counted by endpoint,
   server CPU per run beside it.
   The same once more with the one-run rule's search switched off (patched out in this process),
   to show what that request costs. PostgreSQL's own CPU (postmaster + backends) is reported
   apart, for the writers phase.
3. **MLflow's own per-trace server cost**, the same server, the same run of this script:
   ``mlflow.start_span`` traces written by MLflow's own client
   (``exporter_throughput.case_mlflow_own_tracing``).

Prints a markdown table; the figures go into ``docs/performance.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("MLFLOW_MODEL_CATALOG_URI", "")

import exporter_throughput as et  # noqa: E402
from mlflow.entities import ViewType  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from otel_mlflow._record import TAG_TRACE_ID  # noqa: E402
from tests._support.mlflow_server import MlflowServer  # noqa: E402
from tests._support.postgres import PostgresServer  # noqa: E402


def writers_phase(url: str, processes: int, traces: int, workers: int) -> dict[str, Any]:
    experiment = f"pg-writers-{int(time.time())}"
    go = Path(tempfile.mkdtemp()) / "go"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OTEL_SDK_DISABLED="false")
    cmd = [sys.executable, "-m", "tests._support.writer_app", url, experiment,
           "--traces", str(traces), "--go-file", str(go), "--workers", str(workers)]
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
             for _ in range(processes)]
    for proc in procs:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError("a writer did not start")
    with et.CpuMeter() as cpu:
        go.touch()
        results = [json.loads(p.communicate(timeout=1800)[0].strip().splitlines()[-1])
                   for p in procs]
    seconds = max(r["seconds"] for r in results)
    total = processes * traces
    client = MlflowClient(url)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], run_view_type=ViewType.ACTIVE_ONLY,
                              max_results=5000)
    per_trace = Counter(r.data.tags.get(TAG_TRACE_ID) for r in runs)
    finished = sum(1 for r in runs if r.info.status == "FINISHED")
    if len(per_trace) != total or max(per_trace.values()) != 1 or finished != total:
        raise RuntimeError(f"expected {total} runs, one per trace: {len(runs)} runs, "
                           f"{len(per_trace)} trace ids, {finished} finished")
    faults = [r["faults"] for r in results if r["faults"]]
    return {"traces_per_s": total / seconds, "seconds": seconds,
            "server_ms": cpu.server / total * 1e3, "faults": faults}


def _cpu(pids: list[int]) -> float:
    import psutil

    total = 0.0
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            for each in [proc, *proc.children(recursive=True)]:
                times = each.cpu_times()
                total += times.user + times.system
        except psutil.Error:
            continue
    return total


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--traces", type=int, default=50, help="traces per writer process")
    parser.add_argument("--single", type=int, default=50, help="traces for cases 2 and 3")
    parser.add_argument("--writer-workers", type=int, default=1,
                        help="delivery workers per writer process (4 x 1 = 2 per server worker)")
    args = parser.parse_args()

    pg = PostgresServer().start()
    server = MlflowServer(root=Path(tempfile.mkdtemp(prefix="bench-pg-mlflow-")),
                          backend_store_uri=pg.uri, workers=2)
    try:
        server.start(timeout=300)
        # The MLflow server's process tree and PostgreSQL's (postmaster + backends): CpuMeter sums
        # each pid with its children; the database is reported apart below.
        et._server_pids[:] = [server.proc.pid] if server.proc else []
        pg_main = pg.pids()[:1]
        rows = []
        pg_before = _cpu(pg_main)
        w = writers_phase(server.url, args.processes, args.traces, args.writer_workers)
        pg_ms = (_cpu(pg_main) - pg_before) / (args.processes * args.traces) * 1e3
        rows.append((f"{args.processes} writer processes x {args.traces} traces (3 spans), "
                     f"{args.writer_workers} delivery worker(s) each",
                     w["traces_per_s"], w["server_ms"], "", ""))
        spool = Path(tempfile.mkdtemp(prefix="bench-pg-spool-"))
        one = et.case_run_per_trace(server.url, args.single, True, spool)
        rows.append((f"1 exporter, {args.single} traces (5 spans), Traces link on",
                     one["traces_per_s"], one["server_ms"],
                     f"{one['requests_per_trace']:.2f}", f"{one['run_requests_per_trace']:.2f}"))
        from otel_mlflow._sink import runs as _runs

        converge = _runs.converge
        _runs.converge = lambda *a, **k: None  # the same case without the one-run rule
        try:
            off = et.case_run_per_trace(server.url, args.single, True, spool)
        finally:
            _runs.converge = converge
        rows.append((f"1 exporter, {args.single} traces, Traces link on, without the one-run "
                     "rule's search", off["traces_per_s"], off["server_ms"],
                     f"{off['requests_per_trace']:.2f}", f"{off['run_requests_per_trace']:.2f}"))
        own = et.case_mlflow_own_tracing(server.url, args.single)
        rows.append((f"MLflow's own client, {args.single} traces (mlflow.start_span, 5 spans)",
                     own["traces_per_s"], own["server_ms"], "", ""))
        print(f"\nmlflow server --workers 2 on PostgreSQL {pg.bindir}, "
              f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}\n")
        print("| case | traces/s | server CPU ms/trace | requests/trace | run requests/trace |")
        print("|---|---|---|---|---|")
        for name, tps, ms, req, run_req in rows:
            print(f"| {name} | {tps:.1f} | {ms:.1f} | {req} | {run_req} |")
        print("\nrequests by endpoint (per trace):", json.dumps(one["by_endpoint"], indent=1))
        print(f"PostgreSQL CPU per run during the writers phase: {pg_ms:.1f} ms")
        print("writer faults:", w["faults"] or "none", f"; writers' slowest: {w['seconds']:.1f} s")
    finally:
        server.stop()
        pg.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
