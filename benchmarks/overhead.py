"""Tracer overhead per LangChain invocation, against no tracing, a floor handler and other tracers.

Run from the repository root::

    python benchmarks/overhead.py                    # full run (a few minutes on 2 cores)
    python benchmarks/overhead.py --rounds 3 --quick # smoke run
    python benchmarks/overhead.py --profile otel_on --workload simple   # where the time goes
    python benchmarks/overhead.py --replay           # handler-only cost, LangChain dispatch left out

Cases (each measurement runs in a FRESH subprocess; cases alternate within every round):

- ``none``: no callbacks;
- ``otel_on`` / ``otel_off``: ``OtelTracer`` with content capture on (the default) / off;
- ``minimal``: ``benchmarks/minimal_handler.py``, a handler that only starts and ends spans (floor);
- ``openinference`` / ``openllmetry``: their LangChain instrumentations, when importable (install
  ``openinference-instrumentation-langchain`` / ``opentelemetry-instrumentation-langchain`` into
  the venv, or ``pip install --target DIR --no-deps ...`` and pass ``--site DIR``); else skipped.

Workloads: ``simple`` = ``prompt | fake chat model | parser``; ``nested`` = a lambda that calls a
``@tool`` and the chat model. The fake chat model is ``tests/_support/fake_models.FakeChatModel``
(usage metadata, response metadata, ``ls_*`` params: the payloads a real provider sends).

Every tracer exports into the same TracerProvider with one span processor that only counts ended
spans, so the figures are the tracer's own cost on the app thread (the exporter runs elsewhere).
Per subprocess: warm-up, then ``--batches`` batches of ``--per-batch`` invocations; the
subprocess reports its median µs/invocation, both as wall-clock time and as the CPU time of the
calling thread (``time.thread_time_ns``). The tables show the median over rounds; the added µs
is the median over rounds of (case - none of the same round). Separate processes of one case
differ by up to ±15% (memory layout, neighbours), hence many short rounds. On a shared
machine the wall-clock figures mostly measure the neighbours; the CPU-time figures measure what
tracing costs the app thread, and the targets are judged on them (the wall table is printed too).

Columns: µs/invocation; spans/invocation; ratio to no tracing; added µs (case - none); added µs
as a ratio to the minimal handler's and to OpenLLMetry's added µs. Targets (issue 5) for
``otel_on``: added ≤ 1.3 × minimal and ≤ 0.35 × OpenLLMetry, on both workloads.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CASES = ("none", "minimal", "otel_on", "otel_off", "openllmetry", "openinference")
WORKLOADS = ("simple", "nested")
TARGET_VS_MINIMAL = 1.3
TARGET_VS_OPENLLMETRY = 0.35


# --- in the child process -------------------------------------------------------------------
class _Pipeline:
    """The span pipeline every case exports into (the same for all cases).

    A span processor collects ended spans (an append, like ``BatchSpanProcessor``'s queue); after
    each batch an exporter thread reads every attribute of every span, as the OTLP and MLflow
    exporters do, while the app thread waits. This is where ``OtelTracer`` writes its deferred
    content JSON. The reading runs between batches, as an exporter's work runs while an LLM app
    waits on the model: its CPU is in the process-CPU column, not the app thread's. (Run
    concurrently with a CPU-bound app thread, the same work also slows that thread down through
    shared caches and the GIL; see docs/performance.md.)
    """

    def __init__(self) -> None:
        from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

        self.ended = [0]
        collected: list[Any] = []
        self._collected = collected

        class Collect(SpanProcessor):
            def on_end(self, span: Any) -> None:
                collected.append(span)

        self.provider = TracerProvider()
        self.provider.add_span_processor(Collect())

    def drain(self) -> None:
        """Read the collected spans on an exporter thread; wait (sleeping) until it is done."""
        import threading

        batch = self._collected[:]
        del self._collected[:]

        def read() -> None:
            for span in batch:
                self.ended[0] += 1
                for _key, _value in (span.attributes or {}).items():
                    pass

        reader = threading.Thread(target=read)
        reader.start()
        reader.join()


def _provider() -> tuple[Any, list[int]]:
    pipeline = _Pipeline()
    return pipeline.provider, pipeline.ended


def _callbacks(case: str, provider: Any) -> list[Any] | None:
    """The handler to pass per invocation, or None (none / global instrumentations)."""
    return _setup(case, provider)[0]


def _setup(case: str, provider: Any) -> tuple[list[Any] | None, Any]:
    """``(handlers to pass per invocation or None, switch(on: bool))`` for ``case``.

    ``switch`` turns a global instrumentation on or off (``instrument`` / ``uninstrument``), so
    the untraced batches of the same process run without it; a no-op for handler cases.
    """
    instrumentor = _global_instrumentor(case)
    if instrumentor is None:
        return _handlers(case, provider), lambda on: None
    # Both instrumentations add their handler to every callback manager by wrapping
    # ``BaseCallbackManager.__init__``; their ``uninstrument`` does not always undo that, so the
    # switch swaps the wrapped and the original ``__init__`` itself (the child checks that the
    # untraced batches make no span).
    from langchain_core.callbacks import BaseCallbackManager

    original = BaseCallbackManager.__dict__["__init__"]
    instrumentor.instrument(tracer_provider=provider, skip_dep_check=True)
    wrapped = BaseCallbackManager.__dict__["__init__"]

    def switch(on: bool) -> None:
        BaseCallbackManager.__init__ = wrapped if on else original  # type: ignore[method-assign]

    return None, switch


def _global_instrumentor(case: str) -> Any:
    if case == "openinference":
        from openinference.instrumentation.langchain import LangChainInstrumentor

        return LangChainInstrumentor()
    if case == "openllmetry":
        from opentelemetry.instrumentation.langchain import LangchainInstrumentor

        return LangchainInstrumentor()
    return None


def _handlers(case: str, provider: Any) -> list[Any] | None:
    if case == "none":
        return None
    if case == "minimal":
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from minimal_handler import MinimalHandler

        return [MinimalHandler(provider)]
    if case in ("otel_on", "otel_off"):
        from otel_mlflow._tracing.handler import OtelTracer

        return [OtelTracer(provider, capture_content=case == "otel_on")]
    raise ValueError(case)


def _workload(name: str) -> tuple[Any, Any]:
    sys.path.insert(0, str(ROOT))
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate
    from langchain_core.runnables import RunnableConfig, RunnableLambda
    from langchain_core.tools import tool

    from tests._support.fake_models import FakeChatModel

    model = FakeChatModel()
    if name == "simple":
        prompt = ChatPromptTemplate.from_messages(
            [("system", "You are a concise assistant."), ("human", "{question}")]
        )
        return prompt | model | StrOutputParser(), {"question": "What is the capital of France?"}

    @tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    def step(inputs: dict[str, Any], config: RunnableConfig) -> str:
        total = add.invoke({"a": 2, "b": 3}, config=config)
        reply = model.invoke(f"{inputs['question']} The total is {total}.", config=config)
        return str(reply.content)

    return RunnableLambda(step, name="agent_step"), {"question": "Add two and three."}


def child(case: str, workload: str, warmup: int, batches: int, per_batch: int) -> dict[str, Any]:
    """One fresh process: batches with ``case`` traced and untraced, alternating.

    The added cost is paired inside the process (each traced batch against the untraced batch
    next to it), so the process's own speed (memory layout, hash seed, neighbours at that moment)
    cancels out of it.
    """
    import gc

    pipeline = _Pipeline()
    ended = pipeline.ended
    callbacks, switch = _setup(case, pipeline.provider)
    chain, arg = _workload(workload)
    config = {"callbacks": callbacks} if callbacks else None

    def run(traced: bool, n: int) -> tuple[float, float, float]:
        switch(traced)
        cfg = config if traced else None
        gc.collect()
        start_proc = time.process_time_ns()
        start_cpu = time.thread_time_ns()
        start = time.perf_counter_ns()
        for _ in range(n):
            chain.invoke(arg, config=cfg)
        pipeline.drain()  # the batch's export reads (and deferred content) in process CPU
        return ((time.perf_counter_ns() - start) / n / 1000.0,
                (time.thread_time_ns() - start_cpu) / n / 1000.0,
                (time.process_time_ns() - start_proc) / n / 1000.0)

    run(True, warmup)
    run(False, warmup // 2)
    traced: list[tuple[float, float, float]] = []
    base: list[tuple[float, float, float]] = []
    spans = [0, 0]  # ended spans in traced / untraced batches
    for index in range(batches):
        for mode in ((True, False) if index % 2 == 0 else (False, True)):
            ended[0] = 0
            (traced if mode else base).append(run(mode, per_batch))
            spans[0 if mode else 1] += ended[0]
    switch(True)
    if spans[1]:
        raise RuntimeError(f"{case}: untraced batches made {spans[1]} spans")
    med = statistics.median
    return {
        "case": case, "workload": workload,
        "us": med(t[0] for t in traced), "cpu_us": med(t[1] for t in traced),
        "proc_us": med(t[2] for t in traced),
        "base_us": med(b[0] for b in base), "base_cpu_us": med(b[1] for b in base),
        "base_proc_us": med(b[2] for b in base),
        "added_us": med(t[0] - b[0] for t, b in zip(traced, base)),
        "added_cpu_us": med(t[1] - b[1] for t, b in zip(traced, base)),
        "added_proc_us": med(t[2] - b[2] for t, b in zip(traced, base)),
        "spans": spans[0] / (batches * per_batch),
    }


def profile(case: str, workload: str, n: int) -> None:
    import cProfile
    import pstats

    provider, _ = _provider()
    callbacks = _callbacks(case, provider)
    chain, arg = _workload(workload)
    config = {"callbacks": callbacks} if callbacks else None
    for _ in range(200):
        chain.invoke(arg, config=config)
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(n):
        chain.invoke(arg, config=config)
    prof.disable()
    stats = pstats.Stats(prof)
    stats.sort_stats("tottime").print_stats(30)
    stats.sort_stats("cumulative").print_stats(r"otel_mlflow|minimal_handler", 40)
    print(shares(stats))


# Where a function's own time is counted in the share table of ``--profile``.
_SHARE_ROWS = (
    ("sdk_start", "OTel SDK `start_span` (sampler, span object, processors' on_start)"),
    ("sdk_other", "OTel SDK `end`, events, context (incl. the model-call context attach)"),
    ("content", "content capture (`deferred` snapshots; eager JSON: `content.values`, "
                "`Serializer`, `redact`)"),
    ("mapping", "`genai_mapping` (classification, request / response / tool attributes)"),
    ("span_ops", "span start / end of `LiteSpan` (`span_writer`, `lite_span`)"),
    ("bookkeeping", "tracer bookkeeping (`handler`, `*_callbacks`, `run_lifecycle`, `run_map`: "
                    "parents, run state, locks)"),
)
_CONTENT_MODULES = ("values", "serialize", "json_text", "redact", "messages", "deferred")


def _share_category(filename: str) -> str | None:
    """The share-table row of a function's own time, or None (LangChain, the benchmark)."""
    path = filename.replace("\\", "/")
    if "/otel_mlflow/" in path:
        module = path.rsplit("/", 1)[-1].removesuffix(".py")
        if module in _CONTENT_MODULES:
            return "content"
        if module == "genai_mapping":
            return "mapping"
        if module in ("span_writer", "lite_span"):
            return "span_ops"
        if module == "model_context":
            return "sdk_other"
        return "bookkeeping"
    if "/opentelemetry/" in path:
        return "sdk_other"
    if "minimal_handler" in path:
        return "bookkeeping"
    return None


