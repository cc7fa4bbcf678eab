"""Receiver throughput: traces/s that ``otel-mlflow receive`` acknowledges, against a null endpoint.

Run from the repository root::

    python benchmarks/receiver_throughput.py                  # ~1-2 minutes on 2 cores
    python benchmarks/receiver_throughput.py --traces 2000 --drain-seconds 10

What it does, all on 127.0.0.1, in one run:

1. starts a real ``mlflow server`` (sqlite, one worker: the test suite's server);
2. BASELINE: a null OTLP endpoint on the same stack (uvicorn + starlette, one process) that
   reads each body and answers an empty ``ExportTraceServiceResponse``: no decode, no disk;
3. RECEIVER: ``otel-mlflow receive`` writing to that server;
4. posts pre-encoded requests (OTLP/HTTP protobuf, ``--per-request`` traces of 5 spans each,
   the size of an SDK ``BatchSpanProcessor`` batch of 512 spans; ``--senders`` client threads)
   to each, ``--rounds`` times alternating null endpoint / receiver (fresh trace ids every
   request), and times each round until its last request is acknowledged (200); the figure is
   the median round;
5. then lets the receiver drain for ``--drain-seconds`` and reads its ``/metrics``: traces
   written (the server's pace), traces still held on disk, span log bytes; and the receiver's
   RSS (``psutil``) idle before the load, right after it, and after the drain.

The figure is the ratio receiver / baseline, both measured in this run on this machine (the
machine is shared: absolute numbers move with the neighbours, the ratio much less). Prints a
markdown table. Not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans  # noqa: E402
from opentelemetry.sdk.resources import Resource  # noqa: E402
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)

from otel_mlflow._common import semconv as A  # noqa: E402
from otel_mlflow._receive import metrics as M  # noqa: E402

PB = {"Content-Type": "application/x-protobuf"}
CONTENT = "これはベンチマーク用の質問です。" * 20 + " What is the capital of Japan?" * 10


def make_traces(n: int) -> list[list[ReadableSpan]]:
    """5-span traces shaped like an ``OtelTracer`` trace (~1 KB of message content)."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "bench"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("bench")
    messages = json.dumps([{"role": "user", "parts": [{"type": "text", "content": CONTENT}]}],
                          ensure_ascii=False)
    for _ in range(n):
        with tracer.start_as_current_span("invoke_workflow app", attributes={
                A.ROOT: True, A.LC_RUN_TYPE: A.RUN_CHAIN,
                A.GEN_AI_OPERATION_NAME: A.OP_INVOKE_WORKFLOW}):
            with tracer.start_as_current_span("ChatPromptTemplate"):
                pass
            with tracer.start_as_current_span("chat gemini-2.5-flash", attributes={
                    A.GEN_AI_OPERATION_NAME: A.OP_CHAT, A.GEN_AI_REQUEST_MODEL: "gemini-2.5-flash",
                    A.GEN_AI_USAGE_INPUT_TOKENS: 120, A.GEN_AI_USAGE_OUTPUT_TOKENS: 3,
                    A.GEN_AI_INPUT_MESSAGES: messages}):
                pass
            with tracer.start_as_current_span("StrOutputParser"):
                pass
            with tracer.start_as_current_span("execute_tool weather", attributes={
                    A.GEN_AI_OPERATION_NAME: A.OP_EXECUTE_TOOL, A.GEN_AI_TOOL_NAME: "weather"}):
                pass
    by_trace: dict[int, list[ReadableSpan]] = {}
    for span in memory.get_finished_spans():
        by_trace.setdefault(span.context.trace_id, []).append(span)
    provider.shutdown()
    return list(by_trace.values())


# --- the null endpoint (its own process) ---------------------------------------------------------


def run_null_endpoint(port: int) -> None:
    import uvicorn
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceResponse,
    )
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    empty = ExportTraceServiceResponse().SerializeToString()

    async def traces(request: Request) -> Response:
        await request.body()
        return Response(empty, media_type="application/x-protobuf")

    async def healthz(request: Request) -> Response:
        return Response("ok")

    app = Starlette(routes=[Route("/v1/traces", traces, methods=["POST"]),
                            Route("/healthz", healthz)])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# --- measuring -----------------------------------------------------------------------------------


