"""MLflow outages and app crashes lose nothing and duplicate nothing.

1. 200 traces through real LangChain chains, ``OtelTracer`` and ``MlflowSpanExporter`` under a
   ``BatchSpanProcessor``; the (own) ``mlflow server`` is SIGKILLed after trace 60 and restarted
   ten seconds later. Afterwards: exactly 200 runs, one per trace, each complete.
2. An app process writes traces while MLflow is unreachable (they reach the spool) and is
   SIGKILLed; a new exporter on the same spool, with MLflow up, writes them all; ``replay`` after
   that finds nothing left and creates nothing.

The outage test keeps MLflow's own HTTP client settings (7 retries with backoff, i.e. writes hang
rather than fail): delivery's stall detection opens the circuit. The app-kill test sets
``MLFLOW_HTTP_REQUEST_MAX_RETRIES=0`` so its traces reach the spool within seconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient

from tests._support.mlflow_server import MlflowServer, free_port

ROOT = Path(__file__).resolve().parents[2]


def build_chain(index: int) -> Any:
    from langchain_core.language_models.fake_chat_models import FakeListChatModel
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate

    prompt = ChatPromptTemplate.from_messages([("system", "Be brief."), ("human", "{q}")])
    model = FakeListChatModel(responses=[f"answer {index}"])
    return prompt | model | StrOutputParser()


def runs_of(client: MlflowClient, experiment_name: str) -> list[Any]:
    exp = client.get_experiment_by_name(experiment_name)
    if exp is None:
        return []
    runs: list[Any] = []
    token = None
    while True:
        page = client.search_runs([exp.experiment_id], max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def wait_runs(client: MlflowClient, experiment: str, count: int, timeout: float) -> list[Any]:
    """Poll until ``count`` runs exist and all of them are finished (or the time is up)."""
    deadline = time.monotonic() + timeout
    runs = runs_of(client, experiment)
    while time.monotonic() < deadline and (
        len(runs) < count or any(r.info.status == "RUNNING" for r in runs)
    ):
        time.sleep(1.0)
        runs = runs_of(client, experiment)
    return runs


def assert_complete(client: MlflowClient, run: Any) -> None:
    assert run.info.status == "FINISHED", run.info
    assert len(run.data.tags["otel.trace_id"]) == 32
    assert run.data.metrics["llm.calls"] == 1
    assert run.data.metrics["spans"] >= 3
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"llm_calls.json", "span_tree.json"} <= names, names


def test_server_killed_mid_stream_exactly_200_complete_runs(tmp_path: Path) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from otel_mlflow._export.exporter import MlflowSpanExporter
    from otel_mlflow._tracing.handler import OtelTracer

    server = MlflowServer(root=tmp_path / "server").start()
    exporter = None
    try:
        exporter = MlflowSpanExporter(
            tracking_uri=server.url,
            experiment_name="outage",
            spool_dir=str(tmp_path / "spool"),
            grace_seconds=0.2,
            retry_max_seconds=5.0,
        )
        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=200))
        tracer = OtelTracer(tracer_provider=provider)
        restarted = threading.Event()
        restart_error: list[BaseException] = []

        def restart_later() -> None:
            time.sleep(10.0)
            try:
                server.start()
            except BaseException as exc:  # noqa: BLE001 - reported by the test thread
                restart_error.append(exc)
            restarted.set()

        results = []
        killed_at = None
        for i in range(200):
            if i == 60:
                server.kill()
                killed_at = time.monotonic()
                threading.Thread(target=restart_later, daemon=True).start()
            results.append(build_chain(i).invoke({"q": f"q{i}"}, config={"callbacks": [tracer]}))
            time.sleep(0.1)
        assert results == [f"answer {i}" for i in range(200)]  # the app never noticed
        assert killed_at is not None
        assert restarted.wait(120) and not restart_error, restart_error
        down_seconds = time.monotonic() - killed_at
        provider.force_flush()
        exporter.force_flush(180_000)

        client = MlflowClient(tracking_uri=server.url)
        runs = wait_runs(client, "outage", 200, timeout=120)
        trace_ids = [r.data.tags.get("otel.trace_id") for r in runs]
        assert len(runs) == 200, (len(runs), exporter.delivery.stats)
        assert len(set(trace_ids)) == 200  # one run per trace, none twice
        for run in runs:
            assert_complete(client, run)
        # The outage really hit the exporter: traces went through the spool and came back.
        spooled = exporter.delivery.stats["spooled"]
        assert spooled > 0, exporter.delivery.stats
        assert exporter.delivery.spool is not None and exporter.delivery.spool.pending() == 0
        stats = exporter.delivery.stats
        print(
            f"\noutage: server down ~{down_seconds:.0f} s (SIGKILL after trace 60, restart after "
            f"10 s + start-up); {spooled} traces spooled, {stats['replayed']} replayed, "
            f"{stats['retries']} retries, {stats['written']} written directly; "
            f"runs afterwards: {len(runs)} (distinct trace ids {len(set(trace_ids))})"
        )
        provider.shutdown()
    finally:
        if exporter is not None:
            exporter.shutdown()
        server.stop()


_APP = r"""
import os, sys, time
sys.path.insert(0, {root!r})
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from otel_mlflow._export.exporter import MlflowSpanExporter
from otel_mlflow._tracing.handler import OtelTracer
from tests.e2e.test_outage import build_chain

