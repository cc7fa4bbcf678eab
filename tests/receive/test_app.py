"""The receiver's HTTP answers, in process: the real starlette app over ``TestClient`` (httpx),
a real ``Receiver`` (span log on disk, exporter, delivery) writing to the session's real
``mlflow server``. Every status code of the OTLP/HTTP spec, protobuf and JSON, gzip."""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.rpc.status_pb2 import Status as RpcStatus
from mlflow import MlflowClient
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.testclient import TestClient

from otel_mlflow._receive import metrics as M
from otel_mlflow._receive.app import Limits, build_app, inflate, is_loopback
from otel_mlflow._receive.service import Receiver
from tests._support.mlflow_server import MlflowServer

PB = {"Content-Type": "application/x-protobuf"}
TOKEN = "s3cret-token"


def make_trace(name: str = "root", children: int = 2) -> list[ReadableSpan]:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "app-test"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span(name):
        for index in range(children):
            with tracer.start_as_current_span(f"child-{index}"):
                pass
    provider.shutdown()
    return list(memory.get_finished_spans())


def body_of(spans: list[ReadableSpan]) -> bytes:
    return encode_spans(spans).SerializeToString()


@pytest.fixture
def make_client(mlflow_server: MlflowServer, tmp_path: Path) -> Iterator[Any]:
    clients: list[TestClient] = []

    def make(token: str | None = None, max_body: int = 1 << 20, **kwargs: Any) -> TestClient:
        receiver = Receiver(mlflow_server.url, f"receiver-app-{len(clients)}-{time.time_ns()}",
                            spool_dir=str(tmp_path / f"spool{len(clients)}"),
                            grace_seconds=0.1, **kwargs)
        client = TestClient(build_app(receiver, Limits(token, max_body), close_timeout=20))
        client.__enter__()
        client.receiver = receiver  # type: ignore[attr-defined]
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def metric(client: TestClient, name: str, headers: dict[str, str] | None = None) -> float:
    text = client.get("/metrics", headers=headers or {}).text
    return M.parse(text).get(name, 0.0)


def test_protobuf_spans_are_acknowledged_and_written_as_one_run(make_client: Any) -> None:
    client = make_client()
    spans = make_trace("pb-root")
    answer = client.post("/v1/traces", content=body_of(spans), headers=PB)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/x-protobuf"
    assert ExportTraceServiceResponse.FromString(answer.content).partial_success.rejected_spans == 0
    receiver: Receiver = client.receiver
    assert metric(client, "spans_received_total") == 3
    trace_hex = f"{spans[0].context.trace_id:032x}"
    deadline = time.monotonic() + 30
    runs: list[Any] = []
    mlflow = MlflowClient(receiver.exporter.tracking_uri)
    exp = None
    while time.monotonic() < deadline and not runs:
        exp = exp or mlflow.get_experiment_by_name(receiver.exporter.experiment_name)
        if exp is not None:
            runs = mlflow.search_runs([exp.experiment_id], f"tags.`otel.trace_id` = '{trace_hex}'")
        time.sleep(0.2)
    assert len(runs) == 1
    assert runs[0].data.tags["otel_mlflow.sample_ratio"] == "1.0"
    # The run is complete in MLflow a moment before the receiver counts it and frees its log.
    while time.monotonic() < deadline and metric(client, "traces_held") != 0:
        time.sleep(0.05)
    assert metric(client, "traces_written_total") == 1
    assert metric(client, "traces_held") == 0


