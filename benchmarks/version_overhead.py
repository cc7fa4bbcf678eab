"""What the chain-version hook costs the app thread, as a ratio against the same tracer without it.

Run from the repository root::

    python benchmarks/version_overhead.py            # ~20 s
    python benchmarks/version_overhead.py --rounds 3 --per-batch 200

One process, one ``OtelTracer``; batches alternate between the tracer as shipped and the same
tracer with ``RootIdentity.annotate`` (the only root-span hook: frame walk, cache lookup, session
/ user / active-model attributes) replaced by a no-op, so machine noise hits both alike. The
workload is ``benchmarks/overhead.py``'s ``simple`` one (``prompt | fake chat model | parser``,
one root per invocation: the worst case, since the hook runs once per root). Reported: median
app-thread CPU µs per invocation of each, and their ratio. Also the one-off cost of describing
the chain (the first invocation of a new chain object).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--per-batch", type=int, default=300)
    args = parser.parse_args()

    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

    from otel_mlflow._tracing.handler import OtelTracer
    from otel_mlflow._tracing.version import RootIdentity
    from tests._support.fake_models import FakeChatModel

    class Count(SpanProcessor):
        def __init__(self) -> None:
            self.ended = 0

        def on_end(self, span: Any) -> None:
            self.ended += 1

    provider = TracerProvider()
    provider.add_span_processor(Count())
    tracer = OtelTracer(provider)

    def chain() -> Any:
        return (ChatPromptTemplate.from_messages([("system", "Answer briefly."),
                                                  ("human", "{question}")])
                | FakeChatModel() | StrOutputParser())

    app = chain()
    config = {"callbacks": [tracer]}
    on = tracer._identity  # noqa: SLF001

    class Off(RootIdentity):
        def annotate(self, attrs: dict[str, Any], metadata: Any) -> None:
            return None

    off = Off()
    for _ in range(100):  # warm-up, and the chain's one description
        app.invoke({"question": "q"}, config=config)

    results: dict[str, list[float]] = {"on": [], "off": []}
    for round_no in range(args.rounds):
        order = ("on", "off") if round_no % 2 == 0 else ("off", "on")
        for case in order:
            tracer._identity = on if case == "on" else off  # noqa: SLF001
            start = time.thread_time_ns()
            for _ in range(args.per_batch):
                app.invoke({"question": "q"}, config=config)
            results[case].append((time.thread_time_ns() - start) / args.per_batch / 1000)
    tracer._identity = on  # noqa: SLF001

    first = []
    for _ in range(20):
        fresh = chain()
        start = time.thread_time_ns()
        on.entry(fresh)
        first.append((time.thread_time_ns() - start) / 1000)

    med_on, med_off = statistics.median(results["on"]), statistics.median(results["off"])
    print("| case | app-thread CPU µs/invocation (median of rounds) |")
    print("|---|---:|")
    print(f"| version hook on | {med_on:.1f} |")
    print(f"| version hook off | {med_off:.1f} |")
    print(f"\non ÷ off: {med_on / med_off:.3f}  (added {med_on - med_off:+.1f} µs per root run)")
    print(f"first run of a new chain object (describe + hash): {statistics.median(first):.0f} µs")


if __name__ == "__main__":
    main()