def shares(stats: Any) -> str:
    """Markdown table: each row's share of the tracer's own time in a cProfile run.

    Functions outside otel_mlflow and the SDK (built-ins such as ``isinstance``, the stdlib's
    ``UUID.__str__``, pydantic) count for the row of the function that called them, so
    LangChain's own time is left out; the SDK's ``start_span`` row is its cumulative time, the
    other SDK row the rest.
    """
    totals = {key: 0.0 for key, _ in _SHARE_ROWS}
    start_cumulative = 0.0
    for (filename, _line, name), (_cc, _nc, tt, ct, callers) in stats.stats.items():
        row = _share_category(filename)
        if row is None:  # a built-in, the stdlib, pydantic...: counted for the caller's row
            for (caller_file, _l, _n), edge in callers.items():
                caller_row = _share_category(caller_file)
                if caller_row is not None:
                    totals[caller_row] += edge[2]
            continue
        totals[row] += tt
        if row == "sdk_other" and name == "start_span" and "/sdk/trace/" in filename:
            start_cumulative += ct
    moved = min(start_cumulative, totals["sdk_other"])
    totals["sdk_start"] += moved
    totals["sdk_other"] -= moved
    whole = sum(totals.values()) or 1.0
    lines = ["| where | share of the tracer's time |", "|---|---:|"]
    lines += [f"| {label} | {totals[key] / whole:.0%} |" for key, label in _SHARE_ROWS]
    return "\n".join(lines)


