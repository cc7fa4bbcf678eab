"""A real OTLP/HTTP trace receiver for tests: stdlib HTTP server decoding protobuf requests.

``POST /v1/traces`` with ``Content-Type: application/x-protobuf`` (optionally gzip/deflate
encoded) is parsed with ``opentelemetry.proto`` into ``ReceivedSpan`` rows; anything else gets
the status an OTLP collector would give (404 for other paths, 400 for bad bodies / types).
"""

from __future__ import annotations

import gzip
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

TRACES_PATH = "/v1/traces"


@dataclass(frozen=True)
class ReceivedSpan:
    trace_id: str  # 32 hex
    span_id: str  # 16 hex
    parent_span_id: str | None
    name: str
    attributes: dict[str, Any]
    resource: dict[str, Any]


def _decode(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_decode(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _decode(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind)


class OtlpReceiver:
    """Context manager; ``.endpoint`` is the full traces URL, ``.spans`` what arrived."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spans: list[ReceivedSpan] = []
        self.requests: list[dict[str, str]] = []  # headers of each accepted request
        self.rejected = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path.split("?")[0] != TRACES_PATH:
                    self._reply(404, b"")
                    return
                try:
                    encoding = (self.headers.get("Content-Encoding") or "").lower()
                    if encoding == "gzip":
                        body = gzip.decompress(body)
                    elif encoding == "deflate":
                        body = zlib.decompress(body)
                    if "application/x-protobuf" not in (self.headers.get("Content-Type") or ""):
                        raise ValueError("not protobuf")
                    request = ExportTraceServiceRequest.FromString(body)
                except Exception:  # noqa: BLE001 - any bad body is a 400, as a collector does
                    with receiver._lock:
                        receiver.rejected += 1
                    self._reply(400, b"")
                    return
                receiver._accept(request, dict(self.headers.items()))
                self._reply(200, ExportTraceServiceResponse().SerializeToString())

            def _reply(self, status: int, payload: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def endpoint(self) -> str:
        return self.url + TRACES_PATH

    def _accept(self, request: ExportTraceServiceRequest, headers: dict[str, str]) -> None:
        rows = []
        for resource_spans in request.resource_spans:
            resource = {kv.key: _decode(kv.value) for kv in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    rows.append(
                        ReceivedSpan(
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex() or None,
                            name=span.name,
                            attributes={kv.key: _decode(kv.value) for kv in span.attributes},
                            resource=resource,
                        )
                    )
        with self._lock:
            self._spans.extend(rows)
            self.requests.append(headers)

    @property
    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self._spans)

    def wait_for(
        self, predicate: Callable[[list[ReceivedSpan]], bool], timeout: float = 30.0
    ) -> list[ReceivedSpan]:
        """Poll until ``predicate(spans)`` holds; returns the spans (raises on timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            spans = self.spans
            if predicate(spans):
                return spans
            if time.monotonic() > deadline:
                raise TimeoutError(f"OTLP receiver: condition not met; got {len(spans)} spans")
            time.sleep(0.05)

    def start(self) -> OtlpReceiver:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="otlp-receiver", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> OtlpReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
