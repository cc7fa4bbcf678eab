"""Fork safety: after ``os.fork()`` (gunicorn ``--preload``, ``multiprocessing`` "fork" pools) a
child traces and exports like its parent, and no trace is written twice.

The scenario runs in a subprocess script: forking the pytest process itself, with its many
threads, is unsafe. Real parts throughout: ``configure()`` (real SDK, ``BatchSpanProcessor``),
a real LangChain chain over the fake chat model, the embedded sqlite store, the spool.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

from mlflow import MlflowClient

SCRIPT = textwrap.dedent(
    """
    import json, multiprocessing, os, sys

    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate

    import otel_mlflow
    from tests._support.fake_models import FakeChatModel

    tracer = otel_mlflow.configure(grace_seconds=0.05, otlp=False)
    chain = (
        ChatPromptTemplate.from_messages([("human", "What is {topic}?")])
        | FakeChatModel(responses=["Tokyo"])
        | StrOutputParser()
    )

    def traced(topic):
        return chain.invoke({"topic": topic}, config={"callbacks": [tracer]})

    def pool_task(i):
        traced(f"pool-{i}")
        return otel_mlflow.flush(90)

    if __name__ == "__main__":
        report = {}
        traced("parent-before-fork")  # still buffered (grace) when the process forks
        pid = os.fork()
        if pid == 0:
            traced("child")
            os._exit(0 if otel_mlflow.flush(90) else 3)
        _, status = os.waitpid(pid, 0)
        report["child_exit"] = os.waitstatus_to_exitcode(status)
        with multiprocessing.get_context("fork").Pool(2) as pool:
            report["pool_flushes"] = pool.map(pool_task, range(4))
        traced("parent-after-fork")
        report["parent_flush"] = otel_mlflow.flush(90)
        print(json.dumps(report))
    """
)


def test_forked_children_trace_and_export_each_trace_once(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    script = tmp_path / "fork_scenario.py"
    script.write_text(SCRIPT)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path.cwd()), os.environ.get("PYTHONPATH", "")]),
        "MLFLOW_TRACKING_URI": uri,
        "MLFLOW_EXPERIMENT_NAME": "fork",
        "OTEL_MLFLOW_SPOOL_DIR": str(tmp_path / "spool"),
    }
    done = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=400,
        cwd=Path.cwd(),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {
        "child_exit": 0, "pool_flushes": [True, True, True, True], "parent_flush": True,
    }, done.stderr[-3000:]

    if list((tmp_path / "spool").glob("*.trace.json")):
        # A write that outlived the stall detector (a loaded machine, 7 processes on one sqlite
        # file) goes to the spool by design, flush() still True: nothing is lost as long as the
        # documented recovery writes it exactly once. Run it, then check the end state.
        replay = subprocess.run(
            [sys.executable, "-m", "otel_mlflow.cli", "replay", "--spool-dir", str(tmp_path / "spool"),
             "--tracking-uri", uri],
            env=env, capture_output=True, text=True, timeout=240, cwd=Path.cwd(),
        )
        assert replay.returncode == 0, replay.stdout + replay.stderr[-3000:]

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("fork")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    per_trace = Counter(run.data.tags.get("otel.trace_id") for run in runs)
    # parent before + after the fork, the forked child, 4 pool tasks: 7 traces, one run each
    assert len(per_trace) == 7 and None not in per_trace, per_trace
    assert set(per_trace.values()) == {1}, per_trace
    assert all(run.info.status == "FINISHED" for run in runs), [
        (run.info.status, run.data.tags.get("otel.trace_id"), sorted(run.data.metrics)) for run in runs
    ] + [done.stderr[-4000:]]
    assert not [run for run in runs if run.data.tags.get("otel_mlflow.partial") == "true"]
    assert not list((tmp_path / "spool").glob("*.trace.json"))  # nothing left waiting


SPOOL_SCRIPT = textwrap.dedent(
    """
    import json, os, sys

    from otel_mlflow._delivery.spool import Spool
    from tests.delivery.test_spool import make_record

    spool = Spool(sys.argv[1], tracking_uri="sqlite:///unused.db")
    spool.put(make_record(1))
    spool.put(make_record(2))
    held = spool.claim_next()  # the parent is writing entry 1 when it forks
    pid = os.fork()
    if pid == 0:
        spool.recover()  # must not release the live parent's claim
        mine = spool.claim_next()
        again = spool.claim_next()
        ok = (
            mine is not None and mine.trace_id == f"{2:032x}" and again is None
            and f".claim-{os.getpid()}-" in mine.path.name
        )
        os._exit(0 if ok else 4)  # dies holding entry 2: a later recover() releases it
    _, status = os.waitpid(pid, 0)
    spool.recover()
    left = spool.claim_next()
    spool.remove(held)
    spool.remove(left)
    print(json.dumps({
        "child_exit": os.waitstatus_to_exitcode(status),
        "held": held.trace_id, "released": left.trace_id if left else None,
        "pending": spool.pending(),
    }))
    """
)


def test_forked_child_never_takes_an_entry_the_parent_holds(tmp_path: Path) -> None:
    script = tmp_path / "spool_scenario.py"
    script.write_text(SPOOL_SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path.cwd()), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "spool")], env=env, capture_output=True,
        text=True, timeout=120, cwd=Path.cwd(),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # The child claimed only entry 2 (under its own pid); after it died holding it, the
    # parent's recover() gave it back: nothing lost, nothing taken twice.
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {
        "child_exit": 0, "held": f"{1:032x}", "released": f"{2:032x}", "pending": 0,
    }
