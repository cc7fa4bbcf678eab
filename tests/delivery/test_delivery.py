"""Delivery: retries, error classification, the circuit and its probe, automatic replay, the
bounded shutdown, instrumentation suppression, and that ``submit`` never blocks or raises.

The write function here is a scripted stand-in for ``MlflowWriter.write`` (a real server cannot
be made to fail on cue per record); the failures it raises are the real exception types MLflow's
client raises, and ``test_real_client_errors_are_classified`` checks those against a real client.
The real writer and server are exercised by test_outage.py, test_basic_auth.py and
test_mlflow_slow.py.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, PERMISSION_DENIED, UNAUTHENTICATED
from opentelemetry import context as otel_context

from otel_mlflow._common import faults as _faults
from otel_mlflow._delivery.errors import ErrorKind, classify_error
from otel_mlflow._delivery.workers import Delivery
from otel_mlflow._delivery.spool import REJECTED_DIR, Spool


@dataclass(frozen=True)
class Rec:
    trace_id: str

    def to_json(self) -> str:
        return json.dumps({"trace_id": self.trace_id})

    @classmethod
    def from_json(cls, text: str) -> Rec:
        return cls(**json.loads(text))


def rec(i: int) -> Rec:
    return Rec(f"{i:032x}")


class Writer:
    """Scripted write: ``mode`` is "up", "down" (connection refused), or a callable raising."""

    def __init__(self) -> None:
        self.mode: str | Callable[[Rec], None] = "up"
        self.calls: list[tuple[str, int]] = []
        self.written: list[str] = []
        self.lock = threading.Lock()
        self.gate: threading.Event | None = None
        self.suppressed: list[bool] = []

    def __call__(self, record: Rec, attempt: int = 0) -> None:
        with self.lock:
            self.calls.append((record.trace_id, attempt))
            self.suppressed.append(
                bool(otel_context.get_value(otel_context._SUPPRESS_INSTRUMENTATION_KEY))
            )
        if self.gate is not None:
            self.gate.wait(60)
        if self.mode == "down":
            raise MlflowException("API request to http://127.0.0.1:1 failed with exception "
                                  "ConnectionError: Connection refused")
        if callable(self.mode):
            self.mode(record)
        with self.lock:
            self.written.append(record.trace_id)


def wait_for(cond: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail("condition not reached in time")
        time.sleep(0.02)


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path / "spool", loads=Rec.from_json)


def test_writes_every_record_once_when_up(spool: Spool) -> None:
    writer = Writer()
    delivery = Delivery(writer, spool=spool, workers=3)
    for i in range(50):
        delivery.submit(rec(i))
    assert delivery.flush(10)
    assert sorted(writer.written) == [f"{i:032x}" for i in range(50)]
    assert all(attempt == 0 for _, attempt in writer.calls)
    assert spool.pending() == 0
    delivery.shutdown(1)


def test_transient_failure_is_retried_with_attempt_count(spool: Spool) -> None:
    writer = Writer()
    failures = {"left": 2}

    def flaky(record: Rec) -> None:
        if failures["left"]:
            failures["left"] -= 1
            resp = requests.Response()
            resp.status_code = 503
            raise requests.HTTPError("503 Service Unavailable", response=resp)

    writer.mode = flaky
    delivery = Delivery(writer, spool=spool, workers=1, open_after_failures=5)
    delivery.submit(rec(1))
    assert delivery.flush(10)
    assert writer.written == [f"{1:032x}"]
    assert [a for _, a in writer.calls] == [0, 1, 2]
    assert delivery.stats["retries"] == 2 and not delivery.circuit_open
    delivery.shutdown(1)


def test_outage_opens_circuit_spools_without_storm_and_replays_on_recovery(
    spool: Spool, caplog: pytest.LogCaptureFixture
) -> None:
    writer = Writer()
    writer.mode = "down"
    delivery = Delivery(
        writer, spool=spool, workers=2, open_after_failures=3, probe_max_seconds=0.5
    )
    with caplog.at_level(logging.WARNING, logger="otel_mlflow._delivery.workers"):
        delivery.submit(rec(0))
        wait_for(lambda: delivery.circuit_open)
        calls_when_open = len(writer.calls)
        for i in range(1, 101):
            delivery.submit(rec(i))
        assert not delivery.flush(0.5)  # MLflow down: not everything is in MLflow
        time.sleep(1.0)
    assert spool.pending() == 101
    # 100 records arrived while open: only the probe touched MLflow, not one call per record.
    assert len(writer.calls) - calls_when_open < 10
    assert any("MLflow unreachable" in r.getMessage() for r in caplog.records)
    writer.mode = "up"
    wait_for(lambda: spool.pending() == 0 and not delivery.circuit_open)
    assert delivery.flush(10)
    assert sorted(writer.written) == [f"{i:032x}" for i in range(101)]  # all, none twice
    last_attempt = dict(writer.calls)  # the successful call is each record's last
    # Replays are flagged as retries, so the writer looks the trace up before creating a run.
    assert all(a >= 1 for a in last_attempt.values())
    delivery.shutdown(1)


def test_flush_probes_immediately_when_mlflow_is_back(spool: Spool) -> None:
    writer = Writer()
    writer.mode = "down"
    delivery = Delivery(writer, spool=spool, open_after_failures=1, probe_max_seconds=60)
    delivery.submit(rec(1))
    wait_for(lambda: delivery.circuit_open and spool.pending() == 1)
    time.sleep(1.5)  # let the probe back off past the first interval
    writer.mode = "up"
    started = time.monotonic()
    assert delivery.flush(20)
    assert time.monotonic() - started < 10  # did not wait for the backed-off probe schedule
    assert writer.written == [f"{1:032x}"]
    delivery.shutdown(1)


def test_auth_failure_spools_logs_and_never_raises(
    spool: Spool, caplog: pytest.LogCaptureFixture
) -> None:
    writer = Writer()

    def unauthorized(record: Rec) -> None:
        raise MlflowException("failed with error code 401 != 200", error_code=UNAUTHENTICATED)

    writer.mode = unauthorized
    delivery = Delivery(writer, spool=spool, workers=1, probe_max_seconds=0.5)
    with caplog.at_level(logging.ERROR, logger="otel_mlflow._delivery.workers"):
        for i in range(5):
            delivery.submit(rec(i))
        delivery.flush(2)
    assert spool.pending() == 5
    assert delivery.circuit_open
    assert len([c for c in writer.calls if c[1] == 0]) == 1  # one refusal pauses the rest
    assert any("refused the credentials" in r.getMessage() for r in caplog.records)
    delivery.shutdown(1)


def test_rejected_record_is_set_aside_and_others_flow(
    spool: Spool, caplog: pytest.LogCaptureFixture
) -> None:
    writer = Writer()

    def reject_one(record: Rec) -> None:
        if record.trace_id == f"{3:032x}":
            raise MlflowException("Invalid value for param", error_code=INVALID_PARAMETER_VALUE)

    writer.mode = reject_one
    delivery = Delivery(writer, spool=spool, workers=1)
    with caplog.at_level(logging.ERROR, logger="otel_mlflow._delivery.workers"):
        for i in range(6):
            delivery.submit(rec(i))
        assert delivery.flush(10)
    assert len(writer.written) == 5 and not delivery.circuit_open
    rejected = list((spool.directory / REJECTED_DIR).iterdir())
    assert len(rejected) == 1 and rejected[0].name.endswith(f"{3:032x}.trace.json")
    assert any("rejected trace" in r.getMessage() for r in caplog.records)
    delivery.shutdown(1)


def test_unexpected_writer_bug_is_counted_and_spooled(spool: Spool) -> None:
    _faults.reset_fault_counts()
    writer = Writer()

    def bug(record: Rec) -> None:
        raise KeyError("oops")

    writer.mode = bug
    delivery = Delivery(writer, spool=spool, workers=1)
    delivery.submit(rec(1))
    delivery.flush(5)
    assert spool.pending() == 1
    assert _faults.fault_counts().get("delivery.write") == 1
    assert not delivery.circuit_open  # a bug is not an outage
    delivery.shutdown(1)


def test_submit_never_blocks_when_writes_hang_and_queue_overflows_to_spool(spool: Spool) -> None:
    writer = Writer()
    writer.gate = threading.Event()  # every write hangs until released
    delivery = Delivery(writer, spool=spool, workers=1, queue_max=5)
    started = time.monotonic()
    for i in range(40):
        delivery.submit(rec(i))
    assert time.monotonic() - started < 2.0
    assert spool.pending() >= 40 - 5 - 1  # overflow spooled, nothing dropped
    writer.gate.set()
    assert delivery.flush(20)
    assert sorted(set(writer.written)) == [f"{i:032x}" for i in range(40)]
    delivery.shutdown(1)


def test_shutdown_is_bounded_spools_the_rest_and_logs_once(
    spool: Spool, caplog: pytest.LogCaptureFixture
) -> None:
    writer = Writer()
    writer.gate = threading.Event()  # MLflow hangs: no write ever returns
    delivery = Delivery(writer, spool=spool, workers=2)
    for i in range(10):
        delivery.submit(rec(i))
    wait_for(lambda: len(writer.calls) == 2)
    with caplog.at_level(logging.WARNING, logger="otel_mlflow._delivery.workers"):
        started = time.monotonic()
        delivery.shutdown(1.0)
        elapsed = time.monotonic() - started
    assert elapsed < 5.0
    lines = [r.getMessage() for r in caplog.records if "at shutdown" in r.getMessage()]
    assert len(lines) == 1
    assert "10 trace(s)" in lines[0] and str(spool.directory) in lines[0]
    assert spool.pending() == 10  # 8 queued + 2 stuck in the hanging requests
    delivery.submit(rec(99))  # after shutdown: straight to the spool, no raise
    assert spool.pending() == 11
    writer.gate.set()


def test_a_new_delivery_replays_what_an_earlier_one_left(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    first = Spool(directory, loads=Rec.from_json)
    for i in range(7):
        first.put(rec(i))
    first.close()
    writer = Writer()
    delivery = Delivery(writer, spool=Spool(directory, loads=Rec.from_json))
    wait_for(lambda: len(writer.written) == 7)
    assert delivery.flush(5)
    assert sorted(writer.written) == [f"{i:032x}" for i in range(7)]
    delivery.shutdown(1)


def test_worker_threads_suppress_instrumentation(spool: Spool) -> None:
    writer = Writer()
    delivery = Delivery(writer, spool=spool)
    delivery.submit(rec(1))
    assert delivery.flush(5)
    assert writer.suppressed == [True]
    # ... while the caller's own context is untouched.
    assert not otel_context.get_value(otel_context._SUPPRESS_INSTRUMENTATION_KEY)
    delivery.shutdown(1)


def test_requests_instrumentation_sees_no_delivery_traffic(spool: Spool) -> None:
    """An app instrumenting ``requests`` gets no spans for otel_mlflow's own HTTP calls."""
    from opentelemetry.instrumentation.requests import RequestsInstrumentor
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from tests._support.delay_proxy import DelayProxy

    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with DelayProxy(upstream_port=None, delay_seconds=0.0) as target:

        def http_write(record: Rec) -> None:
            requests.get(f"{target.url}/health", timeout=5)

        RequestsInstrumentor().instrument(tracer_provider=provider)
        try:
            requests.get(f"{target.url}/health", timeout=5)  # the app's own call: traced
            delivery = Delivery(http_write, spool=spool)
            delivery.submit(rec(1))
            assert delivery.flush(10)
            delivery.shutdown(1)
        finally:
            RequestsInstrumentor().uninstrument()
    assert target.requests == 2
    assert len(memory.get_finished_spans()) == 1


