"""A local Gemini (Vertex AI) REST emulator, so the real ``ChatVertexAI`` client runs offline.

Tests, the examples and ``otel-mlflow demo`` point the real client at it::

    from otel_mlflow.testing import GeminiEmulator

    with GeminiEmulator() as emulator:
        emulator.queue_text("Bonjour", usage=Usage(prompt=3, candidates=1, total=9, thoughts=5))
        llm = emulator.chat_model("gemini-2.0-flash", temperature=0.2)
        llm.invoke("Say hello in French")           # -> AIMessage("Bonjour")
        emulator.requests[-1].prompt_text           # what the client sent

It is a stdlib ``ThreadingHTTPServer`` on ``127.0.0.1`` (random port) answering the two endpoints
``ChatVertexAI(api_transport="rest")`` uses:

- ``POST /{version}/projects/{p}/locations/{l}/publishers/google/models/{m}:generateContent``
  -> one ``GenerateContentResponse`` JSON object;
- ``...:streamGenerateContent`` -> a JSON *array* of responses written piece by piece with chunked
  transfer encoding (the REST transport parses a streamed array, not SSE; it sends ``?$alt=json``
  which is ignored here).

Replies, in priority order: 1. the next queued :class:`Reply` (FIFO; each answers one request),
2. the default echo reply ``"Echo: <last user text>"`` with token counts derived from word counts.
Errors are answered with Google's error JSON (``{"error": {"code", "message", "status"}}``), which
``google.api_core`` turns into the same exception classes the real service produces.

Limits: no auth, no safety ratings, no count-tokens or embeddings endpoints (they answer 404
with Google error JSON); one reply per request, also for streams.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
import time
import warnings
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

if TYPE_CHECKING:
    from types import TracebackType

    from langchain_google_vertexai import ChatVertexAI, VertexAI

_logger = logging.getLogger(__name__)

DEFAULT_PROJECT = "test-project"
DEFAULT_LOCATION = "us-central1"

_PATH_RE = re.compile(
    r"^/(?P<version>v1(?:beta1)?)/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)"
    r"/publishers/(?P<publisher>[^/]+)/models/(?P<model>[^/:]+):(?P<method>[A-Za-z]+)$"
)

# google.rpc.Code names for the HTTP statuses tests use; google.api_core maps the HTTP status.
_STATUS_NAMES: dict[int, str] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


@dataclass(frozen=True)
class Usage:
    """``usageMetadata`` of a reply. ``total`` is sent as given (Gemini's includes thoughts)."""

    prompt: int = 0
    candidates: int = 0
    total: int | None = None
    cached: int | None = None
    thoughts: int | None = None

    def to_json(self) -> dict[str, int]:
        total = self.total
        if total is None:
            total = self.prompt + self.candidates + (self.thoughts or 0)
        data = {
            "promptTokenCount": self.prompt,
            "candidatesTokenCount": self.candidates,
            "totalTokenCount": total,
        }
        if self.cached is not None:
            data["cachedContentTokenCount"] = self.cached
        if self.thoughts is not None:
            data["thoughtsTokenCount"] = self.thoughts
        return data


@dataclass(frozen=True)
class FunctionCall:
    """One ``functionCall`` part: the model asks the app to call a tool."""

    name: str
    args: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Reply:
    """One scripted answer.

    ``status`` other than 200 answers with Google error JSON carrying ``error_message``.
    ``delay_seconds`` is waited before the response starts; ``chunk_delay_seconds`` between
    streamed chunks. ``stream_chunks`` splits the text into that many streamed pieces (at least
    one; function calls go in the last piece). ``usage`` None derives counts from word counts.
    """

    text: str | None = None
    function_calls: tuple[FunctionCall, ...] = ()
    status: int = 200
    error_message: str | None = None
    delay_seconds: float = 0.0
    chunk_delay_seconds: float = 0.0
    stream_chunks: int = 3
    usage: Usage | None = None
    finish_reason: str = "STOP"
    model_version: str | None = None
    response_id: str | None = None


@dataclass(frozen=True)
class ReceivedRequest:
    """One request as the emulator received it (body parsed as JSON when possible)."""

    method: str
    path: str
    query: Mapping[str, Sequence[str]]
    headers: Mapping[str, str]
    body: Any
    model: str | None
    api_method: str | None
    received_at: float

    @property
    def stream(self) -> bool:
        return self.api_method == "streamGenerateContent"

    @property
    def contents(self) -> list[dict[str, Any]]:
        body = self.body if isinstance(self.body, dict) else {}
        contents = body.get("contents")
        return contents if isinstance(contents, list) else []

    @property
    def texts(self) -> list[str]:
        """Every text part of ``contents``, in order (system instruction excluded)."""
        return [text for content in self.contents for text in _texts(content)]

    @property
    def prompt_text(self) -> str:
        """The text parts of the last ``user`` content, joined by newlines."""
        for content in reversed(self.contents):
            if content.get("role", "user") == "user":
                return "\n".join(_texts(content))
        return ""

    @property
    def system_instruction(self) -> str | None:
        body = self.body if isinstance(self.body, dict) else {}
        instruction = body.get("systemInstruction") or body.get("system_instruction")
        if not isinstance(instruction, dict):
            return None
        return "\n".join(_texts(instruction))

    @property
    def generation_config(self) -> dict[str, Any]:
        body = self.body if isinstance(self.body, dict) else {}
        config = body.get("generationConfig") or body.get("generation_config") or {}
        return config if isinstance(config, dict) else {}

    @property
    def tool_names(self) -> list[str]:
        body = self.body if isinstance(self.body, dict) else {}
        names: list[str] = []
        for tool in body.get("tools") or []:
            for decl in tool.get("functionDeclarations") or tool.get("function_declarations") or []:
                names.append(str(decl.get("name")))
        return names


def _texts(content: Mapping[str, Any]) -> list[str]:
    parts = content.get("parts")
    if not isinstance(parts, list):
        return []
    return [part["text"] for part in parts if isinstance(part, dict) and "text" in part]


def _word_count(text: str) -> int:
    # A stable, human-checkable stand-in for a tokenizer; CJK text has no spaces, so count chars.
    words = text.split()
    if len(words) <= 1 and len(text) > 1 and not text.isascii():
        return len(text)
    return max(1, len(words)) if text else 0


def _split(text: str, pieces: int) -> list[str]:
    pieces = max(1, pieces)
    if not text:
        return [""]
    size = -(-len(text) // pieces)
    return [text[i : i + size] for i in range(0, len(text), size)]


class GeminiEmulator:
    """The emulator server. Context manager, or ``start()`` / ``stop()`` (both idempotent).

    Thread-safe: replies may be queued and ``requests`` read while the client is calling.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        model_version: str | None = None,
    ) -> None:
        self._host = host
        self._port = port
        self._model_version = model_version
        self._lock = threading.Lock()
        self._replies: deque[Reply] = deque()
        self._requests: list[ReceivedRequest] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self) -> GeminiEmulator:
        if self._server is not None:
            return self
        server = _Server((self._host, self._port), _make_handler(self))
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="gemini-emulator",
            daemon=True,
        )
        thread.start()
        self._server, self._thread = server, thread
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        server.close_connections()
        if thread is not None:
            thread.join(timeout=5.0)

    def __enter__(self) -> GeminiEmulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("GeminiEmulator is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``: pass as ``api_endpoint`` (the scheme selects plain HTTP)."""
        return f"http://{self._host}:{self.port}"

    # --- scripting ----------------------------------------------------------------------------
    def queue(self, *replies: Reply) -> None:
        with self._lock:
            self._replies.extend(replies)

    def queue_text(self, text: str, **options: Any) -> None:
        """Queue a text reply; ``options`` are :class:`Reply` fields."""
        self.queue(Reply(text=text, **options))

    def queue_function_call(self, name: str, args: Mapping[str, Any] | None = None,
                            **options: Any) -> None:
        """Queue a reply that asks for one tool call (``finishReason`` stays ``STOP``)."""
        self.queue(Reply(function_calls=(FunctionCall(name, dict(args or {})),), **options))

    def queue_function_calls(self, calls: Iterable[tuple[str, Mapping[str, Any]]],
                             **options: Any) -> None:
        self.queue(Reply(function_calls=tuple(FunctionCall(n, dict(a)) for n, a in calls),
                         **options))

    def queue_error(self, status: int, message: str | None = None, **options: Any) -> None:
        """Queue an HTTP error answer (e.g. 400, 429, 500) in Google's error JSON format."""
        self.queue(Reply(status=status, error_message=message, **options))

    def queue_delay(self, seconds: float, text: str | None = None, **options: Any) -> None:
        """Queue a reply that starts after ``seconds`` (echo text unless ``text`` is given)."""
        self.queue(Reply(text=text, delay_seconds=seconds, **options))

    @property
    def pending_replies(self) -> int:
        with self._lock:
            return len(self._replies)

    @property
    def requests(self) -> list[ReceivedRequest]:
        """A copy of the request log, oldest first."""
        with self._lock:
            return list(self._requests)

    def clear(self) -> None:
        """Forget queued replies and logged requests."""
        with self._lock:
            self._replies.clear()
            self._requests.clear()

    # --- client -------------------------------------------------------------------------------
    def chat_model(self, model: str = "gemini-2.0-flash", *, async_transport: bool = False,
                   **kwargs: Any) -> ChatVertexAI:
        """A real ``ChatVertexAI`` wired to this emulator (anonymous credentials, REST, no retry).

        ``async_transport=False`` (default): ``api_transport="rest"`` over ``requests``, for the
        sync API (``invoke``, ``stream``, ``batch``). ``async_transport=True``:
        ``api_transport="rest_asyncio"`` over ``aiohttp``, for ``ainvoke`` / ``astream`` /
        ``abatch`` — with a custom endpoint, langchain-google-vertexai 3.2 builds its async client
        on the transport named here, and the sync ``"rest"`` one cannot be awaited. The model
        caches its async client, so use one async model per event loop. ``kwargs`` override or
        extend the constructor arguments.
        """
        from langchain_google_vertexai import ChatVertexAI

        if async_transport:
            from google.auth.aio.credentials import AnonymousCredentials as AsyncAnonymous

            credentials: Any = AsyncAnonymous()
            transport = "rest_asyncio"
        else:
            from google.auth.credentials import AnonymousCredentials

            credentials = AnonymousCredentials()
            transport = "rest"
        options: dict[str, Any] = {
            "model": model,
            "project": DEFAULT_PROJECT,
            "location": DEFAULT_LOCATION,
            "credentials": credentials,
            "api_endpoint": self.url,
            "api_transport": transport,
            "max_retries": 0,
        }
        options.update(kwargs)
        # langchain-google-vertexai 3.2 flags ChatVertexAI as deprecated in favour of another
        # package; here the point is to run this very client, so the notice is only noise.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*ChatVertexAI.*deprecated")
            warnings.filterwarnings("ignore", message=".*ChatGoogleGenerativeAI.*")
            return ChatVertexAI(**options)

    def completion_model(self, model: str = "gemini-2.0-flash", **kwargs: Any) -> VertexAI:
        """A real ``VertexAI`` text-completion model (``BaseLLM``) wired to this emulator (REST)."""
        from google.auth.credentials import AnonymousCredentials
        from langchain_google_vertexai import VertexAI

        options: dict[str, Any] = {
            "model": model,
            "project": DEFAULT_PROJECT,
            "location": DEFAULT_LOCATION,
            "credentials": AnonymousCredentials(),
            "api_endpoint": self.url,
            "api_transport": "rest",
            "max_retries": 0,
        }
        options.update(kwargs)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*VertexAI.*deprecated")
            warnings.filterwarnings("ignore", message=".*GoogleGenerativeAI.*")
            return VertexAI(**options)

    # --- request handling (server threads) ---------------------------------------------------
    def _record(self, request: ReceivedRequest) -> Reply | None:
        with self._lock:
            self._requests.append(request)
            if self._replies and request.api_method in {"generateContent",
                                                        "streamGenerateContent"}:
                return self._replies.popleft()
        return None

    def _default_reply(self, request: ReceivedRequest) -> Reply:
        prompt = request.prompt_text
        return Reply(text=f"Echo: {prompt}", usage=None)

    def _usage(self, request: ReceivedRequest, reply: Reply, text: str) -> dict[str, int]:
        if reply.usage is not None:
            return reply.usage.to_json()
        prompt_tokens = sum(_word_count(t) for t in request.texts)
        if request.system_instruction:
            prompt_tokens += _word_count(request.system_instruction)
        out_tokens = _word_count(text) + sum(
            1 + len(call.args) for call in reply.function_calls
        )
        return Usage(prompt=prompt_tokens, candidates=out_tokens).to_json()

    def _responses(self, request: ReceivedRequest, reply: Reply) -> list[dict[str, Any]]:
        """The response objects of one reply: one for unary calls, ``stream_chunks`` for streams."""
        text = reply.text if reply.text is not None else (
            "" if reply.function_calls else self._default_reply(request).text or ""
        )
        model_version = reply.model_version or self._model_version or request.model or "gemini"
        pieces = _split(text, reply.stream_chunks) if request.stream else [text]
        responses: list[dict[str, Any]] = []
        for index, piece in enumerate(pieces):
            last = index == len(pieces) - 1
            parts: list[dict[str, Any]] = [{"text": piece}] if piece else []
            if last:
                parts.extend(
                    {"functionCall": {"name": call.name, "args": dict(call.args)}}
                    for call in reply.function_calls
                )
            candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts},
                                         "index": 0}
            response: dict[str, Any] = {"candidates": [candidate], "modelVersion": model_version}
            if reply.response_id:
                response["responseId"] = reply.response_id
            if last:
                candidate["finishReason"] = reply.finish_reason
                response["usageMetadata"] = self._usage(request, reply, text)
            responses.append(response)
        return responses


