"""Exporter throughput: traces/s drained into MLflow, requests per trace, app-thread cost.

Run from the repository root::

    python benchmarks/exporter_throughput.py            # all cases, ~5-8 minutes on 2 cores
    python benchmarks/exporter_throughput.py --traces 100 --skip-server
    python benchmarks/exporter_throughput.py --server-configs tests   # one server configuration
    python benchmarks/exporter_throughput.py --traces 100 --server-configs tests --cases server \
        --profile /tmp/writer.prof       # run-per-trace only, with the CPU breakdown + cProfile

Cases (each a fresh exporter and a fresh experiment):

1. run-per-trace into the embedded store (``sqlite:///mlflow.db`` in a temp dir);
2. run-per-trace into a local ``mlflow server`` (started here, sqlite backend), with the
   Traces-view link off and on, for each server configuration (``--server-configs``):
   ``tests`` = one worker, artifacts proxied by the server (``--serve-artifacts``, MLflow's
   default; the test suite's server); ``team`` = two workers, artifacts proxied (the
   ``docs/team-server.md`` setup for a small team); ``local-artifacts`` = one worker,
   ``--no-serve-artifacts`` with a local ``--default-artifact-root`` (clients write artifacts to
   the shared disk themselves: only for clients on the server's machine). HTTP requests per trace
   are counted on the client side (every ``requests`` call the process makes, grouped by
   endpoint); "run requests" leaves out the Traces-view ones. CPU per trace: this process (all
   its threads) and the server's process tree (``psutil``), over the timed part;
3. active-run mode (all traces into one run) into both stores (the ``tests`` server);
4. app-thread cost per span when MLflow is down (tracking URI on a closed port): span start+end
   through a ``BatchSpanProcessor`` with the MLflow exporter, against the same pipeline with MLflow
   up and with an exporter that does nothing, and the cost of one ``export()`` call per span.
   The difference to the no-op exporter is background CPU (record building, writes, spooling)
   taking the GIL from the app thread, not waiting: ``export()`` itself only appends to a buffer.

Where the client CPU goes (printed for every run-per-trace server case, and ``--cases convert``):

(a) pure conversion per trace, no I/O, in this thread: ``build_record`` without and with the OTLP
    encoding, the Traces payload (``prepare_for_mlflow`` + serialization), the JSON text of
    ``llm_calls.json`` and ``span_tree.json``, the ``span_tree.html`` page;
(b) the writer threads' CPU per request by endpoint (``time.thread_time``): the CPU a writer
    thread spent from the previous request's end (or the start of ``write()``) to the end of this
    request, split into "client" (MLflow client layers, payload building, before ``send``) and
    "transport" (``requests`` / ``urllib3`` inside ``Session.send``), plus the assembler's
    ``build_record`` and what ``write()`` spends after its last request. The rest of the process
    CPU (trace buffer, delivery, the benchmark's own ``export()`` calls, GC) is the remainder.
``--profile PATH`` adds a cProfile of the writer threads' ``write()`` and the assembler's
``build_record`` (merged over threads, the first server case only) to PATH and prints its top.

Traces are synthetic but shaped like a LangChain app traced by ``OtelTracer``: a workflow root, a
prompt, a chat call with ~1 KB of message content and token usage, a parser and a tool (5 spans).
They are generated before timing; the timer covers ``export()`` of every span until
``force_flush()`` returns (everything written), and the script checks MLflow holds what it should.
Prints one table (markdown) at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402
from opentelemetry.sdk.resources import Resource  # noqa: E402
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import (  # noqa: E402
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)

from otel_mlflow._common import semconv as A  # noqa: E402
from otel_mlflow._export.exporter import MlflowSpanExporter  # noqa: E402

# --- request counting --------------------------------------------------------------------------
_requests: Counter[str] = Counter()
_count_lock = threading.Lock()
_original_send = requests.Session.send


# Writer-thread CPU by endpoint: "client" (before send) and "transport" (inside send), seconds.
_cpu_client: defaultdict[str, float] = defaultdict(float)
_cpu_transport: defaultdict[str, float] = defaultdict(float)
_mark = threading.local()  # .t: thread CPU time at the last attribution point inside write()


def _counting_send(self: requests.Session, request: requests.PreparedRequest, **kwargs: Any) -> Any:
    path = (request.path_url or "").split("?")[0]
    if "/mlflow-artifacts/artifacts/" in path:
        path = "/api/2.0/mlflow-artifacts/artifacts/<file>"
    endpoint = f"{request.method} {path}"
    before = time.thread_time()
    try:
        return _original_send(self, request, **kwargs)
    finally:
        after = time.thread_time()
        mark = getattr(_mark, "t", None)
        with _count_lock:
            _requests[endpoint] += 1
            if mark is not None:
                _cpu_client[endpoint] += before - mark
                _cpu_transport[endpoint] += after - before
        if mark is not None:
            _mark.t = after


requests.Session.send = _counting_send  # type: ignore[method-assign]


# --- writer / assembler CPU (and an optional cProfile of both) ---------------------------------
_cpu_phase: defaultdict[str, float] = defaultdict(float)  # "build_record", "write() after the last request"
_profiles: dict[int, Any] = {}  # thread id -> cProfile.Profile while profiling is on
_profiling = threading.Event()


def _profile_of_thread() -> Any:
    import cProfile

    ident = threading.get_ident()
    with _count_lock:
        prof = _profiles.get(ident)
        if prof is None:
            prof = _profiles[ident] = cProfile.Profile(time.thread_time)  # CPU, not waits
    return prof


def _instrument() -> None:
    """Wrap ``MlflowWriter.write`` and the assembler's ``build_record`` (once) to attribute CPU."""
    from otel_mlflow._export import assembler
    from otel_mlflow._sink.runs import MlflowWriter

    if getattr(MlflowWriter.write, "_bench", False):
        return
    original_write = MlflowWriter.write
    original_build = assembler.build_record

    def write(self: Any, record: Any, attempt: int = 0) -> None:
        prof = _profile_of_thread() if _profiling.is_set() else None
        _mark.t = time.thread_time()
        if prof is not None:
            prof.enable()
        try:
            original_write(self, record, attempt)
        finally:
            if prof is not None:
                prof.disable()
            rest = time.thread_time() - _mark.t
            _mark.t = None
            with _count_lock:
                _cpu_phase["write() after its last request"] += rest

    def build_record(*args: Any, **kwargs: Any) -> Any:
        prof = _profile_of_thread() if _profiling.is_set() else None
        started = time.thread_time()
        if prof is not None:
            prof.enable()
        try:
            return original_build(*args, **kwargs)
        finally:
            if prof is not None:
                prof.disable()
            with _count_lock:
                _cpu_phase["assembler: build_record"] += time.thread_time() - started

    write._bench = True  # type: ignore[attr-defined]
    MlflowWriter.write = write  # type: ignore[method-assign]
    assembler.build_record = build_record  # type: ignore[assignment]