def test_json_bodies_get_json_answers_and_gzip_is_inflated(make_client: Any) -> None:
    from google.protobuf import json_format

    client = make_client()
    data = json_format.MessageToDict(encode_spans(make_trace("json-root")))
    for rs in data["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for span in ss["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        import base64

                        span[key] = base64.b64decode(span[key]).hex()
    answer = client.post("/v1/traces", content=gzip.compress(json.dumps(data).encode()),
                         headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == {}
    assert metric(client, "spans_received_total") == 3


def test_invalid_spans_are_reported_in_partial_success(make_client: Any) -> None:
    client = make_client()
    request = encode_spans(make_trace(children=1))
    bad = request.resource_spans[0].scope_spans[0].spans.add()
    bad.trace_id, bad.span_id, bad.name = b"\x00" * 16, b"\x01" * 8, "bad"
    answer = client.post("/v1/traces", content=request.SerializeToString(), headers=PB)
    assert answer.status_code == 200
    partial = ExportTraceServiceResponse.FromString(answer.content).partial_success
    assert partial.rejected_spans == 1 and "trace id" in partial.error_message
    assert metric(client, "spans_rejected_total") == 1
    assert metric(client, "spans_received_total") == 2


@pytest.mark.parametrize("content, headers, reason", [
    (b"\x0a\xff\xff", PB, "ExportTraceServiceRequest"),
    (b"{", {"Content-Type": "application/json"}, "not JSON"),
    (b"not gzip", {**PB, "Content-Encoding": "gzip"}, "not gzip"),
    (gzip.compress(b"x" * 100)[:-12], {**PB, "Content-Encoding": "gzip"}, "truncated"),
    (b"", {**PB, "Content-Encoding": "br"}, "content encoding"),
])
def test_bad_bodies_get_400_with_the_reason(
    make_client: Any, content: bytes, headers: dict[str, str], reason: str
) -> None:
    answer = make_client().post("/v1/traces", content=content, headers=headers)
    assert answer.status_code == 400
    kind = headers["Content-Type"]
    message = (answer.json()["message"] if kind == "application/json"
               else RpcStatus.FromString(answer.content).message)
    assert reason in message


def test_other_content_types_get_415(make_client: Any) -> None:
    answer = make_client().post("/v1/traces", content=b"x", headers={"Content-Type": "text/plain"})
    assert answer.status_code == 415


def test_a_configured_token_is_required_on_traces_and_metrics_not_on_healthz(
    make_client: Any,
) -> None:
    client = make_client(token=TOKEN)
    body = body_of(make_trace())
    assert client.post("/v1/traces", content=body, headers=PB).status_code == 401
    wrong = {**PB, "Authorization": "Bearer nope"}
    assert client.post("/v1/traces", content=body, headers=wrong).status_code == 401
    assert client.post("/v1/traces", content=body,
                       headers={**PB, "Authorization": TOKEN}).status_code == 401
    right = {**PB, "Authorization": f"Bearer {TOKEN}"}
    assert client.post("/v1/traces", content=body, headers=right).status_code == 200
    assert client.get("/metrics").status_code == 401
    assert client.get("/healthz").status_code == 200
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert metric(client, 'requests_total{code="401"}', auth) == 3
    assert metric(client, 'requests_total{code="200"}', auth) == 1


def test_bodies_over_the_limit_get_413_compressed_or_decompressed(make_client: Any) -> None:
    client = make_client(max_body=64 * 1024)
    big = b"\x00" * (65 * 1024)
    assert client.post("/v1/traces", content=big, headers=PB).status_code == 413
    bomb = gzip.compress(b"\x00" * (50 * 1024 * 1024))  # 50 MiB of zeros in ~50 KB
    assert len(bomb) < 64 * 1024
    answer = client.post("/v1/traces", content=bomb, headers={**PB, "Content-Encoding": "gzip"})
    assert answer.status_code == 413
    assert "decompressed" in RpcStatus.FromString(answer.content).message


def test_inflate_stops_at_the_limit_without_inflating_the_rest() -> None:
    from otel_mlflow._receive.app import TooLarge

    with pytest.raises(TooLarge):
        inflate(gzip.compress(b"a" * 10_000), 9_999)
    assert inflate(gzip.compress(b"a" * 10_000), 10_000) == b"a" * 10_000


def test_a_full_backlog_gets_429_with_retry_after(make_client: Any) -> None:
    client = make_client(max_backlog_bytes=1)
    assert client.post("/v1/traces", content=body_of(make_trace()), headers=PB).status_code == 200
    answer = client.post("/v1/traces", content=body_of(make_trace()), headers=PB)
    assert answer.status_code == 429
    assert answer.headers["Retry-After"] == "5"


def test_a_span_log_that_cannot_be_written_gets_503_with_retry_after(make_client: Any) -> None:
    client = make_client()
    client.receiver.log.close()  # the disk is gone: every append fails
    answer = client.post("/v1/traces", content=body_of(make_trace()), headers=PB)
    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "5"


def test_a_draining_receiver_answers_503_and_healthz_says_so(make_client: Any) -> None:
    client = make_client()
    client.receiver.draining = True
    answer = client.post("/v1/traces", content=body_of(make_trace()), headers=PB)
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "5"
    assert client.get("/healthz").status_code == 503
    client.receiver.draining = False


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("::1", True), ("[::1]", True), ("localhost", True),
    ("0.0.0.0", False), ("::", False), ("10.1.2.3", False), ("example.com", False),
])
def test_loopback_addresses_are_told_apart(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_sampled_out_traces_leave_the_span_log_and_are_counted(make_client: Any) -> None:
    client = make_client(sample_ratio=0.0)
    ok = make_trace("ok-root")
    assert client.post("/v1/traces", content=body_of(ok), headers=PB).status_code == 200
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and metric(client, "traces_sampled_out_total") < 1:
        time.sleep(0.05)
    assert metric(client, "traces_sampled_out_total") == 1
    assert metric(client, "traces_held") == 0  # released through the exporter's on_discard
    assert metric(client, "traces_written_total") == 0