class _Server(ThreadingHTTPServer):
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


def error_body(status: int, message: str | None = None) -> dict[str, Any]:
    """Google's JSON error payload for an HTTP status."""
    name = _STATUS_NAMES.get(status, "UNKNOWN")
    return {"error": {"code": status, "message": message or f"emulated {name}", "status": name}}


def _make_handler(emulator: GeminiEmulator) -> type[BaseHTTPRequestHandler]:
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
            split = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body: Any = json.loads(raw.decode("utf-8")) if raw else None
            except (UnicodeDecodeError, json.JSONDecodeError):
                body = raw.decode("utf-8", errors="replace")
            match = _PATH_RE.match(split.path)
            request = ReceivedRequest(
                method=self.command,
                path=split.path,
                query={k: tuple(v) for k, v in parse_qs(split.query).items()},
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
                model=match["model"] if match else None,
                api_method=match["method"] if match else None,
                received_at=time.time(),
            )
            reply = emulator._record(request)
            if request.api_method not in {"generateContent", "streamGenerateContent"}:
                self._send_json(404, error_body(404, f"no emulated endpoint {split.path}"))
                return
            if self.command != "POST":
                self._send_json(405, error_body(400, "use POST"))
                return
            if reply is None:
                reply = emulator._default_reply(request)
            if reply.delay_seconds > 0:
                time.sleep(reply.delay_seconds)
            if reply.status != 200:
                self._send_json(reply.status, error_body(reply.status, reply.error_message))
                return
            responses = emulator._responses(request, reply)
            try:
                if request.stream:
                    self._send_stream(responses, reply.chunk_delay_seconds)
                else:
                    self._send_json(200, responses[0])
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

        def _send_stream(self, responses: list[dict[str, Any]], chunk_delay: float) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for index, response in enumerate(responses):
                if index and chunk_delay > 0:
                    time.sleep(chunk_delay)
                prefix = "[" if index == 0 else ",\r\n"
                self._chunk((prefix + json.dumps(response, ensure_ascii=False)).encode("utf-8"))
            self._chunk(b"]")
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

        def _chunk(self, data: bytes) -> None:
            self.wfile.write(f"{len(data):X}\r\n".encode("ascii") + data + b"\r\n")
            self.wfile.flush()

    return _Handler
