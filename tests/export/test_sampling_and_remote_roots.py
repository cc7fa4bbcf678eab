"""The exporter's tail sampling and its receiver-side completion rule, fed by the real OTel SDK.

The MLflow side is a list sink (``write=``): these tests are about which traces reach the sink,
not about MLflow. Forwarding goes to a real OTLP/HTTP receiver (tests/_support/otlp_receiver)
through the real OTLP exporter that ``configure()`` adds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import NonRecordingSpan, SpanContext, StatusCode, TraceFlags

from otel_mlflow._common import settings
from otel_mlflow._export import exporter as E
from otel_mlflow._record import TAG_SAMPLE_RATIO, TraceRecord
from otel_mlflow._setup import configure
from tests._support.otlp_receiver import OtlpReceiver


class Sink:
    def __init__(self) -> None:
        self.records: list[TraceRecord] = []
        self.lock = threading.Lock()

    def write(self, record: TraceRecord) -> None:
        with self.lock:
            self.records.append(record)


@pytest.fixture
def sink() -> Sink:
    return Sink()


@pytest.fixture
def make_exporter(tmp_path: Path, sink: Sink) -> Iterator[Any]:
    made: list[E.MlflowSpanExporter] = []

    def make(**kwargs: Any) -> E.MlflowSpanExporter:
        kwargs.setdefault("spool_dir", str(tmp_path / "spool"))
        kwargs.setdefault("write", sink.write)
        kwargs.setdefault("grace_seconds", 0.0)
        exporter = E.MlflowSpanExporter(**kwargs)
        made.append(exporter)
        return exporter

    yield make
    for exporter in made:
        exporter.shutdown()


def tracer_for(exporter: E.MlflowSpanExporter) -> Any:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("t")


def run_traces(tracer: Any, count: int, *, error_every: int = 0) -> list[int]:
    ids = []
    for index in range(count):
        with tracer.start_as_current_span(f"r{index}") as root:
            if error_every and index % error_every == 0:
                root.set_status(StatusCode.ERROR, "failed")
            ids.append(root.get_span_context().trace_id)
    return ids


def test_ratio_zero_writes_only_errors_and_counts_and_reports_the_rest(make_exporter, sink) -> None:
    discarded: list[int] = []
    exporter = make_exporter(sample_ratio=0.0, on_discard=discarded.append)
    ids = run_traces(tracer_for(exporter), 12, error_every=4)  # errors: 0, 4, 8
    assert exporter.force_flush(10_000)
    written = {int(r.trace_id, 16) for r in sink.records}
    assert written == {ids[0], ids[4], ids[8]}
    assert all(r.tags[TAG_SAMPLE_RATIO] == "0.0" for r in sink.records)
    assert exporter.stats["sampled_out"] == 9
    assert sorted(discarded) == sorted(set(ids) - written)


def test_the_same_trace_ids_are_kept_by_every_exporter(make_exporter, sink) -> None:
    first = make_exporter(sample_ratio=0.5)
    ids = run_traces(tracer_for(first), 40)
    assert first.force_flush(10_000)
    kept_first = {r.trace_id for r in sink.records}
    assert 0 < len(kept_first) < 40
    other = Sink()
    second = make_exporter(sample_ratio=0.5, write=other.write)
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(second))
    # The same trace ids in another exporter (another process or receiver): the same decision.
    tracer = provider.get_tracer("t")
    for trace_id in ids:
        parent = NonRecordingSpan(SpanContext(trace_id, 0x1234, is_remote=True,
                                              trace_flags=TraceFlags(1)))
        with tracer.start_as_current_span("again", context=trace.set_span_in_context(parent)):
            pass
    assert second.force_flush(10_000)
    assert {r.trace_id for r in other.records} == kept_first


def test_slow_traces_are_kept_whatever_the_ratio(make_exporter, sink) -> None:
    exporter = make_exporter(sample_ratio=0.0, keep_slower_than_ms=50)
    tracer = tracer_for(exporter)
    with tracer.start_as_current_span("fast"):
        pass
    with tracer.start_as_current_span("slow"):
        time.sleep(0.08)
    assert exporter.force_flush(10_000)
    assert [r.run_name for r in sink.records if r.run_name] and len(sink.records) == 1
    assert exporter.stats["sampled_out"] == 1


def test_sampling_arguments_beat_env_which_beats_the_default(
    make_exporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(settings.SAMPLE_RATIO, raising=False)
    monkeypatch.delenv(settings.KEEP_SLOWER_THAN_MS, raising=False)
    default = make_exporter()
    assert (default.sample_ratio, default.keep_slower_than_ms) == (1.0, None)
    monkeypatch.setenv(settings.SAMPLE_RATIO, "0.25")
    monkeypatch.setenv(settings.KEEP_SLOWER_THAN_MS, "900")
    from_env = make_exporter()
    assert (from_env.sample_ratio, from_env.keep_slower_than_ms) == (0.25, 900.0)
    explicit = make_exporter(sample_ratio=0.5, keep_slower_than_ms=10)
    assert (explicit.sample_ratio, explicit.keep_slower_than_ms) == (0.5, 10)
    assert make_exporter(sample_ratio=7).sample_ratio == 1.0  # clamped to [0, 1]


def test_forwarding_by_otlp_is_not_sampled(tmp_path: Path, sink: Sink) -> None:
    """Sampling happens in the MLflow exporter; the OTLP exporter beside it gets every span."""
    provider = TracerProvider()
    with OtlpReceiver() as receiver:
        configure(tracer_provider=provider, set_global=False, otlp_endpoint=receiver.endpoint,
                  spool_dir=str(tmp_path / "spool"), write=sink.write, sample_ratio=0.0,
                  grace_seconds=0.0)
        ids = run_traces(provider.get_tracer("t"), 5)
        provider.force_flush()
        mlflow_exporter = next(e for e in _exporters(provider) if isinstance(e, E.MlflowSpanExporter))
        assert mlflow_exporter.force_flush(10_000)
        spans = receiver.wait_for(lambda got: len(got) >= 5)
        provider.shutdown()
    assert {int(s.trace_id, 16) for s in spans} == set(ids)
    assert sink.records == [] and mlflow_exporter.stats["sampled_out"] == 5


def _exporters(provider: TracerProvider) -> list[Any]:
    from otel_mlflow._setup import _exporters as exporters

    return list(exporters(provider))


# --- the receiver's completion rule --------------------------------------------------------------


def remote_child(tracer: Any, trace_id: int, parent_span_id: int, name: str) -> None:
    parent = NonRecordingSpan(SpanContext(trace_id, parent_span_id, is_remote=True,
                                          trace_flags=TraceFlags(1)))
    with tracer.start_as_current_span(name, context=trace.set_span_in_context(parent)):
        pass


def test_a_remote_parent_span_completes_the_trace_by_default(make_exporter, sink) -> None:
    exporter = make_exporter(grace_seconds=0.1)
    remote_child(tracer_for(exporter), 0xABCDEF, 0x42, "worker")
    deadline = time.monotonic() + 5
    while not sink.records and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(sink.records) == 1 and not sink.records[0].partial


def finished(build: Any) -> list[Any]:
    """The ReadableSpans a tracer produced in ``build(tracer)`` (the real SDK, in memory)."""
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    build(provider.get_tracer("t"))
    return list(memory.get_finished_spans())


def test_in_receiver_mode_a_remote_parent_span_waits_for_the_parentless_root(
    make_exporter, sink
) -> None:
    front = finished(lambda t: t.start_span("front").end())
    (root,) = front
    worker = finished(lambda t: remote_child(t, root.context.trace_id, root.context.span_id,
                                             "worker"))
    exporter = make_exporter(grace_seconds=0.1, parent_wait_seconds=30,
                             remote_parent_is_root=False)
    exporter.export(worker)  # the order a receiver may see: the worker's span first
    time.sleep(0.5)  # five times the grace: still open, waiting for its parent
    assert exporter.buffered_traces() == 1 and sink.records == []
    exporter.export(front)
    deadline = time.monotonic() + 5
    while not sink.records and time.monotonic() < deadline:
        time.sleep(0.02)
    (record,) = sink.records
    assert record.run_name == "front" and record.metrics["spans"] == 2 and not record.partial


def test_in_receiver_mode_a_missing_parent_is_waited_for_parent_wait_seconds(
    make_exporter, sink
) -> None:
    exporter = make_exporter(grace_seconds=0.05, parent_wait_seconds=0.4,
                             remote_parent_is_root=False)
    remote_child(tracer_for(exporter), 0x1234, 0x42, "worker")
    time.sleep(0.2)
    assert sink.records == []
    deadline = time.monotonic() + 5
    while not sink.records and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(sink.records) == 1 and not sink.records[0].partial
