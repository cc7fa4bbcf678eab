"""MlflowSpanExporter: per-trace buffers, completion, caps, flush/shutdown drain, never raising.

The real OTel SDK feeds the exporter. Most tests replace ``MlflowWriter.write`` with a list
(the ``write=`` sink) because they are about buffering, not MLflow; the MLflow side is covered by
tests/e2e/test_run_schema.py and tests/e2e/test_active_run.py against real stores.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExportResult,
)

from otel_mlflow._common import semconv as A
from otel_mlflow._common import settings
from otel_mlflow._export import assembler
from otel_mlflow._export import exporter as E
from otel_mlflow._export import providers
from otel_mlflow._common import faults as _faults
from otel_mlflow._record import TAG_DROPPED_SPANS, TAG_PARTIAL, TraceRecord


class Sink:
    """Collects written records (thread-safe)."""

    def __init__(self) -> None:
        self.records: list[TraceRecord] = []
        self._lock = threading.Lock()

    def write(self, record: TraceRecord) -> None:
        with self._lock:
            self.records.append(record)

    def wait(self, count: int, timeout: float = 10.0) -> list[TraceRecord]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.records) >= count:
                    return list(self.records)
            time.sleep(0.01)
        return list(self.records)


@pytest.fixture
def sink() -> Sink:
    return Sink()


@pytest.fixture
def make_exporter(tmp_path: Path, sink: Sink) -> Iterator[Any]:
    made: list[E.MlflowSpanExporter] = []

    def make(**kwargs: Any) -> E.MlflowSpanExporter:
        kwargs.setdefault("spool_dir", str(tmp_path / "spool"))
        kwargs.setdefault("write", sink.write)
        exporter = E.MlflowSpanExporter(**kwargs)
        made.append(exporter)
        return exporter

    yield make
    for exporter in made:
        exporter.shutdown()


def _provider(exporter: E.MlflowSpanExporter, batch: bool = False) -> TracerProvider:
    provider = TracerProvider()
    processor = BatchSpanProcessor(exporter, schedule_delay_millis=50) if batch else (
        SimpleSpanProcessor(exporter)
    )
    provider.add_span_processor(processor)
    return provider


def test_spans_of_one_trace_across_batches_make_one_record(make_exporter, sink) -> None:
    exporter = make_exporter(grace_seconds=0.3)
    tracer = _provider(exporter).get_tracer("t")
    root = tracer.start_span("invoke_workflow w", attributes={A.ROOT: True})
    ctx = trace.set_span_in_context(root)
    child = tracer.start_span("chat m", context=ctx,
                              attributes={A.GEN_AI_OPERATION_NAME: A.OP_CHAT})
    child.end()  # batch 1: the child
    root.end()  # batch 2: the root
    # A child that ends after its root, within the grace period (streaming, other threads).
    late_child = tracer.start_span("execute_tool t", context=ctx, start_time=root.start_time,
                                   attributes={A.GEN_AI_OPERATION_NAME: A.OP_EXECUTE_TOOL})
    late_child.end()
    records = sink.wait(1)
    time.sleep(0.3)
    assert len(sink.records) == 1
    rec = records[0]
    assert rec.metrics["spans"] == 3 and rec.metrics["llm.calls"] == 1
    assert rec.metrics["tool.calls"] == 1
    assert not rec.partial and exporter.buffered_traces() == 0
    assert exporter.stats["late_spans"] == 0


def test_grace_waits_then_writes_without_flush(make_exporter, sink) -> None:
    exporter = make_exporter(grace_seconds=0.5)
    tracer = _provider(exporter).get_tracer("t")
    with tracer.start_as_current_span("r", attributes={A.ROOT: True}):
        pass
    time.sleep(0.2)
    assert sink.records == []  # still within the grace period
    assert len(sink.wait(1, timeout=5)) == 1


def test_span_after_write_is_counted_late_not_lost_silently(make_exporter, sink, caplog) -> None:
    _faults.reset_fault_counts()
    exporter = make_exporter(grace_seconds=0.0)
    tracer = _provider(exporter).get_tracer("t")
    root = tracer.start_span("r", attributes={A.ROOT: True})
    root.end()
    sink.wait(1)
    straggler = tracer.start_span("late", context=trace.set_span_in_context(root))
    with caplog.at_level(logging.WARNING, logger="otel_mlflow"):
        straggler.end()
    assert exporter.stats["late_spans"] == 1
    assert _faults.fault_counts().get("exporter.late_spans") == 1
    assert len(sink.records) == 1
    # The log line names the trace, so its run can be found.
    trace_id = format(root.get_span_context().trace_id, "032x")
    assert any(trace_id in r.getMessage() for r in caplog.records)


def test_root_that_never_ends_is_written_partial_after_timeout(make_exporter, sink) -> None:
    exporter = make_exporter(grace_seconds=0.0, trace_timeout_seconds=0.3)
    tracer = _provider(exporter).get_tracer("t")
    root = tracer.start_span("hung", attributes={A.ROOT: True})
    child = tracer.start_span("chat m", context=trace.set_span_in_context(root),
                              attributes={A.GEN_AI_OPERATION_NAME: A.OP_CHAT})
    child.end()
    records = sink.wait(1, timeout=5)
    assert len(records) == 1
    assert records[0].partial and records[0].tags[TAG_PARTIAL] == "true"
    assert records[0].metrics["llm.calls"] == 1
    assert exporter.stats["partial"] == 1
    root.end()  # the root's own span now arrives late: counted
    assert exporter.stats["late_spans"] == 1


def test_buffer_cap_writes_the_oldest_trace_early(make_exporter, sink) -> None:
    exporter = make_exporter(grace_seconds=60.0, max_buffered_traces=2)
    tracer = _provider(exporter).get_tracer("t")
    opened = [tracer.start_span(f"open{i}", attributes={A.ROOT: True}) for i in range(3)]
    for i, root in enumerate(opened):
        child = tracer.start_span(f"c{i}", context=trace.set_span_in_context(root))
        child.end()
    records = sink.wait(1)
    assert [r.run_name for r in records] == ["c0"]  # only its child had arrived
    assert records[0].partial
    assert exporter.stats["overflow"] == 1 and exporter.buffered_traces() == 2


def test_span_cap_per_trace_is_counted_on_the_run(make_exporter, sink) -> None:
    exporter = make_exporter(grace_seconds=0.0, max_spans_per_trace=3)
    tracer = _provider(exporter).get_tracer("t")
    with tracer.start_as_current_span("r", attributes={A.ROOT: True}) as root:
        for i in range(5):
            tracer.start_span(f"s{i}", context=trace.set_span_in_context(root)).end()
    records = sink.wait(1)
    assert records[0].metrics["spans"] == 3
    assert records[0].tags[TAG_DROPPED_SPANS] == "3"  # 2 children + the root itself
    assert exporter.stats["dropped_spans"] == 3


def test_force_flush_writes_ended_traces_without_the_grace(make_exporter, sink) -> None:
    exporter = make_exporter(grace_seconds=60.0)
    provider = _provider(exporter, batch=True)
    tracer = provider.get_tracer("t")
    for i in range(20):
        with tracer.start_as_current_span(f"r{i}", attributes={A.ROOT: True}):
            with tracer.start_as_current_span("chat", attributes={A.GEN_AI_OPERATION_NAME: "chat"}):
                pass
    open_root = tracer.start_span("still open", attributes={A.ROOT: True})
    tracer.start_span("c", context=trace.set_span_in_context(open_root)).end()
    started = time.monotonic()
    assert provider.force_flush()
    assert exporter.force_flush(10_000)
    assert time.monotonic() - started < 30
    assert len(sink.records) == 20  # the open trace waits for its root
    assert all(r.metrics["spans"] == 2 for r in sink.records)
    assert exporter.buffered_traces() == 1


def test_shutdown_drains_everything_and_is_idempotent(make_exporter, sink) -> None:
    exporter = make_exporter(grace_seconds=60.0)
    provider = _provider(exporter, batch=True)
    tracer = provider.get_tracer("t")
    for i in range(50):
        with tracer.start_as_current_span(f"r{i}", attributes={A.ROOT: True}):
            pass
    open_root = tracer.start_span("never ends", attributes={A.ROOT: True})
    tracer.start_span("child", context=trace.set_span_in_context(open_root)).end()
    provider.shutdown()  # BatchSpanProcessor: exports its queue, then exporter.shutdown()
    assert len(sink.records) == 51
    partial = [r for r in sink.records if r.partial]
    assert [r.run_name for r in partial] == ["child"]
    exporter.shutdown()  # second call: a no-op, no error
    assert exporter.export([]) == SpanExportResult.FAILURE  # closed


def test_export_never_raises_on_garbage(make_exporter, sink) -> None:
    _faults.reset_fault_counts()
    exporter = make_exporter(grace_seconds=0.0)
    assert exporter.export([None, object(), "span"]) == SpanExportResult.FAILURE  # type: ignore[list-item]
    assert _faults.fault_counts()["exporter.export"] == 1
    # Still healthy afterwards.
    tracer = _provider(exporter).get_tracer("t")
    with tracer.start_as_current_span("ok", attributes={A.ROOT: True}):
        pass
    assert len(sink.wait(1)) == 1


def test_failing_sink_never_reaches_the_app(make_exporter, tmp_path: Path) -> None:
    def broken(record: TraceRecord) -> None:
        raise RuntimeError("MLflow said no")

    exporter = make_exporter(grace_seconds=0.0, write=broken, retry_max_seconds=0.0,
                             shutdown_timeout_seconds=1.0)
    tracer = _provider(exporter).get_tracer("t")
    span_trace_id = []
    with tracer.start_as_current_span("r", attributes={A.ROOT: True}) as span:
        span_trace_id.append(span.get_span_context().trace_id)
    assert exporter.force_flush(1500) is False  # not written
    exporter.shutdown()
    trace_id = format(span_trace_id[0], "032x")
    spooled = [p.name for p in (tmp_path / "spool").rglob("*.trace.json*")]
    assert any(trace_id in name for name in spooled), "kept on disk, not dropped"


def test_active_mode_writes_only_traces_of_an_active_run(make_exporter, sink) -> None:
    exporter = make_exporter(grace_seconds=0.0, run_mode="active")
    tracer = _provider(exporter).get_tracer("t")
    with tracer.start_as_current_span("no run", attributes={A.ROOT: True}):
        pass
    for _ in range(3):
        with tracer.start_as_current_span("in run", attributes={A.ROOT: True,
                                                                A.MLFLOW_RUN_ID: "abc"}):
            pass
    assert exporter.force_flush(5000)
    assert exporter.stats["skipped"] == 1
    assert all(r.target_run_id == "abc" for r in sink.records)
    assert sum(len(r.traces) for r in sink.records) == 3


def test_active_run_traces_are_batched_per_run(make_exporter, sink) -> None:
    exporter = make_exporter(grace_seconds=60.0)
    tracer = _provider(exporter).get_tracer("t")
    for i in range(10):
        with tracer.start_as_current_span(f"t{i}", attributes={A.ROOT: True,
                                                              A.MLFLOW_RUN_ID: "run-a"}):
            tracer.start_span("chat", attributes={A.GEN_AI_OPERATION_NAME: "chat"}).end()
    assert exporter.force_flush(5000)
    assert len(sink.records) == 1
    batch = sink.records[0]
    assert len(batch.traces) == 10 and len(batch.table.rows) == 10


def test_config_argument_beats_env_beats_default(make_exporter, monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    default = make_exporter()
    assert default.tracking_uri == "sqlite:///mlflow.db" and default.experiment_name is None
    assert default.grace_seconds == settings.DEFAULT_GRACE_SECONDS
    assert default.max_buffered_traces == settings.DEFAULT_MAX_BUFFERED_TRACES
    assert default.run_mode == "trace" and default.link_traces is True
    assert default.parent_wait_seconds == settings.DEFAULT_PARENT_WAIT_SECONDS
    monkeypatch.setenv("OTEL_MLFLOW_PARENT_WAIT_SECONDS", "0.75")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "from-env")
    monkeypatch.setenv("OTEL_MLFLOW_GRACE_SECONDS", "2.5")
    monkeypatch.setenv("OTEL_MLFLOW_MAX_BUFFERED_TRACES", "7")
    monkeypatch.setenv("OTEL_MLFLOW_TRACE_TIMEOUT_SECONDS", "9")
    monkeypatch.setenv("OTEL_MLFLOW_RUN_MODE", "active")
    monkeypatch.setenv("OTEL_MLFLOW_LINK_TRACES", "false")
    env = make_exporter()
    assert (env.tracking_uri, env.experiment_name) == ("http://127.0.0.1:9", "from-env")
    assert (env.grace_seconds, env.max_buffered_traces, env.trace_timeout_seconds) == (2.5, 7, 9)
    assert env.run_mode == "active" and env.link_traces is False
    assert env.parent_wait_seconds == 0.75
    arg = make_exporter(tracking_uri="sqlite:///x.db", experiment_name="arg", grace_seconds=0.1,
                        max_buffered_traces=3, run_mode="trace", link_traces=True,
                        parent_wait_seconds=2.0)
    assert arg.parent_wait_seconds == 2.0
    assert (arg.tracking_uri, arg.experiment_name, arg.grace_seconds) == ("sqlite:///x.db",
                                                                          "arg", 0.1)
    assert arg.max_buffered_traces == 3 and arg.run_mode == "trace" and arg.link_traces
    # Construction is cheap: nothing touched the store (no database file was created).
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "x.db").exists()


def test_sdk_never_calls_the_exporters_force_flush(make_exporter) -> None:
    """The claim behind module-level flush(): provider.force_flush() skips exporter.force_flush."""
    calls: list[int] = []

    class Spy(E.MlflowSpanExporter):
        def force_flush(self, timeout_millis: int = 30000) -> bool:
            calls.append(timeout_millis)
            return super().force_flush(timeout_millis)

    for batch in (True, False):
        provider = TracerProvider()
        spy = Spy(spool_dir=make_exporter().delivery.spool.directory, write=lambda r: None)
        provider.add_span_processor(
            BatchSpanProcessor(spy) if batch else SimpleSpanProcessor(spy)
        )
        assert provider.force_flush()
        provider.shutdown()
    assert calls == []


def test_module_flush_drains_every_live_exporter(make_exporter, sink) -> None:
    exporters = [make_exporter(grace_seconds=60.0) for _ in range(2)]
    for exporter in exporters:
        tracer = _provider(exporter).get_tracer("t")
        with tracer.start_as_current_span("r", attributes={A.ROOT: True}):
            pass
    assert exporters[0] in providers.live_exporters()
    assert providers.flush(10.0) is True
    assert len(sink.records) == 2
    exporters[0].shutdown()
    assert exporters[0] not in providers.live_exporters()


def test_langchain_roots_under_a_local_outer_span_wait_for_it(make_exporter, sink) -> None:
    """Two chains inside one web-request span of the same provider: one run, nothing late."""
    exporter = make_exporter(grace_seconds=0.1, parent_wait_seconds=5.0)
    tracer = _provider(exporter).get_tracer("t")
    with tracer.start_as_current_span("GET /chat") as request_span:
        ctx = trace.set_span_in_context(request_span)
        for i in range(2):
            tracer.start_span(f"invoke_workflow c{i}", context=ctx,
                              attributes={A.ROOT: True}).end()
        time.sleep(0.3)  # longer than the grace: the first chain must not be written alone
        assert sink.records == []
    records = sink.wait(1)
    time.sleep(0.2)
    assert len(sink.records) == 1
    assert records[0].run_name == "GET /chat" and records[0].metrics["spans"] == 3
    assert exporter.stats["late_spans"] == 0


def test_langchain_root_under_a_foreign_parent_is_written_after_the_wait(
    make_exporter, sink
) -> None:
    """The parent lives in another provider and never arrives: written complete, not partial."""
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    exporter = make_exporter(grace_seconds=0.0, parent_wait_seconds=0.4)
    tracer = _provider(exporter).get_tracer("t")
    foreign = SpanContext(trace_id=0x1234, span_id=0x5678, is_remote=False,
                          trace_flags=TraceFlags(TraceFlags.SAMPLED))
    ctx = trace.set_span_in_context(NonRecordingSpan(foreign))
    tracer.start_span("invoke_workflow x", context=ctx, attributes={A.ROOT: True}).end()
    time.sleep(0.2)
    assert sink.records == []
    records = sink.wait(1, timeout=5)
    assert len(records) == 1 and not records[0].partial
    assert records[0].run_name == "invoke_workflow x"


def test_buffer_is_a_hard_cap_when_the_assembler_falls_behind(
    make_exporter, sink, monkeypatch
) -> None:
    """An app producing faster than the assembler converts (a CPU-starved assembler thread,
    simulated by stalling ``build_record`` on that thread only): the exporter never holds more
    than ``max_buffered_traces`` traces; the exporting thread writes the complete ones itself,
    without their grace, none partial and none lost."""
    release = threading.Event()
    real_build = assembler.build_record

    def stalling_build(*args: Any, **kwargs: Any) -> TraceRecord:
        if threading.current_thread().name == "otel_mlflow-assembler":
            release.wait(30)
        return real_build(*args, **kwargs)

    monkeypatch.setattr(assembler, "build_record", stalling_build)
    _faults.reset_fault_counts()
    cap = 20
    exporter = make_exporter(grace_seconds=0.0, max_buffered_traces=cap)
    tracer = _provider(exporter).get_tracer("t")
    held: list[int] = []
    for i in range(200):
        with tracer.start_as_current_span(f"r{i}", attributes={A.ROOT: True}):
            tracer.start_span("chat", attributes={A.GEN_AI_OPERATION_NAME: "chat"}).end()
        with exporter._assembler.lock:
            held.append(exporter._buffer.held())
    assert max(held) <= cap
    # While the assembler is stuck, records still flow: the exporting thread wrote them.
    assert len(sink.wait(150, timeout=10)) >= 150
    assert exporter.stats["early"] >= 150 and exporter.stats["overflow"] == 0
    assert _faults.fault_counts()["exporter.backpressure"] >= 1
    release.set()
    assert exporter.force_flush(10_000)
    assert sorted(r.run_name for r in sink.records) == sorted(f"r{i}" for i in range(200))
    assert not any(r.partial for r in sink.records)
    assert exporter.stats["late_spans"] == 0


def test_shutdown_takes_the_shorter_of_the_sdk_and_own_timeouts(make_exporter, sink,
                                                                  monkeypatch) -> None:
    """The SDK passes what is left of its 30 s; ``shutdown_timeout_seconds`` (1 s) must win
    even when a conversion is stuck (simulated on the assembler thread)."""
    release = threading.Event()
    real_build = assembler.build_record

    def stalling_build(*args: Any, **kwargs: Any) -> TraceRecord:
        if threading.current_thread().name == "otel_mlflow-assembler":
            release.wait(60)
        return real_build(*args, **kwargs)

    monkeypatch.setattr(assembler, "build_record", stalling_build)
    exporter = make_exporter(grace_seconds=0.0, shutdown_timeout_seconds=1.0)
    provider = _provider(exporter, batch=True)
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("stuck", attributes={A.ROOT: True}):
        pass
    provider.force_flush()
    deadline = time.monotonic() + 10
    while exporter.buffered_traces() and time.monotonic() < deadline:
        time.sleep(0.01)  # the assembler has taken the trace and hangs in it
    started = time.monotonic()
    provider.shutdown()  # BatchSpanProcessor -> exporter.shutdown(timeout_millis=~30000)
    elapsed = time.monotonic() - started
    release.set()
    assert elapsed < 5.0, elapsed


@pytest.mark.parametrize("how", ["module flush", "exporter force_flush"])
def test_flush_alone_drains_a_provider_built_by_configure(tmp_path: Path, sink, how) -> None:
    """A provider ``configure()`` extended (not the global one): its BatchSpanProcessor holds
    spans for 5 s; ``otel_mlflow.flush()`` alone gets them written."""
    import otel_mlflow._setup as _configure

    provider = TracerProvider()
    tracer = _configure.configure(
        tracer_provider=provider, set_global=False, otlp=False, write=sink.write,
        spool_dir=str(tmp_path / "spool"), grace_seconds=60.0,
    )
    exporter = next(e for e in _configure._exporters(provider)
                    if isinstance(e, E.MlflowSpanExporter))
    try:
        from langchain_core.runnables import RunnableLambda

        RunnableLambda(lambda x: x + 1).invoke(1, config={"callbacks": [tracer]})
        assert sink.records == []  # still in the SDK's queue
        flushed = providers.flush(10.0) if how == "module flush" else exporter.force_flush(10_000)
        assert flushed is True
        assert len(sink.records) == 1
    finally:
        provider.shutdown()


def test_on_complete_hooks_decide_per_complete_trace(make_exporter, sink) -> None:
    """The private seam for per-trace decisions (tail sampling, issue 11; not public API yet):
    a hook returning False drops the trace
    (counted as skipped); a hook that raises is reported and the trace is kept."""
    _faults.reset_fault_counts()
    exporter = make_exporter(grace_seconds=60.0)
    seen: list[int] = []

    def keep_even(trace: Any) -> bool:
        seen.append(len(trace.spans))
        return trace.spans[0].name.endswith(("0", "2"))

    def broken(trace: Any) -> bool:
        raise RuntimeError("hook bug")

    exporter._assembler.on_complete.extend([broken, keep_even])
    tracer = _provider(exporter).get_tracer("t")
    for i in range(4):
        with tracer.start_as_current_span(f"r{i}", attributes={A.ROOT: True}):
            pass
    assert exporter.force_flush(5000)
    assert sorted(r.run_name for r in sink.records) == ["r0", "r2"]
    assert exporter.stats["skipped"] == 2 and seen == [1, 1, 1, 1]
    assert _faults.fault_counts()["exporter.on_complete"] >= 1
