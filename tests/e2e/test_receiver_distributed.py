"""``otel-mlflow receive`` end to end: real processes, the real OTel SDK exporters, a real
``mlflow server``.

- A distributed trace: a front service process and an LLM worker process (LangChain under
  ``OtelTracer``), the context carried by ``traceparent``, both exporting by OTLP/HTTP to one
  receiver subprocess -> ONE run whose span_tree.json nests both processes' spans.
- One trace's spans in several requests, out of order (children first, root last), and a
  worker's spans that arrive long before the front's root (the remote-parent rule).
- The SDK's own OTLP exporter against the receiver: bearer token, gzip.
- ``kill -9`` under load -> restart -> every acknowledged trace is written exactly once.
- SIGTERM drains and exits 0.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from mlflow import MlflowClient
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, set_span_in_context

from tests._support import distributed as D
from tests._support.mlflow_server import MlflowServer, free_port
from tests._support.receiver import REPO, ReceiverProcess

PB = {"Content-Type": "application/x-protobuf"}


@pytest.fixture
def experiment(request: pytest.FixtureRequest) -> str:
    return f"receiver-{request.node.name[:40]}-{time.time_ns()}"


@pytest.fixture
def make_receiver(tmp_path: Path, mlflow_server: MlflowServer, experiment: str) -> Iterator[Any]:
    made: list[ReceiverProcess] = []

    def make(*args: str, **env: str) -> ReceiverProcess:
        receiver = ReceiverProcess(tmp_path / "receiver", mlflow_server.url, experiment,
                                   args=args, env=env)
        made.append(receiver)
        return receiver.start()

    yield make
    for receiver in made:
        receiver.stop()


def runs_by_trace(tracking_uri: str, experiment: str) -> dict[str, list[Any]]:
    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return {}
    out: dict[str, list[Any]] = {}
    token = None
    while True:
        page = client.search_runs([exp.experiment_id], max_results=1000, page_token=token)
        for run in page:
            out.setdefault(run.data.tags.get("otel.trace_id", ""), []).append(run)
        token = page.token
        if not token:
            return out


def wait_for_runs(tracking_uri: str, experiment: str, trace_ids: set[str],
                  timeout: float = 60.0) -> dict[str, list[Any]]:
    deadline = time.monotonic() + timeout
    runs: dict[str, list[Any]] = {}
    while time.monotonic() < deadline:
        runs = runs_by_trace(tracking_uri, experiment)
        # a run is complete once its status is terminal (set last, after the artifacts)
        if trace_ids <= set(runs) and all(
            run.info.status in ("FINISHED", "FAILED") for tid in trace_ids for run in runs[tid]
        ):
            return runs
        time.sleep(1.0)
    return runs


def wait_until_drained(receiver: ReceiverProcess, timeout: float = 120.0) -> None:
    """Until the receiver holds nothing (every trace it acknowledged is written)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if receiver.metrics()["traces_held"] == 0:
            return
        time.sleep(0.5)
    raise AssertionError("receiver still holds traces:\n" + receiver.output())


def span_tree(tracking_uri: str, run_id: str, tmp: Path) -> list[dict[str, Any]]:
    tmp.mkdir(parents=True, exist_ok=True)
    path = MlflowClient(tracking_uri).download_artifacts(run_id, "span_tree.json", str(tmp))
    data = json.loads(Path(path).read_text())
    return data["spans"] if isinstance(data, dict) else data


def names_under(node: dict[str, Any]) -> dict[str, str]:
    """child name -> parent name for the whole subtree."""
    out: dict[str, str] = {}
    for child in node["children"]:
        out[child["name"]] = node["name"]
        out.update(names_under(child))
    return out


# --- distributed trace -------------------------------------------------------------------------


