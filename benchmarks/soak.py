"""Soak: 50,000 traces through ``OtelTracer`` + ``MlflowSpanExporter``; resident memory stays flat.

Run from the repository root::

    python benchmarks/soak.py                      # 50,000 traces at 400/s, null sink (~2 min)
    python benchmarks/soak.py --rate 0             # unpaced: as fast as the app thread can go
    python benchmarks/soak.py --traces 5000        # quick look
    python benchmarks/soak.py --rate 0 --max-buffered-traces 100   # back-pressure engaged
    python benchmarks/soak.py --sink sqlite --traces 2000   # the real embedded store (slow)

The pipeline is the normal one: a real LangChain chain (``prompt | fake chat model | parser``,
4 spans per trace) with ``OtelTracer`` as callback, a ``TracerProvider`` with a
``BatchSpanProcessor`` and ``MlflowSpanExporter`` (per-trace buffers, assembly into
``TraceRecord``s with the span tree, the table and the OTLP bytes, ``Delivery`` workers).

The producer is paced (``--rate``, default 400 traces/s, ~1,600 spans/s, far above what one LLM
app process produces). Unpaced (``--rate 0``) on a shared 2-core machine the app thread can
outrun the exporter's assembler; the exporter then holds at most ``max_buffered_traces`` traces
(buffered + taken for assembly; the exporting thread converts the overflow itself, counted in
``stats["early"]``), the delivery queue is bounded too, and glibc keeps the high-water mark of
what was held as raw RSS.

Sinks (what ``Delivery`` writes to):

- ``null`` (default): a counting write function that discards the record, so 50,000 traces finish
  in minutes and the figures show the tracer's and exporter's own memory; MLflow's would dominate
  otherwise (the embedded store writes ~30 traces/s);
- ``sqlite``: the real ``MlflowWriter`` on the embedded ``sqlite:///mlflow.db`` in a temp dir.

RSS (psutil) is sampled after the warm-up, every 5,000 traces and at the end (after flush and a
garbage collection), raw and after glibc ``malloc_trim(0)`` (glibc keeps freed pages mapped, so
raw RSS is the high-water mark of any transient backlog; trimmed RSS tracks live memory), with ``sys.getallocatedblocks()`` (live Python objects: the leak indicator
that allocator fragmentation does not blur) and the exporter's remembered-trace-id set, which is
capped (50,000 ids, to count late spans) and so grows until that cap by design. The run passes
when trimmed end RSS - trimmed RSS at the first 5,000 is below ``--max-growth-mb`` (default 25 MB) and no state
is left in the tracer or exporter; the exit code says so.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil  # noqa: E402


def _libc() -> Any:
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        return libc
    except (OSError, AttributeError):
        return None


def build_chain() -> Any:
    from langchain_core.language_models.fake_chat_models import FakeListChatModel
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate

    prompt = ChatPromptTemplate.from_messages([("system", "Be brief."), ("human", "{q}")])
    return prompt | FakeListChatModel(responses=["an answer of a few words"]) | StrOutputParser()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, default=50_000)
    parser.add_argument("--every", type=int, default=5_000)
    parser.add_argument("--sink", choices=("null", "sqlite"), default="null")
    parser.add_argument("--max-growth-mb", type=float, default=25.0)
    parser.add_argument(
        "--rate", type=float, default=400.0,
        help="traces per second the app produces (0 = as fast as possible)",
    )
    parser.add_argument(
        "--max-buffered-traces", type=int, default=None,
        help="the exporter's cap (default: its own default); small values engage back-pressure",
    )
    args = parser.parse_args(argv)

    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from otel_mlflow._export.exporter import MlflowSpanExporter
    from otel_mlflow._tracing.handler import OtelTracer

    workdir = Path(tempfile.mkdtemp(prefix="otel_mlflow-soak-"))
    os.chdir(workdir)
    written = {"n": 0}
    lock = threading.Lock()

    def null_write(record: Any, attempt: int = 0) -> None:
        with lock:
            written["n"] += 1

    exporter = MlflowSpanExporter(
        tracking_uri="sqlite:///mlflow.db",
        experiment_name="soak",
        spool_dir=str(workdir / "spool"),
        grace_seconds=0.2,
        link_traces=False,
        max_buffered_traces=args.max_buffered_traces,
        write=null_write if args.sink == "null" else None,
    )
    provider = TracerProvider()
    processor = BatchSpanProcessor(exporter, max_queue_size=16_384, schedule_delay_millis=200)
    provider.add_span_processor(processor)
    tracer = OtelTracer(tracer_provider=provider)
    chain = build_chain()
    config = {"callbacks": [tracer]}
    proc = psutil.Process()

    libc = _libc()

    def rss_mb() -> float:
        return proc.memory_info().rss / 1e6

    def trimmed_mb() -> float:
        # glibc keeps freed heap pages mapped (RSS = high-water mark of any transient backlog);
        # malloc_trim hands them back so the figure tracks live memory.
        if libc is not None:
            libc.malloc_trim(0)
        return rss_mb()

    for i in range(200):  # warm-up: imports, caches, first allocations
        chain.invoke({"q": f"warm {i}"}, config=config)
    provider.force_flush()
    exporter.force_flush(60_000)
    gc.collect()
    print(f"sink={args.sink} traces={args.traces} rate={args.rate or 'max'}/s "
          f"max_buffered_traces={exporter.max_buffered_traces} workdir={workdir}", flush=True)
    print(f"{'traces':>8} {'elapsed s':>10} {'RSS MB':>8} {'trimmed':>8} {'kblocks':>8} "
          f"{'held':>6} {'max held':>8} {'open runs':>9} {'done ids':>8}", flush=True)
    # (traces, raw RSS, RSS after malloc_trim, live blocks)
    samples: list[tuple[int, float, float, int]] = []
    start = time.perf_counter()
    peak = {"held": 0, "sdk": 0}
    stop_watch = threading.Event()

    def held() -> int:
        # Traces the exporter holds: buffered plus taken for assembly, not yet submitted.
        return len(getattr(exporter, "_buffers", ())) + int(getattr(exporter, "_backlog", 0))

    def sdk_queued() -> int:
        # Spans waiting in the BatchSpanProcessor's queue (the SDK's own bounded buffer).
        return len(getattr(getattr(processor, "_batch_processor", None), "_queue", ()))

    def watch() -> None:
        while not stop_watch.wait(0.05):
            peak["held"] = max(peak["held"], held())
            peak["sdk"] = max(peak["sdk"], sdk_queued())

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()

    def sample(label: int | str) -> None:
        raw = rss_mb()
        trimmed = trimmed_mb()
        blocks = sys.getallocatedblocks()
        samples.append((0 if isinstance(label, str) else label, raw, trimmed, blocks))
        print(f"{label:>8} {time.perf_counter() - start:>10.1f} {raw:>8.1f} {trimmed:>8.1f} "
              f"{blocks / 1e3:>8.0f} {held():>6} {peak['held']:>8} "
              f"{tracer.open_runs:>9} {len(getattr(exporter, '_done', ())):>8}", flush=True)

    sample(0)
    for i in range(1, args.traces + 1):
        chain.invoke({"q": f"question {i}"}, config=config)
        if args.rate > 0:
            # A service's requests arrive over time; a paced producer leaves the exporter its
            # share of the GIL, as real I/O-bound LLM calls do.
            ahead = start + i / args.rate - time.perf_counter()
            if ahead > 0:
                time.sleep(ahead)
        if i % args.every == 0:
            sample(i)
    provider.force_flush()
    flushed = exporter.force_flush(600_000)
    elapsed = time.perf_counter() - start
    stop_watch.set()
    gc.collect()
    sample("end")
    buffered = len(getattr(exporter, "_buffers", ()))
    delivered = exporter.delivery.stats["written"]
    _, start_raw, start_trim, _ = samples[0]
    first = next((s for s in samples if s[0] >= args.every), samples[0])
    _, end_raw, end_trim, _ = samples[-1]
    max_raw = max(s[1] for s in samples)
    growth = end_trim - first[2]
    print(
        f"RSS start {start_raw:.1f} MB, end {end_raw:.1f} MB, max sampled {max_raw:.1f} MB; "
        f"traces held by the exporter: max {peak['held']} (cap {exporter.max_buffered_traces}); "
        f"spans queued in the SDK: max {peak['sdk']} (cap 16384); "
        f"after malloc_trim: start "
        f"{start_trim:.1f}, at {first[0]}: {first[2]:.1f}, end {end_trim:.1f} MB "
        f"(growth after the first {first[0]} traces: {growth:+.1f} MB); "
        f"{args.traces / elapsed:.0f} traces/s; records delivered {delivered}"
        + (f" (null sink counted {written['n']})" if args.sink == "null" else "")
        + f"; flushed={flushed}; exporter stats {exporter.stats}"
    )
    exporter.shutdown()
    provider.shutdown()
    ok = (
        growth < args.max_growth_mb
        and buffered == 0
        and tracer.open_runs == 0
        and delivered >= args.traces + 200
    )
    print("PASS: memory flat, no state left" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