_gc_started: dict[int, float] = {}
_gc_seconds = [0.0, 0]  # seconds in the cyclic garbage collector (any thread), collections
_gc_by_generation: Counter[int] = Counter()  # collections per generation
_gc_seconds_by_generation: defaultdict[int, float] = defaultdict(float)


def _gc_callback(phase: str, info: dict[str, Any]) -> None:
    # The collector runs with the GIL held, so its wall time is this process's CPU time.
    ident = threading.get_ident()
    if phase == "start":
        _gc_started[ident] = time.perf_counter()
    elif ident in _gc_started:
        took = time.perf_counter() - _gc_started.pop(ident)
        _gc_seconds[0] += took
        _gc_seconds[1] += 1
        _gc_by_generation[info["generation"]] += 1
        _gc_seconds_by_generation[info["generation"]] += took


def _reset_counters() -> None:
    _gc_seconds[:] = [0.0, 0]
    _gc_by_generation.clear()
    _gc_seconds_by_generation.clear()
    with _count_lock:
        _requests.clear()
        _cpu_client.clear()
        _cpu_transport.clear()
        _cpu_phase.clear()


def _dump_profile(path: str, top: int = 30) -> str:
    import io
    import pstats

    with _count_lock:
        profiles = list(_profiles.values())
        _profiles.clear()
    if not profiles:
        return "(no profile)"
    stats = pstats.Stats(profiles[0])
    for prof in profiles[1:]:
        stats.add(prof)
    stats.dump_stats(path)
    out = io.StringIO()
    pstats.Stats(path, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


def conversion_breakdown(traces: Sequence[Sequence[ReadableSpan]]) -> dict[str, float]:
    """Pure conversion CPU per trace (ms, this thread, no I/O), step by step."""
    from otel_mlflow._record import build_record
    from otel_mlflow._record.traces_payload import prepare_for_mlflow
    from otel_mlflow._sink.run_views import trace_page_text

    def per_trace(fn: Any, items: Sequence[Any]) -> float:
        for item in items[:5]:
            fn(item)  # warm caches (price lookups, imports)
        started = time.thread_time()
        for item in items:
            fn(item)
        return (time.thread_time() - started) / len(items) * 1e3

    records = [build_record(t) for t in traces]
    out = {
        "build_record, link off (encode=False)": per_trace(
            lambda t: build_record(t, encode=False), traces),
        "build_record, link on (with OTLP encoding)": per_trace(build_record, traces),
        "Traces payload: prepare_for_mlflow + serialize": per_trace(
            lambda r: prepare_for_mlflow(r.otlp).request.SerializeToString(), records),
        "llm_calls.json text": per_trace(
            lambda r: json.dumps(r.table.to_dict(), ensure_ascii=False, allow_nan=True), records),
        "span_tree.json text": per_trace(
            lambda r: json.dumps(dict(r.tree), ensure_ascii=False, allow_nan=True), records),
        "span_tree.html page": per_trace(trace_page_text, records),
        "TraceRecord.to_json (spool form, only on failures)": per_trace(
            lambda r: r.to_json(), records),
    }
    return out


# --- synthetic traces ----------------------------------------------------------------------------
CONTENT = "これはベンチマーク用の質問です。" * 20 + " What is the capital of Japan?" * 10


def make_traces(n: int, run_id: str | None = None) -> list[list[ReadableSpan]]:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "bench"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("bench")
    root_attrs: dict[str, Any] = {A.ROOT: True, A.LC_RUN_TYPE: A.RUN_CHAIN,
                                  A.GEN_AI_OPERATION_NAME: A.OP_INVOKE_WORKFLOW,
                                  A.LC_TAGS: ("bench",),
                                  A.LC_METADATA: json.dumps({"user": "u1"}),
                                  A.INPUT: json.dumps({"q": CONTENT}, ensure_ascii=False)}
    if run_id:
        root_attrs[A.MLFLOW_RUN_ID] = run_id
    messages = json.dumps([{"role": "user", "parts": [{"type": "text", "content": CONTENT}]}],
                          ensure_ascii=False)
    answer = json.dumps([{"role": "assistant", "parts": [{"type": "text", "content": "Tokyo"}],
                          "finish_reason": "stop"}])
    for _ in range(n):
        with tracer.start_as_current_span("invoke_workflow app", attributes=root_attrs):
            with tracer.start_as_current_span("ChatPromptTemplate",
                                              attributes={A.LC_RUN_TYPE: A.RUN_CHAIN}):
                pass
            with tracer.start_as_current_span("chat gemini-2.5-flash", attributes={
                A.GEN_AI_OPERATION_NAME: A.OP_CHAT, A.LC_RUN_TYPE: A.RUN_CHAT_MODEL,
                A.GEN_AI_PROVIDER_NAME: A.PROVIDER_GCP_VERTEX_AI,
                A.GEN_AI_REQUEST_MODEL: "gemini-2.5-flash", A.GEN_AI_REQUEST_TEMPERATURE: 0.2,
                A.GEN_AI_USAGE_INPUT_TOKENS: 120, A.GEN_AI_USAGE_OUTPUT_TOKENS: 3,
                A.USAGE_TOTAL_TOKENS: 130, A.GEN_AI_INPUT_MESSAGES: messages,
                A.GEN_AI_OUTPUT_MESSAGES: answer, A.GEN_AI_RESPONSE_FINISH_REASONS: ("stop",),
            }):
                pass
            with tracer.start_as_current_span("StrOutputParser",
                                              attributes={A.LC_RUN_TYPE: A.RUN_CHAIN}):
                pass
            with tracer.start_as_current_span("execute_tool weather", attributes={
                A.GEN_AI_OPERATION_NAME: A.OP_EXECUTE_TOOL, A.LC_RUN_TYPE: A.RUN_TOOL,
                A.GEN_AI_TOOL_NAME: "weather"}):
                pass
    by_trace: dict[int, list[ReadableSpan]] = {}
    for span in memory.get_finished_spans():
        by_trace.setdefault(span.context.trace_id, []).append(span)
    provider.shutdown()
    return list(by_trace.values())


_server_pids: list[int] = []  # the running benchmark server, for its CPU time


def _server_cpu_seconds() -> float:
    try:
        import psutil
    except ImportError:
        return float("nan")
    total = 0.0
    for pid in _server_pids:
        try:
            proc = psutil.Process(pid)
            for each in [proc, *proc.children(recursive=True)]:
                times = each.cpu_times()
                total += times.user + times.system
        except psutil.Error:
            continue
    return total


class CpuMeter:
    """CPU seconds of this process and of the benchmark server during a ``with`` block."""

    def __enter__(self) -> CpuMeter:
        self._client = time.process_time()
        self._server = _server_cpu_seconds()
        return self

    def __exit__(self, *exc: object) -> None:
        self.client = time.process_time() - self._client
        self.server = _server_cpu_seconds() - self._server if _server_pids else float("nan")


def drain(exporter: MlflowSpanExporter, traces: Sequence[Sequence[ReadableSpan]]) -> float:
    """Seconds from the first export() until force_flush() says everything is written."""
    flat = [span for trace in traces for span in trace]
    started = time.perf_counter()
    for i in range(0, len(flat), 512):  # BatchSpanProcessor's default batch size
        exporter.export(flat[i : i + 512])
    ok = exporter.force_flush(600_000)
    elapsed = time.perf_counter() - started
    if not ok:
        raise RuntimeError(f"flush did not finish: {exporter.delivery.stats}")
    return elapsed


# --- cases -----------------------------------------------------------------------------------------
def case_run_per_trace(uri: str, n: int, link: bool, spool: Path,
                       workers: int | None = None, profile: bool = False) -> dict[str, Any]:
    from mlflow.tracking import MlflowClient

    experiment = f"bench-{uuid.uuid4().hex[:8]}"
    exporter = MlflowSpanExporter(uri, experiment, link_traces=link, grace_seconds=0.0,
                                  spool_dir=str(spool), workers=workers)
    # Warm up once (client, experiment, store connection) outside the timed part.
    drain(exporter, make_traces(1))
    traces = make_traces(n)
    _reset_counters()
    if profile:
        _profiling.set()
    try:
        with CpuMeter() as cpu:
            elapsed = drain(exporter, traces)
    finally:
        _profiling.clear()
    with _count_lock:
        counts = dict(_requests)
        cpu_by_endpoint = {k: (_cpu_client[k] / n * 1e3, _cpu_transport[k] / n * 1e3,
                               _cpu_client[k] / v * 1e3 + _cpu_transport[k] / v * 1e3)
                           for k, v in counts.items()}
        phases = {k: v / n * 1e3 for k, v in _cpu_phase.items()}
    gc_ms = _gc_seconds[0] / n * 1e3
    full_gc_ms = _gc_seconds_by_generation[2] / n * 1e3
    gc_runs = ", ".join(f"gen{g} {_gc_by_generation[g]} × "
                        f"{_gc_seconds_by_generation[g] / _gc_by_generation[g] * 1e3:.1f} ms"
                        for g in sorted(_gc_by_generation))
    exporter.shutdown()
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=5000)
    finished = sum(1 for r in runs if r.info.status == "FINISHED")
    if finished != n + 1:
        raise RuntimeError(f"expected {n + 1} finished runs, found {finished} of {len(runs)}")
    run_requests = sum(v for k, v in counts.items() if not _is_traces_view_request(k))
    return {"traces_per_s": n / elapsed, "seconds": elapsed,
            "requests_per_trace": sum(counts.values()) / n if counts else 0.0,
            "run_requests_per_trace": run_requests / n,
            "client_ms": cpu.client / n * 1e3, "server_ms": cpu.server / n * 1e3,
            "by_endpoint": {k: round(v / n, 2) for k, v in sorted(counts.items())},
            "cpu_by_endpoint": cpu_by_endpoint, "phases": phases,
            "gc_ms": gc_ms, "gc_runs": gc_runs,
            "client_ms_no_full_gc": cpu.client / n * 1e3 - full_gc_ms}