def replay(workload: str, cases: list[str], n: int) -> None:
    """Handler-only cost: the recorded callbacks of one invocation replayed into each handler.

    LangChain's own dispatch is left out, so this isolates what each handler's code costs; the
    cases alternate in one process, so machine noise hits them alike.
    """
    import uuid

    from langchain_core.callbacks import BaseCallbackHandler

    calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    class Recorder(BaseCallbackHandler):
        run_inline = True

    def recorder(event: str) -> Any:
        def record(self: Any, *a: Any, **k: Any) -> None:
            calls.append((event, a, k))
        return record

    for event in ("on_chain_start", "on_chain_end", "on_chat_model_start", "on_llm_start",
                  "on_llm_end", "on_tool_start", "on_tool_end", "on_retriever_start",
                  "on_retriever_end"):
        setattr(Recorder, event, recorder(event))
    chain, arg = _workload(workload)
    chain.invoke(arg, config={"callbacks": [Recorder()]})

    def fresh_ids() -> list[tuple[str, tuple[Any, ...], dict[str, Any]]]:
        ids: dict[Any, Any] = {}
        out = []
        for event, a, k in calls:
            k = dict(k)
            for name in ("run_id", "parent_run_id"):
                if k.get(name) is not None:
                    k[name] = ids.setdefault(k[name], uuid.uuid4())
            out.append((event, a, k))
        return out

    handlers = {}
    for case in cases:
        provider, _ = _provider()
        handlers[case] = (_callbacks(case, provider) or [None])[0]
    timings: dict[str, list[float]] = {c: [] for c in cases}
    for _ in range(7):
        for case in cases:
            handler = handlers[case]
            batch = [fresh_ids() for _ in range(n)]
            start = time.thread_time_ns()
            for invocation in batch:
                for event, a, k in invocation:
                    getattr(handler, event)(*a, **k)
            timings[case].append((time.thread_time_ns() - start) / n / 1000.0)
    print(f"{workload}: {len(calls)} callbacks per invocation; handler-only CPU µs/invocation "
          f"(median of 7 alternating batches of {n}):")
    for case in cases:
        print(f"  {case:10} {statistics.median(timings[case]):7.1f}")