def test_a_two_process_trace_lands_as_one_run_with_both_processes_nested(
    make_receiver: Any, mlflow_server: MlflowServer, experiment: str, tmp_path: Path
) -> None:
    receiver = make_receiver("--grace-seconds", "1")
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    port = free_port()
    worker = subprocess.Popen([sys.executable, "-m", "tests._support.distributed", "worker",
                               str(port), receiver.traces_url], cwd=REPO, env=env)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.2)
        front = subprocess.run(
            [sys.executable, "-m", "tests._support.distributed", "front",
             f"http://127.0.0.1:{port}/ask", receiver.traces_url],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
        )
        assert front.returncode == 0, front.stderr
        trace_id = front.stdout.strip().splitlines()[-1]
    finally:
        worker.terminate()  # its lifespan shutdown flushes the worker's provider
        worker.wait(timeout=30)
    runs = wait_for_runs(mlflow_server.url, experiment, {trace_id})
    assert len(runs.get(trace_id, [])) == 1, receiver.output()
    run = runs[trace_id][0]
    assert run.data.tags["otel.service.name"] == "front"  # the root is the front's span
    tree = span_tree(mlflow_server.url, run.info.run_id, tmp_path / "tree")
    assert [node["name"] for node in tree] == [D.FRONT_ROOT], json.dumps(tree)[:3000]
    root = tree[0]
    assert root["name"] == D.FRONT_ROOT
    parents = names_under(root)
    assert parents[D.FRONT_CLIENT] == D.FRONT_ROOT
    assert parents[D.WORKER_SERVER] == D.FRONT_CLIENT  # the worker's span, across processes
    langchain_root = next(name for name, parent in parents.items() if parent == D.WORKER_SERVER)
    assert any(parent == langchain_root for parent in parents.values())  # the chain's own spans
    assert int(run.data.metrics["llm.calls"]) == 1


# --- one trace in several requests -------------------------------------------------------------


def sdk_trace(remote_parent: SpanContext | None = None, children: int = 4,
              service: str = "sender") -> list[ReadableSpan]:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("sender")
    ctx = set_span_in_context(NonRecordingSpan(remote_parent)) if remote_parent else None
    with tracer.start_as_current_span("root", context=ctx):
        for index in range(children):
            with tracer.start_as_current_span(f"step-{index}"):
                pass
    provider.shutdown()
    return list(memory.get_finished_spans())


def test_spans_of_one_trace_split_over_requests_out_of_order_make_one_run(
    make_receiver: Any, mlflow_server: MlflowServer, experiment: str, tmp_path: Path
) -> None:
    receiver = make_receiver("--grace-seconds", "1", "--host", "0.0.0.0")
    assert "without a token" in receiver.output()  # a non-loopback bind with no token: warned
    spans = sdk_trace()
    root = next(s for s in spans if s.parent is None)
    children = [s for s in spans if s.parent is not None]
    exporter = OTLPSpanExporter(endpoint=receiver.traces_url)
    for part in (children[2:], children[:1], children[1:2]):  # children first, shuffled
        assert exporter.export(part) is SpanExportResult.SUCCESS
        time.sleep(0.3)
    time.sleep(1.5)  # longer than the grace: without the root the trace must stay open
    assert exporter.export([root]) is SpanExportResult.SUCCESS
    trace_id = f"{root.context.trace_id:032x}"
    runs = wait_for_runs(mlflow_server.url, experiment, {trace_id})
    assert len(runs[trace_id]) == 1
    (tree,) = span_tree(mlflow_server.url, runs[trace_id][0].info.run_id, tmp_path / "t")
    assert tree["name"] == "root" and len(tree["children"]) == 4
    assert "otel_mlflow.partial" not in runs[trace_id][0].data.tags


def test_a_workers_spans_wait_for_the_front_root_that_arrives_after_the_grace(
    make_receiver: Any, mlflow_server: MlflowServer, experiment: str, tmp_path: Path
) -> None:
    receiver = make_receiver("--grace-seconds", "1")
    front = sdk_trace(children=1, service="front")
    front_client = next(s for s in front if s.parent is not None)
    worker = sdk_trace(remote_parent=SpanContext(
        front_client.context.trace_id, front_client.context.span_id, is_remote=True,
        trace_flags=TraceFlags(1)), children=2, service="worker")
    exporter = OTLPSpanExporter(endpoint=receiver.traces_url)
    assert exporter.export(worker) is SpanExportResult.SUCCESS
    time.sleep(3.0)  # 3x the grace, under parent_wait_seconds (10 s)
    assert exporter.export(front) is SpanExportResult.SUCCESS
    trace_id = f"{front_client.context.trace_id:032x}"
    runs = wait_for_runs(mlflow_server.url, experiment, {trace_id})
    assert len(runs[trace_id]) == 1
    run = runs[trace_id][0]
    assert run.data.tags["otel.service.name"] == "front"
    assert int(run.data.metrics["spans"]) == 5
    assert receiver.metrics()["late_spans_total"] == 0


# --- the SDK's OTLP exporter: token and gzip ---------------------------------------------------