def wait_up(url: str, proc: subprocess.Popen[bytes], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} exited with {proc.returncode}")
        try:
            if requests.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def post_all(url: str, bodies: list[bytes], senders: int) -> tuple[float, int]:
    """Post every body until each is acknowledged; (seconds, answers other than 200)."""
    lock = threading.Lock()
    queue = list(range(len(bodies)))
    refused = [0]

    def sender() -> None:
        session = requests.Session()
        while True:
            with lock:
                if not queue:
                    return
                index = queue.pop()
            while True:
                answer = session.post(url + "/v1/traces", data=bodies[index], headers=PB,
                                      timeout=60)
                if answer.status_code == 200:
                    break
                with lock:
                    refused[0] += 1
                time.sleep(float(answer.headers.get("Retry-After", "1")))

    threads = [threading.Thread(target=sender) for _ in range(senders)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, refused[0]


def rss_mb(pid: int) -> float:
    import psutil

    return psutil.Process(pid).memory_info().rss / 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--traces", type=int, default=5000, help="traces per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--per-request", type=int, default=100)
    parser.add_argument("--senders", type=int, default=2)
    parser.add_argument("--drain-seconds", type=float, default=20.0)
    parser.add_argument("--null-endpoint", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.null_endpoint is not None:
        run_null_endpoint(args.null_endpoint)
        return 0

    from tests._support.mlflow_server import MlflowServer, free_port

    load = os.getloadavg()[0]
    template = encode_spans([s for t in make_traces(args.per_request) for s in t])
    per_round = max(1, args.traces // args.per_request)

    def fresh_bodies() -> list[bytes]:
        """``per_round`` copies of the template request, each with new trace ids."""
        out = []
        for _ in range(per_round):
            request = type(template)()
            request.CopyFrom(template)
            ids: dict[bytes, bytes] = {}
            for rs in request.resource_spans:
                for ss in rs.scope_spans:
                    for span in ss.spans:
                        span.trace_id = ids.setdefault(span.trace_id, os.urandom(16))
            out.append(request.SerializeToString())
        return out

    rounds = [(fresh_bodies(), fresh_bodies()) for _ in range(args.rounds)]
    mean_kb = len(rounds[0][0][0]) / 1024
    root = Path(tempfile.mkdtemp(prefix="otel_mlflow-receiver-bench-"))
    server = MlflowServer(root=root / "mlflow").start()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        null_port = free_port()
        null = subprocess.Popen([sys.executable, __file__, "--null-endpoint", str(null_port)],
                                env=env)
        procs.append(null)
        null_url = f"http://127.0.0.1:{null_port}"
        wait_up(null_url, null)
        post_all(null_url, rounds[0][0][:2], 1)  # warm-up

        port = free_port()
        log = open(root / "receiver.log", "wb")  # noqa: SIM115
        receiver = subprocess.Popen(
            [sys.executable, "-m", "otel_mlflow.cli", "receive", "--port", str(port),
             "--spool-dir", str(root / "spool"), "--tracking-uri", server.url,
             "--experiment", "receiver-bench"], env=env, stdout=log, stderr=subprocess.STDOUT)
        procs.append(receiver)
        url = f"http://127.0.0.1:{port}"
        wait_up(url, receiver)
        # Warm-up: one small trace written end to end (MLflow's client imported, experiment
        # created), so the drain below measures the steady pace.
        warm = encode_spans([s for t in make_traces(1) for s in t]).SerializeToString()
        post_all(url, [warm], 1)
        warm_until = time.monotonic() + 180
        while time.monotonic() < warm_until:
            seen = M.parse(requests.get(url + "/metrics", timeout=10).text)
            if seen.get("traces_written_total", 0) >= 1:
                break
            time.sleep(0.5)
        rss_idle = rss_mb(receiver.pid)
        base_times: list[float] = []
        recv_times: list[float] = []
        refused = 0
        for null_bodies, recv_bodies in rounds:
            base_times.append(post_all(null_url, null_bodies, args.senders)[0])
            seconds, not_ok = post_all(url, recv_bodies, args.senders)
            recv_times.append(seconds)
            refused += not_ok
        rss_loaded = rss_mb(receiver.pid)
        after_load = M.parse(requests.get(url + "/metrics", timeout=10).text)
        samples: list[tuple[float, float, float]] = []  # (s, RSS MB, traces held)
        drain_started = time.monotonic()
        while time.monotonic() - drain_started < args.drain_seconds:
            time.sleep(args.drain_seconds / 6)
            seen = M.parse(requests.get(url + "/metrics", timeout=10).text)
            samples.append((time.monotonic() - drain_started, rss_mb(receiver.pid),
                            seen.get("traces_held", 0)))
        drained = M.parse(requests.get(url + "/metrics", timeout=10).text)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()
        server.stop()

    import statistics

    n = per_round * args.per_request
    base_rate = n / statistics.median(base_times)
    recv_rate = n / statistics.median(recv_times)
    ratios = [b / r for b, r in zip(base_times, recv_times)]
    written = drained.get("traces_written_total", 0) - 1  # the warm-up trace
    drain_rate = (drained.get("traces_written_total", 0)
                  - after_load.get("traces_written_total", 0)) / args.drain_seconds
    print(f"\nDate: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Machine: "
          f"{os.cpu_count()} CPUs, {platform.system()} {platform.release()}, Python "
          f"{platform.python_version()}; load average {load:.1f} at the start.")
    print(f"{args.rounds} rounds of {n} traces x 5 spans in {per_round} requests of "
          f"{args.per_request} traces (~{mean_kb:.0f} KB protobuf each), {args.senders} sender "
          f"threads; the receiver's writer drains meanwhile in every round.\n")
    print("| endpoint | traces/s acknowledged | spans/s | vs. null endpoint |")
    print("| --- | --- | --- | --- |")
    print(f"| null endpoint (uvicorn + starlette, body read, no decode/disk) | {base_rate:.0f} "
          f"| {base_rate * 5:.0f} | 1.00 |")
    print(f"| `otel-mlflow receive` (decode, fsynced span log) | {recv_rate:.0f} | "
          f"{recv_rate * 5:.0f} | {recv_rate / base_rate:.2f} (rounds: "
          + ", ".join(f"{r:.2f}" for r in ratios) + ") |")
    print(f"\nNot 200: {refused}. After the load: {after_load.get('traces_held', 0):.0f} traces "
          f"held, span log {after_load.get('backlog_bytes', 0) / 1e6:.1f} MB on disk. Writer "
          f"during the {args.drain_seconds:.0f} s drain: {drain_rate:.1f} traces/s into the "
          f"one-worker sqlite server ({written:.0f} written in all); "
          f"{drained.get('traces_held', 0):.0f} still held on disk.")
    print(f"Receiver RSS: {rss_idle:.0f} MB after the warm-up, {rss_loaded:.0f} MB right after the load; "
          "during the drain (s: MB, traces held on disk): "
          + ", ".join(f"{t:.0f}: {mb:.0f}, {held:.0f}" for t, mb, held in samples) + ".")
    return 0


if __name__ == "__main__":
    sys.exit(main())
