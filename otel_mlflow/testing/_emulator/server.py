"""The emulator's HTTP side: a stdlib ``ThreadingHTTPServer`` and its routes.

Routes (``POST``; anything else answers 404 / 405 with Google error JSON):

- Vertex AI, ``/{v1|v1beta1}/projects/{p}/locations/{l}/publishers/google/models/{m}:{method}``
  (``ChatVertexAI``'s REST transport, and google-genai with ``vertexai=True``);
- the Gemini Developer API, ``/{v1|v1beta}/models/{m}:{method}``: a request without an API key
  (``x-goog-api-key`` header or ``?key=``) answers 403 as Google does.

``method`` is ``generateContent`` (one JSON object) or ``streamGenerateContent``: with
``?alt=sse`` (google-genai) as server-sent events, ``data: {json}`` per chunk; otherwise (the
Vertex REST transport) as one JSON *array* written piece by piece. Both use chunked transfer
encoding, so a reply with ``break_after_chunks`` can stop midway by closing the connection.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from otel_mlflow.testing._emulator.responses import error_body
from otel_mlflow.testing._emulator.script import (
    BACKEND_GEMINI_API,
    BACKEND_VERTEX,
    GEMINI_API_PATH,
    GENERATE_METHODS,
    VERTEX_PATH,
    ReceivedRequest,
    Reply,
)

_logger = logging.getLogger("otel_mlflow.testing.gemini_emulator")

# (request) -> queued reply or None; (request) -> default reply; (request, reply) -> bodies
Record = Callable[[ReceivedRequest], "Reply | None"]
Default = Callable[[ReceivedRequest], Reply]
Bodies = Callable[[ReceivedRequest, Reply], "list[dict[str, Any]]"]


class Server(ThreadingHTTPServer):
    """Tracks open client connections so ``stop()`` also ends idle keep-alive handler threads."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, address = super().get_request()
        with self._connections_lock:
            self._connections.add(conn)
        return conn, address

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections, self._connections = self._connections, set()
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by the client


def parse_request(command: str, raw_path: str, headers: Any, raw: bytes) -> ReceivedRequest:
    split = urlsplit(raw_path)
    try:
        body: Any = json.loads(raw.decode("utf-8")) if raw else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        body = raw.decode("utf-8", errors="replace")
    backend = None
    match = VERTEX_PATH.match(split.path)
    if match:
        backend = BACKEND_VERTEX
    else:
        match = GEMINI_API_PATH.match(split.path)
        if match:
            backend = BACKEND_GEMINI_API
    return ReceivedRequest(
        method=command,
        path=split.path,
        query={k: tuple(v) for k, v in parse_qs(split.query).items()},
        headers={k.lower(): v for k, v in headers.items()},
        body=body,
        model=match["model"] if match else None,
        api_method=match["method"] if match else None,
        received_at=time.time(),
        backend=backend,
    )


def make_handler(record: Record, default: Default, bodies: Bodies
                 ) -> type[BaseHTTPRequestHandler]:
    class _Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "GeminiEmulator/1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
            _logger.debug("gemini emulator: " + format, *args)

        def do_GET(self) -> None:  # noqa: N802 - stdlib naming
            self._handle()

        def do_POST(self) -> None:  # noqa: N802 - stdlib naming
            self._handle()

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            request = parse_request(self.command, self.path, self.headers, raw)
            reply = record(request)
            if request.api_method not in GENERATE_METHODS:
                self._send_json(404, error_body(404, f"no emulated endpoint {request.path}"))
                return
            if self.command != "POST":
                self._send_json(405, error_body(400, "use POST"))
                return
            if request.backend == BACKEND_GEMINI_API and not request.api_key:
                self._send_json(403, error_body(403, "Method doesn't allow unregistered callers "
                                                     "(callers without established identity)."))
                return
            if reply is None:
                reply = default(request)
            if reply.delay_seconds > 0:
                time.sleep(reply.delay_seconds)
            if reply.status != 200:
                self._send_json(reply.status, error_body(reply.status, reply.error_message))
                return
            payloads = bodies(request, reply)
            try:
                if request.stream:
                    self._send_stream(payloads, reply, request.sse)
                else:
                    self._send_json(200, payloads[0])
            except (BrokenPipeError, ConnectionResetError):
                # The client abandoned the call (e.g. a stream it stopped reading): not an error.
                self.close_connection = True

        def _send_json(self, status: int, payload: Any) -> None:
            data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _send_stream(self, payloads: list[dict[str, Any]], reply: Reply, sse: bool) -> None:
            self.send_response(200)
            self.send_header("Content-Type",
                             "text/event-stream" if sse else "application/json; charset=UTF-8")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for index, payload in enumerate(payloads):
                if reply.break_after_chunks is not None and index >= reply.break_after_chunks:
                    self._break()
                    return
                if index and reply.chunk_delay_seconds > 0:
                    time.sleep(reply.chunk_delay_seconds)
                text = json.dumps(payload, ensure_ascii=False)
                if sse:
                    text = "data: " + text + "\r\n\r\n"
                else:
                    text = ("[" if index == 0 else ",\r\n") + text
                self._chunk(text.encode("utf-8"))
            if not sse:
                self._chunk(b"]")
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

        def _break(self) -> None:
            """End the response without its last chunk: the client sees a broken stream."""
            self.wfile.flush()
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

        def _chunk(self, data: bytes) -> None:
            self.wfile.write(f"{len(data):X}\r\n".encode("ascii") + data + b"\r\n")
            self.wfile.flush()

    return _Handler