def request_floor(uri: str, n: int = 100) -> dict[str, float]:
    """CPU ms (this thread) of the cheapest requests MLflow's client makes, and their parts.

    ``GET experiments/get`` through the REST store is what any MLflow request costs the client at
    least; header resolution (``resolve_request_headers``: the Databricks context probes MLflow
    runs on every request) and a bare ``requests`` GET of ``/health`` (a plain session) are
    parts of it. Measured on the same server as the case, between the cases.
    """
    from mlflow.tracking import MlflowClient
    from mlflow.tracking.request_header.registry import resolve_request_headers

    client = MlflowClient(uri)
    store = client._tracking_client.store  # noqa: SLF001
    exp_id = client.create_experiment(f"bench-floor-{uuid.uuid4().hex[:8]}")
    session = requests.Session()  # trust_env like MLflow's: proxy lookups from the environment

    def per_call(fn: Any) -> float:
        fn()
        started = time.thread_time()
        for _ in range(n):
            fn()
        return (time.thread_time() - started) / n * 1e3

    return {
        "GET experiments/get (REST store)": per_call(lambda: store.get_experiment(exp_id)),
        "resolve_request_headers (no request)": per_call(resolve_request_headers),
        "bare requests GET /health": per_call(
            lambda: session.get(f"{uri}/health", timeout=10)),
    }