def test_submit_never_raises_on_garbage(spool: Spool) -> None:
    delivery = Delivery(lambda r: None, spool=spool)
    delivery.submit(object())  # no trace_id, no to_json
    delivery.flush(2)
    delivery.shutdown(1)


def test_real_client_errors_are_classified(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow import MlflowClient

    from tests._support.mlflow_server import free_port

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    client = MlflowClient(tracking_uri=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(Exception) as refused:
        client.get_experiment("0")
    assert classify_error(refused.value) is ErrorKind.TRANSIENT
    assert classify_error(MlflowException("x", error_code=UNAUTHENTICATED)) is ErrorKind.AUTH
    assert classify_error(MlflowException("x", error_code=PERMISSION_DENIED)) is ErrorKind.AUTH
    assert classify_error(MlflowException("x", error_code=INVALID_PARAMETER_VALUE)) is (
        ErrorKind.REJECTED
    )
    assert classify_error(requests.ConnectionError("reset")) is ErrorKind.TRANSIENT
    assert classify_error(TimeoutError()) is ErrorKind.TRANSIENT
    assert classify_error(ValueError("bug")) is ErrorKind.ERROR


def test_a_bad_record_at_the_head_of_the_spool_does_not_hold_the_circuit_open(
    spool: Spool,
) -> None:
    writer = Writer()
    writer.mode = "down"
    delivery = Delivery(
        writer, spool=spool, workers=1, open_after_failures=1, probe_max_seconds=0.5
    )
    delivery.submit(rec(0))
    wait_for(lambda: delivery.circuit_open)
    delivery.submit(rec(1))
    wait_for(lambda: spool.pending() == 2)

    def bad_first(record: Rec) -> None:
        if record.trace_id == f"{0:032x}":
            raise TypeError("cannot serialise this one")

    writer.mode = bad_first  # MLflow is back; record 0 trips a bug every time
    wait_for(lambda: writer.written == [f"{1:032x}"])
    assert not delivery.circuit_open
    # The bad one stays on disk (retried with backoff, then set aside in rejected/), not lost.
    assert len(spooled_for(spool, 0)) == 1
    delivery.shutdown(1)


def test_hanging_writes_open_the_circuit_and_records_wait_on_disk(
    spool: Spool, caplog: pytest.LogCaptureFixture
) -> None:
    """MLflow's client retries for minutes before raising: a hang must count as an outage."""
    writer = Writer()
    writer.gate = threading.Event()
    delivery = Delivery(writer, spool=spool, workers=2, stall_seconds=0.5)
    with caplog.at_level(logging.WARNING, logger="otel_mlflow._delivery.workers"):
        for i in range(10):
            delivery.submit(rec(i))
        wait_for(lambda: delivery.circuit_open)
        for i in range(10, 20):
            delivery.submit(rec(i))
    # 2 records hang in the workers; the other 18 are on disk, none only in memory.
    assert spool.pending() == 18
    assert any("no answer from MLflow" in r.getMessage() for r in caplog.records)
    writer.gate.set()  # MLflow answers again: the hung writes finish and close the circuit
    wait_for(lambda: not delivery.circuit_open and spool.pending() == 0)
    assert delivery.flush(10)
    assert sorted(set(writer.written)) == [f"{i:032x}" for i in range(20)]
    delivery.shutdown(1)


def spooled_for(spool: Spool, index: int) -> list[Path]:
    """Spool entries (waiting or set aside) holding the trace ``rec(index)``."""
    suffix = f"{index:032x}.trace.json"
    return [p for p in spool.directory.rglob("*") if p.name.endswith(suffix)]


def workers_done(delivery: Delivery) -> bool:
    return not any(thread.is_alive() for thread in delivery._threads)


def test_record_stuck_at_shutdown_is_spooled_once_even_when_its_write_fails_later(
    spool: Spool,
) -> None:
    writer = Writer()
    writer.gate = threading.Event()  # the request hangs past shutdown ...
    delivery = Delivery(writer, spool=spool, workers=1)
    delivery.submit(rec(1))
    wait_for(lambda: len(writer.calls) == 1)
    delivery.shutdown(0.3)
    assert len(spooled_for(spool, 1)) == 1  # shutdown took the stuck record over
    writer.mode = "down"  # ... then fails: the worker must not spool its own second copy
    writer.gate.set()
    wait_for(lambda: workers_done(delivery))
    assert len(spooled_for(spool, 1)) == 1
    assert spool.pending() == 1


def test_write_that_succeeds_after_shutdown_gave_up_leaves_no_spool_copy(spool: Spool) -> None:
    writer = Writer()
    writer.gate = threading.Event()
    delivery = Delivery(writer, spool=spool, workers=1)
    delivery.submit(rec(2))
    wait_for(lambda: len(writer.calls) == 1)
    delivery.shutdown(0.3)
    assert spool.pending() == 1
    writer.gate.set()  # MLflow answers after all: the trace is written ...
    wait_for(lambda: workers_done(delivery))
    assert writer.written == [f"{2:032x}"]
    assert spooled_for(spool, 2) == []  # ... and its spool copy is gone (nothing to replay)


def test_unexpected_error_is_retried_with_backoff_then_set_aside_never_in_a_loop(
    spool: Spool, caplog: pytest.LogCaptureFixture
) -> None:
    writer = Writer()
    bad = f"{1:032x}"

    def bug_on_one(record: Rec) -> None:
        if record.trace_id == bad:
            raise TypeError("cannot convert this record")

    writer.mode = bug_on_one
    delivery = Delivery(writer, spool=spool, workers=1, error_attempts=3,
                        error_backoff_seconds=0.4)

    def bad_calls() -> int:
        with writer.lock:
            return sum(1 for trace_id, _ in writer.calls if trace_id == bad)

    delivery.submit(rec(1))
    delivery.submit(rec(2))
    started = time.monotonic()
    assert not delivery.flush(3.0)  # the bad record is not in MLflow ...
    assert time.monotonic() - started < 2.0  # ... and flush says so without spinning on it
    assert bad_calls() <= 2
    assert f"{2:032x}" in writer.written
    with caplog.at_level(logging.ERROR, logger="otel_mlflow._delivery.spool"):
        wait_for(lambda: len(list((spool.directory / REJECTED_DIR).glob("*"))) == 1)
    assert bad_calls() == 3  # the first write, then two backed-off retries
    assert spool.pending() == 0
    assert any("unexpected error" in r.getMessage() for r in caplog.records)
    time.sleep(1.5)
    assert bad_calls() == 3  # rejected/ is not retried automatically
    assert delivery.flush(2.0)
    delivery.shutdown(1)


def test_entry_mlflow_rejects_on_replay_is_set_aside_after_one_try(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    first = Spool(directory, loads=Rec.from_json)
    first.put(rec(5))
    first.close()
    writer = Writer()

    def invalid(record: Rec) -> None:
        raise MlflowException("Invalid value for param", error_code=INVALID_PARAMETER_VALUE)

    writer.mode = invalid
    spool = Spool(directory, loads=Rec.from_json)
    delivery = Delivery(writer, spool=spool, workers=1)
    assert delivery.flush(5.0)  # nothing waits: the refused entry is set aside
    assert len(list((directory / REJECTED_DIR).iterdir())) == 1
    assert delivery.flush(2.0) and len(writer.calls) == 1
    assert not delivery.circuit_open  # MLflow answered: it is up
    delivery.shutdown(1)