# --- in the parent process ------------------------------------------------------------------
def _available(case: str, site: str | None) -> bool:
    module = {"openinference": "openinference.instrumentation.langchain",
              "openllmetry": "opentelemetry.instrumentation.langchain"}.get(case)
    if module is None:
        return True
    code = f"import {module}"
    return subprocess.run([sys.executable, "-c", code], env=_env(site), cwd=ROOT,
                          capture_output=True).returncode == 0


def _env(site: str | None) -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(ROOT)] + ([site] if site else [])
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    # Content capture of the other tracers stays at their defaults (on), like otel_on.
    env.pop("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", None)
    return env


def _run_child(case: str, workload: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", case, "--workload", workload,
           "--warmup", str(args.warmup), "--batches", str(args.batches),
           "--per-batch", str(args.per_batch)]
    out = subprocess.run(cmd, env=_env(args.site), cwd=ROOT, capture_output=True, text=True,
                         timeout=900)
    if out.returncode != 0:
        raise RuntimeError(f"{case}/{workload} failed:\n{out.stderr[-3000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _paired_added(results: dict[tuple[str, str], list[dict[str, Any]]], case: str,
                  workload: str, metric: str) -> float:
    """Median over rounds of the added time.

    Each child pairs its traced batches with untraced batches of the same process (``child``);
    results without those fields (older ``--json`` files) pair with ``none`` of the same round.
    """
    mine = results[(case, workload)]
    if mine and "added_" + metric in mine[0]:
        # Paired inside each process (see ``child``): the median over rounds.
        return statistics.median(r["added_" + metric] for r in mine)
    none = [r[metric] for r in results[("none", workload)]]
    return statistics.median(a[metric] - b for a, b in zip(mine, none))