def test_the_sdk_exporter_sends_with_a_bearer_token_and_gzip(
    make_receiver: Any, mlflow_server: MlflowServer, experiment: str
) -> None:
    receiver = make_receiver("--grace-seconds", "0.5", OTEL_MLFLOW_RECEIVER_TOKEN="tok-123")
    spans = sdk_trace(children=1)
    anonymous = OTLPSpanExporter(endpoint=receiver.traces_url)
    assert anonymous.export(spans) is SpanExportResult.FAILURE  # 401 is not retried
    sender = OTLPSpanExporter(endpoint=receiver.traces_url, compression=Compression.Gzip,
                              headers={"Authorization": "Bearer tok-123"})
    assert sender.export(spans) is SpanExportResult.SUCCESS
    trace_id = f"{spans[0].context.trace_id:032x}"
    assert len(wait_for_runs(mlflow_server.url, experiment, {trace_id})[trace_id]) == 1
    seen = receiver.metrics("tok-123")
    assert seen['requests_total{code="401"}'] == 1 and seen['requests_total{code="200"}'] == 1


# --- durability ----------------------------------------------------------------------------------


def test_kill_9_under_load_loses_no_acknowledged_trace_and_writes_none_twice(
    make_receiver: Any, mlflow_server: MlflowServer, experiment: str
) -> None:
    receiver = make_receiver("--grace-seconds", "0.3")
    batches = []
    for _ in range(16):  # 16 requests of 4 traces x 5 spans
        traces = [sdk_trace() for _ in range(4)]
        batches.append(([f"{t[0].context.trace_id:032x}" for t in traces],
                        encode_spans([s for t in traces for s in t]).SerializeToString()))
    acked: set[str] = set()
    pending = list(batches)
    stop = threading.Event()

    def send() -> None:
        while pending and not stop.is_set():
            ids, body = pending[0]
            try:
                answer = requests.post(receiver.traces_url, data=body, headers=PB, timeout=5)
            except requests.RequestException:
                time.sleep(0.1)  # receiver down: retry, as the OTLP exporters do
                continue
            if answer.status_code == 200:
                acked.update(ids)
                pending.pop(0)
            else:
                time.sleep(0.1)

    sender = threading.Thread(target=send)
    sender.start()
    deadline = time.monotonic() + 60
    while len(acked) < 24 and time.monotonic() < deadline:
        time.sleep(0.01)
    written_before = sum(1 for t in runs_by_trace(mlflow_server.url, experiment) if t)
    receiver.kill()  # kill -9 while requests arrive and the writer drains
    acked_at_kill = set(acked)
    assert len(acked_at_kill) >= 24
    assert written_before < len(acked_at_kill)  # some acknowledged traces were only on disk
    receiver.start()  # same port, same spool directory
    sender.join(timeout=120)
    stop.set()
    every = {tid for ids, _ in batches for tid in ids}
    assert acked == every
    wait_until_drained(receiver)
    runs = wait_for_runs(mlflow_server.url, experiment, every, timeout=30)
    counts = Counter({tid: len(found) for tid, found in runs.items()})
    assert acked_at_kill <= set(counts)
    assert every <= set(counts), f"missing {len(every - set(counts))}:\n{receiver.output()}"
    assert [tid for tid, n in counts.items() if n > 1] == []


def test_sigterm_drains_and_exits_0_and_the_rest_is_written_after_a_restart(
    make_receiver: Any, mlflow_server: MlflowServer, experiment: str
) -> None:
    receiver = make_receiver("--grace-seconds", "0.3")
    traces = [sdk_trace(children=1) for _ in range(20)]
    body = encode_spans([s for t in traces for s in t]).SerializeToString()
    open_trace = [s for s in sdk_trace(children=2) if s.parent is not None]  # root never sent
    assert requests.post(receiver.traces_url, data=body, headers=PB, timeout=10).status_code == 200
    assert requests.post(receiver.traces_url, data=encode_spans(open_trace).SerializeToString(),
                         headers=PB, timeout=10).status_code == 200
    assert receiver.terminate() == 0
    ids = {f"{t[0].context.trace_id:032x}" for t in traces}
    open_id = f"{open_trace[0].context.trace_id:032x}"
    written = runs_by_trace(mlflow_server.url, experiment)
    assert open_id not in written  # not written as partial: it waits on disk
    receiver.start()
    runs = wait_for_runs(mlflow_server.url, experiment, ids)
    assert ids <= set(runs) and all(len(runs[i]) == 1 for i in ids)
    assert receiver.metrics()["traces_held"] >= 1  # the open trace, still waiting for its root
