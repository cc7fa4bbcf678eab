"""A local Gemini REST emulator, so the real LangChain Gemini clients run offline.

Tests, the examples and ``otel-mlflow demo`` point the real client at it::

    from otel_mlflow.testing import GeminiEmulator

    with GeminiEmulator() as emulator:
        emulator.queue_text("Bonjour", usage=Usage(prompt=3, candidates=1, total=9, thoughts=5))
        llm = emulator.genai_chat_model("gemini-2.5-flash", vertexai=True)  # or chat_model()
        llm.invoke("Say hello in French")           # -> AIMessage("Bonjour")
        emulator.requests[-1].prompt_text           # what the client sent

It is a stdlib ``ThreadingHTTPServer`` on ``127.0.0.1`` (random port) serving what the clients
call (routes and stream formats in ``otel_mlflow.testing._emulator.server``):

- ``chat_model()`` / ``completion_model()``: ``ChatVertexAI`` / ``VertexAI`` over REST, Vertex
  paths, streams as a JSON array;
- ``genai_chat_model(vertexai=True)``: ``ChatGoogleGenerativeAI`` on Vertex AI
  (``/v1beta1/projects/{p}/locations/{l}/publishers/google/models/{m}:generateContent`` and
  ``:streamGenerateContent?alt=sse``), a static token, no ADC lookup;
- ``genai_chat_model(vertexai=False)``: the Gemini Developer API (``/v1beta/models/{m}:...``,
  API key in ``x-goog-api-key``).

Replies, in priority order: 1. the next queued :class:`Reply` (FIFO; each answers one request),
2. the default echo reply ``"Echo: <last user text>"`` with token counts derived from word counts.
Errors are answered with Google's error JSON (``{"error": {"code", "message", "status"}}``), which
the clients turn into the same exception classes the real service produces. A reply can also
carry thought summaries, grounding metadata, safety ratings, a blocked prompt
(``promptFeedback.blockReason``) or a stream that breaks midway (see :class:`Reply`).

Limits: no auth check beyond the API key's presence; no count-tokens, embeddings or file
upload endpoints (they answer 404 with Google error JSON); one reply per request, also for
streams; several candidates only for unary calls.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from otel_mlflow.testing._emulator import clients as _clients
from otel_mlflow.testing._emulator.responses import error_body, responses
from otel_mlflow.testing._emulator.script import (
    GENERATE_METHODS,
    FunctionCall,
    Grounding,
    ReceivedRequest,
    Reply,
    Usage,
)
from otel_mlflow.testing._emulator.server import Server, make_handler

if TYPE_CHECKING:
    from types import TracebackType

    from langchain_google_genai import ChatGoogleGenerativeAI
    from langchain_google_vertexai import ChatVertexAI, VertexAI

DEFAULT_PROJECT = _clients.DEFAULT_PROJECT
DEFAULT_LOCATION = _clients.DEFAULT_LOCATION
EMULATOR_API_KEY = _clients.EMULATOR_API_KEY

__all__ = [
    "DEFAULT_LOCATION", "DEFAULT_PROJECT", "EMULATOR_API_KEY", "FunctionCall", "GeminiEmulator",
    "Grounding", "ReceivedRequest", "Reply", "Usage", "error_body",
]


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
        self._server: Server | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self) -> GeminiEmulator:
        if self._server is not None:
            return self
        server = Server((self._host, self._port),
                        make_handler(self._record, self._default_reply, self._responses))
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
        """``http://127.0.0.1:PORT``: ``api_endpoint`` / ``base_url`` (plain HTTP)."""
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

    def queue_blocked(self, reason: str = "SAFETY", **options: Any) -> None:
        """Queue a blocked prompt: ``promptFeedback.blockReason`` and no candidates."""
        self.queue(Reply(block_reason=reason, **options))

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

    # --- clients ------------------------------------------------------------------------------
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
        return _clients.vertexai_chat_model(self.url, model, async_transport, kwargs)

    def completion_model(self, model: str = "gemini-2.0-flash", **kwargs: Any) -> VertexAI:
        """A real ``VertexAI`` text-completion model (``BaseLLM``) wired to this emulator (REST)."""
        return _clients.vertexai_completion_model(self.url, model, kwargs)

    def genai_chat_model(self, model: str = "gemini-2.5-flash", *, vertexai: bool = True,
                         **kwargs: Any) -> ChatGoogleGenerativeAI:
        """A real ``ChatGoogleGenerativeAI`` wired to this emulator through ``base_url``.

        ``vertexai=True``: the Vertex AI backend (project, location, a static token);
        ``False``: the Gemini Developer API (an API key). One model serves sync and async
        calls (google-genai's httpx clients). ``kwargs`` override the constructor arguments.
        """
        return _clients.genai_chat_model(self.url, model, vertexai, kwargs)

    # --- request handling (server threads) ---------------------------------------------------
    def _record(self, request: ReceivedRequest) -> Reply | None:
        with self._lock:
            self._requests.append(request)
            if self._replies and request.api_method in GENERATE_METHODS:
                return self._replies.popleft()
        return None

    def _default_reply(self, request: ReceivedRequest) -> Reply:
        return Reply(text=f"Echo: {request.prompt_text}", usage=None)

    def _responses(self, request: ReceivedRequest, reply: Reply) -> list[dict[str, Any]]:
        model_version = reply.model_version or self._model_version or request.model or "gemini"
        return responses(request, reply, self._default_reply(request).text or "", model_version)
