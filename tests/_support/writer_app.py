"""An app process for multi-writer tests: N small traces through the real exporter, then exit.

``python -m tests._support.writer_app URI EXPERIMENT --traces N [--same-ids SEED] [--start-at T]``

Each trace is a root span with two children, made with the real OpenTelemetry SDK and exported by
``MlflowSpanExporter`` (grace 0.05 s) through a ``BatchSpanProcessor``. ``--same-ids SEED`` makes
trace and span ids a function of SEED and the trace's index, so several processes started with the
same seed write the SAME trace ids (the cross-process idempotency case). With ``--go-file PATH`` the
process prints ``ready`` once set up and waits for PATH to exist, so the parent starts all writers
together. Prints one JSON line at the end: the trace ids written, the exporter's faults
and the seconds from the start signal to the last trace delivered.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator

from otel_mlflow import MlflowSpanExporter, fault_counts


class SeededIds(IdGenerator):
    """Ids from a seeded generator: the same seed gives the same sequence in every process."""

    def __init__(self, seed: int) -> None:
        self._random = random.Random(seed)

    def generate_span_id(self) -> int:
        return self._random.getrandbits(64) or 1

    def generate_trace_id(self) -> int:
        return self._random.getrandbits(128) or 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("tracking_uri")
    parser.add_argument("experiment")
    parser.add_argument("--traces", type=int, default=50)
    parser.add_argument("--same-ids", type=int, default=None)
    parser.add_argument("--go-file", default=None)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)

    exporter = MlflowSpanExporter(
        args.tracking_uri,
        args.experiment,
        grace_seconds=0.05,
        workers=args.workers,
        spool_dir=tempfile.mkdtemp(prefix="otel_mlflow-writer-spool-"),
    )
    ids = SeededIds(args.same_ids) if args.same_ids is not None else RandomIdGenerator()
    provider = TracerProvider(id_generator=ids)
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=50))
    tracer = provider.get_tracer("writer_app")

    if args.go_file:
        print("ready", flush=True)
        while not os.path.exists(args.go_file):
            time.sleep(0.005)
    started = time.monotonic()
    written = []
    for i in range(args.traces):
        with tracer.start_as_current_span("chain", attributes={"writer.index": i}) as root:
            with tracer.start_as_current_span("chat gemini-2.0-flash") as llm:
                llm.set_attribute("gen_ai.operation.name", "chat")
                llm.set_attribute("gen_ai.request.model", "gemini-2.0-flash")
                llm.set_attribute("gen_ai.usage.input_tokens", 12)
                llm.set_attribute("gen_ai.usage.output_tokens", 7)
            with tracer.start_as_current_span("tool lookup"):
                pass
            written.append(format(root.get_span_context().trace_id, "032x"))
    provider.force_flush(60_000)
    exporter.force_flush(120_000)
    seconds = time.monotonic() - started
    provider.shutdown()
    print(json.dumps({"trace_ids": written, "faults": fault_counts(), "seconds": seconds}),
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