def table(results: dict[tuple[str, str], list[dict[str, Any]]], cases: list[str],
          metric: str = "cpu_us") -> str:
    """Markdown table of one metric: ``cpu_us`` (app-thread CPU time) or ``us`` (wall time)."""
    unit = {"cpu_us": "app-thread CPU µs/inv", "proc_us": "process CPU µs/inv",
            "us": "wall µs/inv"}[metric]
    lines = [
        f"| workload | case | {unit} | spans/inv | × no tracing | added µs "
        "| added ÷ minimal | added ÷ OpenLLMetry |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    verdicts: list[str] = []
    for workload in WORKLOADS:
        med = {c: statistics.median(r[metric] for r in results[(c, workload)])
               for c in cases if (c, workload) in results}
        spans = {c: statistics.median(r["spans"] for r in results[(c, workload)])
                 for c in med}
        base = med["none"]
        # × no tracing: against the untraced batches of the case's own processes when present.
        ratio = {c: statistics.median(r[metric] / r["base_" + metric]
                                      for r in results[(c, workload)])
                 if "base_" + metric in results[(c, workload)][0] else med[c] / base
                 for c in med}
        added = {c: _paired_added(results, c, workload, metric) for c in med}
        for case in cases:
            if case not in med:
                continue
            vs_min = added[case] / added["minimal"] if case != "none" and added.get(
                "minimal", 0) > 0 else None
            vs_ollm = added[case] / added["openllmetry"] if case != "none" and added.get(
                "openllmetry", 0) > 0 else None
            lines.append(
                f"| {workload} | {case} | {med[case]:.0f} | {spans[case]:.1f} "
                f"| {ratio[case]:.2f} | {added[case]:.0f} | {_fmt(vs_min)} "
                f"| {_fmt(vs_ollm)} |"
            )
        if "otel_on" in added and added.get("minimal", 0) > 0:
            ok = added["otel_on"] <= TARGET_VS_MINIMAL * added["minimal"]
            verdicts.append(f"{workload}: otel_on added ≤ {TARGET_VS_MINIMAL}× minimal: "
                            f"{'PASS' if ok else 'FAIL'} "
                            f"({added['otel_on'] / added['minimal']:.2f})")
        if "otel_on" in added and added.get("openllmetry", 0) > 0:
            ok = added["otel_on"] <= TARGET_VS_OPENLLMETRY * added["openllmetry"]
            verdicts.append(f"{workload}: otel_on added ≤ {TARGET_VS_OPENLLMETRY:.0%} of "
                            f"OpenLLMetry: {'PASS' if ok else 'FAIL'} "
                            f"({added['otel_on'] / added['openllmetry']:.2f})")
    return "\n".join(lines + [""] + verdicts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--batches", type=int, default=6)
    parser.add_argument("--per-batch", type=int, default=150)
    parser.add_argument("--quick", action="store_true", help="fewer invocations (smoke run)")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--site", help="extra sys.path entry holding the other tracers")
    parser.add_argument("--json", help="also write the raw results to this file")
    parser.add_argument("--replay", action="store_true",
                        help="handler-only cost (recorded callbacks replayed), in this process")
    parser.add_argument("--from-json", help="print the tables of a --json file again")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--workload", default="simple", choices=WORKLOADS)
    parser.add_argument("--profile", metavar="CASE", help="cProfile CASE in this process")
    args = parser.parse_args()

    if args.child:
        print(json.dumps(child(args.child, args.workload, args.warmup, args.batches,
                               args.per_batch)))
        return 0
    if args.replay:
        for workload in WORKLOADS:
            replay(workload, ["minimal", "otel_off", "otel_on"], 300)
        return 0
    if args.profile:
        if args.site:
            sys.path.insert(0, args.site)
        profile(args.profile, args.workload, 2000)
        return 0
    if args.from_json:
        data = json.loads(Path(args.from_json).read_text())
        loaded: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for res in data["results"]:
            loaded.setdefault((res["case"], res["workload"]), []).append(res)
        present = [c for c in CASES if any(k[0] == c for k in loaded)]
        print(data["header"])
        for metric in ("cpu_us", "proc_us", "us"):
            print()
            print(table(loaded, present, metric))
        return 0
    if args.quick:
        args.warmup, args.batches, args.per_batch = 100, 2, 100

    cases = [c for c in args.cases.split(",") if c]
    skipped = [c for c in cases if not _available(c, args.site)]
    cases = [c for c in cases if c not in skipped]
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    started = time.monotonic()
    for round_no in range(args.rounds):
        # Rotate the order so no case always runs first (or last) in a round.
        shift = round_no % len(cases)
        order = cases[shift:] + cases[:shift]
        for workload in WORKLOADS:
            for case in order:
                res = _run_child(case, workload, args)
                results.setdefault((case, workload), []).append(res)
                print(f"round {round_no + 1}/{args.rounds} {workload:6} {case:13} "
                      f"{res['cpu_us']:6.0f} app CPU µs (+{res['added_cpu_us']:4.0f}) "
                      f"{res['proc_us']:6.0f} process CPU µs (+{res['added_proc_us']:4.0f}) "
                      f"{res['spans']:.1f} spans", file=sys.stderr)
    elapsed = time.monotonic() - started
    cpu = platform.processor() or platform.machine()
    header = (
        f"Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; machine: {os.cpu_count()} CPUs "
        f"({cpu}), {platform.system()} {platform.release()}, Python {platform.python_version()}; "
        f"{args.rounds} rounds × {args.batches} batches × {args.per_batch} invocations, "
        f"median; {elapsed:.0f} s total."
    )
    if skipped:
        header += f" Skipped (not installed): {', '.join(skipped)}."
    print(header)
    print()
    print("App-thread CPU time (the calling thread's `time.thread_time_ns`; the targets are "
          "judged on it):")
    print()
    print(table(results, cases, "cpu_us"))
    print()
    print("Process CPU time (all threads: the app thread plus the span processor's worker, "
          "where exporters read spans and deferred content is written):")
    print()
    print(table(results, cases, "proc_us"))
    print()
    print("Wall-clock time (includes waiting for a CPU when other processes run):")
    print()
    print(table(results, cases, "us"))
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"header": header, "results": [r for rs in results.values() for r in rs]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