def _is_traces_view_request(endpoint: str) -> bool:
    return endpoint.endswith("/v1/traces") or "/traces/link-to-run" in endpoint


def case_active_run(uri: str, n: int, spool: Path) -> dict[str, Any]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp_id = client.create_experiment(f"bench-active-{uuid.uuid4().hex[:8]}")
    run = client.create_run(exp_id)
    run_id = run.info.run_id
    exporter = MlflowSpanExporter(uri, link_traces=False, grace_seconds=0.0,
                                  spool_dir=str(spool))
    drain(exporter, make_traces(1, run_id))
    traces = make_traces(n, run_id)
    with _count_lock:
        _requests.clear()
    with CpuMeter() as cpu:
        elapsed = drain(exporter, traces)
    with _count_lock:
        total = sum(_requests.values())
    exporter.shutdown()
    count = client.get_run(run_id).data.tags.get("otel_mlflow.trace_count")
    if count != str(n + 1):
        raise RuntimeError(f"active run holds {count} traces, expected {n + 1}")
    return {"traces_per_s": n / elapsed, "seconds": elapsed,
            "requests_per_trace": total / n,
            "client_ms": cpu.client / n * 1e3, "server_ms": cpu.server / n * 1e3}


def case_mlflow_own_tracing(uri: str, n: int) -> dict[str, Any]:
    """Anchor: MLflow's own tracing client draining the same 5-span traces to the same server."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(f"bench-mlflow-{uuid.uuid4().hex[:8]}")

    def one() -> None:
        with mlflow.start_span("invoke_workflow app", span_type="CHAIN") as root:
            root.set_inputs({"q": CONTENT})
            with mlflow.start_span("ChatPromptTemplate"):
                pass
            with mlflow.start_span("chat gemini-2.5-flash", span_type="CHAT_MODEL") as chat:
                chat.set_inputs({"messages": [{"role": "user", "content": CONTENT}]})
                chat.set_outputs("Tokyo")
            with mlflow.start_span("StrOutputParser"):
                pass
            with mlflow.start_span("execute_tool weather", span_type="TOOL"):
                pass

    one()
    mlflow.flush_trace_async_logging()
    with CpuMeter() as cpu:
        started = time.perf_counter()
        for _ in range(n):
            one()
        mlflow.flush_trace_async_logging()
        elapsed = time.perf_counter() - started
    return {"traces_per_s": n / elapsed, "seconds": elapsed,
            "client_ms": cpu.client / n * 1e3, "server_ms": cpu.server / n * 1e3}


class _NullExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _span_cost_us(exporter: SpanExporter, spans: int) -> float:
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    tracer = provider.get_tracer("bench")
    samples = []
    for _ in range(5):
        started = time.perf_counter()
        for i in range(spans // 5):
            with tracer.start_as_current_span("invoke_workflow app", attributes={A.ROOT: True}):
                pass
        samples.append((time.perf_counter() - started) / (spans // 5) * 1e6)
    provider.shutdown()
    return statistics.median(samples)


def case_mlflow_down(spool: Path, spans: int, up_uri: str) -> dict[str, Any]:
    uri = f"http://127.0.0.1:{_closed_port()}"
    null_us = _span_cost_us(_NullExporter(), spans)
    up = MlflowSpanExporter(up_uri, f"bench-up-{uuid.uuid4().hex[:8]}", grace_seconds=0.0,
                            spool_dir=str(spool / "up"), shutdown_timeout_seconds=30.0)
    up_us = _span_cost_us(up, spans)
    exporter = MlflowSpanExporter(uri, grace_seconds=0.0, spool_dir=str(spool),
                                  retry_max_seconds=1.0, shutdown_timeout_seconds=2.0)
    down_us = _span_cost_us(exporter, spans)
    traces = make_traces(2000)
    flat = [s for t in traces for s in t]
    exporter2 = MlflowSpanExporter(uri, grace_seconds=60.0, spool_dir=str(spool),
                                   shutdown_timeout_seconds=2.0)
    started = time.perf_counter()
    for i in range(0, len(flat), 512):
        exporter2.export(flat[i : i + 512])
    export_us = (time.perf_counter() - started) / len(flat) * 1e6
    exporter2.shutdown(timeout_millis=2000)
    return {"span_us_null": null_us, "span_us_mlflow_up": up_us, "span_us_mlflow_down": down_us,
            "export_us": export_us}


SERVER_CONFIGS: dict[str, str] = {
    "tests": "1 worker, artifacts proxied (--serve-artifacts)",
    "team": "2 workers, artifacts proxied (--serve-artifacts)",
    "local-artifacts": "1 worker, --no-serve-artifacts, local --default-artifact-root",
}


def _server_args(config: str, work: Path) -> tuple[str, ...]:
    if config == "team":
        return ("--workers", "2")
    if config == "local-artifacts":
        return ("--no-serve-artifacts", "--default-artifact-root", str(work / "local-artifacts"))
    return ()


CASES: dict[str, str] = {
    "embedded": "run per trace and active run into the embedded sqlite store",
    "server": "run per trace into each server configuration, link off and on",
    "anchor": "MLflow's own tracing client (server `tests`)",
    "active": "active-run mode (server `tests`)",
    "down": "app-thread cost per span, MLflow up and down",
    "convert": "pure conversion CPU per trace, no I/O",
}


def _fmt(value: float, digits: int = 1) -> str:
    return "-" if value != value else f"{value:.{digits}f}"  # NaN: not measured


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, default=300, help="traces per run-per-trace case")
    parser.add_argument("--active-traces", type=int, default=3000,
                        help="traces for the active-run cases")
    parser.add_argument("--skip-server", action="store_true")
    parser.add_argument("--server-configs", default=",".join(SERVER_CONFIGS),
                        help=f"comma-separated, of: {', '.join(SERVER_CONFIGS)}")
    parser.add_argument("--cases", default=",".join(CASES),
                        help=f"comma-separated, of: {', '.join(CASES)} (default: all)")
    parser.add_argument("--profile", metavar="PATH", default=None,
                        help="cProfile the writer threads and build_record in one extra "
                             "run-per-trace pass (link on, first server config) into PATH")
    args = parser.parse_args(argv)
    configs = [c for c in args.server_configs.split(",") if c]
    unknown = [c for c in configs if c not in SERVER_CONFIGS]
    if unknown:
        parser.error(f"unknown server configuration(s): {', '.join(unknown)}")
    cases = {c for c in args.cases.split(",") if c}
    if cases - set(CASES):
        parser.error(f"unknown case(s): {', '.join(sorted(cases - set(CASES)))}")
    _instrument()
    import gc

    gc.callbacks.append(_gc_callback)

    import logging

    logging.basicConfig(level=logging.ERROR)
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    # Offline: MLflow prices token usage from its bundled catalog instead of trying a download
    # (the server inherits this environment).
    os.environ.setdefault("MLFLOW_MODEL_CATALOG_URI", "")
    # case, traces/s, requests/trace (all), run requests/trace, client ms, server ms, traces
    rows: list[tuple[str, ...]] = []
    details: dict[str, Any] = {}
    conversion: dict[str, float] = {}
    floors: dict[str, dict[str, float]] = {}
    profile_text = ""

    def add(case: str, res: dict[str, Any], n: int) -> None:
        rows.append((case, f"{res['traces_per_s']:.1f}",
                     _fmt(res.get("requests_per_trace", float("nan")), 2),
                     _fmt(res.get("run_requests_per_trace", float("nan")), 2),
                     _fmt(res.get("client_ms", float("nan"))),
                     _fmt(res.get("server_ms", float("nan"))), str(n)))

    with tempfile.TemporaryDirectory(prefix="otel_mlflow-bench-") as tmp:
        work = Path(tmp)
        old_cwd = os.getcwd()
        os.chdir(work)
        try:
            embedded = "sqlite:///mlflow.db"
            if "convert" in cases:
                conversion = conversion_breakdown(make_traces(max(args.traces, 50)))
            if "embedded" in cases:
                for link in (False, True):
                    res = case_run_per_trace(embedded, args.traces, link,
                                             work / f"spool-e{link}")
                    add(f"run per trace, embedded sqlite, link {'on' if link else 'off'}", res,
                        args.traces)
                res = case_active_run(embedded, args.active_traces, work / "spool-ea")
                add("active run, embedded sqlite", res, args.active_traces)
            down: dict[str, float] | None = None
            profiled = False
            needs_server = args.profile or cases & {"server", "anchor", "active", "down"}
            if not args.skip_server and needs_server:
                from tests._support.mlflow_server import MlflowServer

                for config in configs:
                    server = MlflowServer(root=work / f"server-{config}",
                                          extra_args=_server_args(config, work)).start()
                    assert server.proc is not None
                    _server_pids[:] = [server.proc.pid]
                    try:
                        for link in (False, True) if "server" in cases else ():
                            res = case_run_per_trace(server.url, args.traces, link,
                                                     work / f"spool-{config}-{link}")
                            state = "on" if link else "off"
                            name = f"run per trace, server `{config}`, link {state}"
                            add(name, res, args.traces)
                            details[name] = res
                        if "server" in cases:
                            floors[config] = request_floor(server.url)
                        if args.profile and not profiled:
                            case_run_per_trace(server.url, args.traces, True,
                                               work / f"spool-{config}-prof", profile=True)
                            profile_text = _dump_profile(args.profile)
                            profiled = True
                        if config == "tests" and "anchor" in cases:
                            res = case_mlflow_own_tracing(server.url, args.traces)
                            add("anchor: MLflow's own tracing client, server `tests`", res,
                                args.traces)
                        if config == "tests" and "active" in cases:
                            res = case_active_run(server.url, args.active_traces,
                                                  work / "spool-sa")
                            add("active run, server `tests`", res, args.active_traces)
                        if config == "tests" and "down" in cases:
                            down = case_mlflow_down(work / "spool-down", 3000, server.url)
                    finally:
                        _server_pids.clear()
                        server.stop()
            if down is None and "down" in cases:
                down = case_mlflow_down(work / "spool-down", 3000, embedded)
        finally:
            os.chdir(old_cwd)

    print(f"# exporter throughput — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"load average {os.getloadavg()[0]:.1f}")
    print()
    if not args.skip_server:
        print("server configurations (sqlite backend, MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false):")
        for config in configs:
            print(f"  {config}: {SERVER_CONFIGS[config]}")
        print()
    print("| case | traces/s | HTTP requests/trace | run requests/trace | client CPU ms/trace "
          "| server CPU ms/trace | traces |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    if down is not None:
        print()
        print("| app thread, per span (one-span traces) | µs |")
        print("| --- | ---: |")
        print(f"| span start+end, BatchSpanProcessor + no-op exporter "
              f"| {down['span_us_null']:.1f} |")
        print(f"| span start+end, BatchSpanProcessor + MlflowSpanExporter (MLflow up) "
              f"| {down['span_us_mlflow_up']:.1f} |")
        print(f"| span start+end, BatchSpanProcessor + MlflowSpanExporter (MLflow down) "
              f"| {down['span_us_mlflow_down']:.1f} |")
        print(f"| MlflowSpanExporter.export() per span (MLflow down) "
              f"| {down['export_us']:.2f} |")
    if "convert" in cases:
        print()
        print("| pure conversion, per 5-span trace (no I/O) | CPU ms |")
        print("| --- | ---: |")
        for step, ms in conversion.items():
            print(f"| {step} | {ms:.3f} |")
    for name, res in details.items():
        print()
        print(f"client CPU by endpoint ({name}; ms per trace; per request = client + "
              f"transport over requests):")
        print()
        print("| endpoint | requests/trace | client ms/trace | transport ms/trace "
              "| ms/request |")
        print("| --- | ---: | ---: | ---: | ---: |")
        total = 0.0
        for endpoint, count in res["by_endpoint"].items():
            client_ms, transport_ms, per_request = res["cpu_by_endpoint"][endpoint]
            total += client_ms + transport_ms
            print(f"| `{endpoint}` | {count} | {client_ms:.2f} | {transport_ms:.2f} "
                  f"| {per_request:.2f} |")
        for phase, ms in sorted(res["phases"].items()):
            total += ms
            print(f"| {phase} | - | {ms:.2f} | - | - |")
        print(f"| rest of the process (buffer, delivery, export() calls, GC) | - "
              f"| {res['client_ms'] - total:.2f} | - | - |")
        print(f"| (of all the above: cyclic GC; collections: {res['gc_runs'] or 'none'}) | - "
              f"| {res['gc_ms']:.2f} | - | - |")
        print(f"| **process CPU** | {res['requests_per_trace']:.2f} | "
              f"{res['client_ms']:.2f} | | |")
        print(f"| process CPU without full (gen2) collections: they come every few hundred "
              f"traces, one lands in a case or not | - | {res['client_ms_no_full_gc']:.2f} | | |")
    for config, floor in floors.items():
        print()
        print(f"MLflow client floor per request (server `{config}`, this thread, CPU ms):")
        print()
        print("| request | CPU ms |")
        print("| --- | ---: |")
        for what, ms in floor.items():
            print(f"| {what} | {ms:.2f} |")
        for name, res in details.items():
            if f"`{config}`" in name:
                cheapest = floor["GET experiments/get (REST store)"]
                print(f"| {name}: process CPU ÷ (requests/trace × the GET) | "
                      f"{res['client_ms'] / (res['requests_per_trace'] * cheapest):.2f} |")
    if profile_text:
        print()
        print(f"cProfile of the writer threads + build_record ({args.profile}), by tottime:")
        print(profile_text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