exporter = MlflowSpanExporter(
    tracking_uri={uri!r}, experiment_name="kill9", spool_dir={spool!r},
    grace_seconds=0.1, retry_max_seconds=1.0,
)
provider = TracerProvider()
provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=100))
tracer = OtelTracer(tracer_provider=provider)
for i in range({count}):
    build_chain(i).invoke({{"q": "q%d" % i}}, config={{"callbacks": [tracer]}})
provider.force_flush()
deadline = time.monotonic() + 120
while exporter.delivery.spool.pending() < {count} and time.monotonic() < deadline:
    exporter.force_flush(1000)
    time.sleep(0.2)
print("SPOOLED", exporter.delivery.spool.pending(), flush=True)
time.sleep(600)  # killed here, with the traces only on disk
"""


def test_app_killed_with_spooled_traces_new_process_writes_them_once(
    tmp_path: Path, mlflow_server: MlflowServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from otel_mlflow._export.exporter import MlflowSpanExporter
    from otel_mlflow._delivery.replay import replay

    count = 20
    spool_dir = tmp_path / "spool"
    env = dict(os.environ, MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", OTEL_SDK_DISABLED="false")
    code = _APP.format(
        root=str(ROOT), uri=f"http://127.0.0.1:{free_port()}", spool=str(spool_dir), count=count
    )
    app = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=env, cwd=str(tmp_path),
    )
    try:
        assert app.stdout is not None
        line = app.stdout.readline().decode()
        assert line.strip() == f"SPOOLED {count}", (line, app.stderr.read() if app.poll() else "")
    finally:
        app.send_signal(signal.SIGKILL)
        app.wait(30)
    assert app.returncode == -signal.SIGKILL

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    # A new process would do the same: an exporter on the spool replays it at start, with no
    # new traffic needed.
    exporter = MlflowSpanExporter(
        tracking_uri=mlflow_server.url, experiment_name="kill9", spool_dir=str(spool_dir)
    )
    client = MlflowClient(tracking_uri=mlflow_server.url)
    wait_runs(client, "kill9", count, timeout=120)
    assert exporter.force_flush(60_000)
    exporter.shutdown()
    runs = runs_of(client, "kill9")
    assert len(runs) == count
    assert len({r.data.tags["otel.trace_id"] for r in runs}) == count
    for run in runs:
        assert_complete(client, run)
    again = replay(spool_dir=spool_dir, tracking_uri=mlflow_server.url)
    assert (again.written, again.failed, again.remaining) == (0, 0, 0)
    assert len(runs_of(client, "kill9")) == count  # no duplicates


_EXITING_APP = r"""
import logging, sys
sys.path.insert(0, {root!r})
logging.basicConfig(level=logging.WARNING, format="%(name)s %(levelname)s %(message)s")
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from otel_mlflow._export.exporter import MlflowSpanExporter
from otel_mlflow._tracing.handler import OtelTracer
from tests.e2e.test_outage import build_chain

exporter = MlflowSpanExporter(
    tracking_uri={uri!r}, experiment_name="exit", spool_dir={spool!r},
    grace_seconds=0.1, shutdown_timeout_seconds=3.0,
)
provider = TracerProvider()  # registers its shutdown at interpreter exit
provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=100))
tracer = OtelTracer(tracer_provider=provider)
for i in range({count}):
    build_chain(i).invoke({{"q": "q%d" % i}}, config={{"callbacks": [tracer]}})
print("DONE", flush=True)
"""


def test_interpreter_exit_with_mlflow_down_is_bounded_spools_all_and_logs_once(
    tmp_path: Path,
) -> None:
    """MLflow's own client settings left at their defaults (7 retries with backoff): the
    workers hang in those retries, and the exit still takes only the shutdown bound."""
    from otel_mlflow._delivery.spool import Spool

    count = 6
    spool_dir = tmp_path / "spool"
    code = _EXITING_APP.format(
        root=str(ROOT), uri=f"http://127.0.0.1:{free_port()}", spool=str(spool_dir), count=count
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_HTTP_REQUEST")}
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=env, cwd=str(tmp_path),
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline().decode().strip() == "DONE"
    exit_started = time.monotonic()
    proc.wait(120)
    exit_seconds = time.monotonic() - exit_started
    stderr = proc.stderr.read().decode(errors="replace")
    assert proc.returncode == 0, stderr
    assert exit_seconds < 3.0 + 7.0, exit_seconds  # the bound plus joins and interpreter teardown
    lines = [line for line in stderr.splitlines() if "at shutdown" in line]
    assert len(lines) == 1, stderr
    assert f"{count} trace(s)" in lines[0] and str(spool_dir) in lines[0]
    assert Spool(spool_dir).pending() == count
