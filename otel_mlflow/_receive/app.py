"""The OTLP/HTTP receiver's ASGI app (starlette) and ``serve()`` (uvicorn): ``otel-mlflow receive``.

Usage::

    otel-mlflow receive [--host 127.0.0.1] [--port 4318] [--token T] [--spool-dir DIR]
    # senders: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://HOST:4318/v1/traces
    #          OTEL_EXPORTER_OTLP_HEADERS="Authorization=Bearer T"

Routes:

- ``POST /v1/traces``: ``application/x-protobuf`` or ``application/json`` (OTLP/JSON), plain
  or ``Content-Encoding: gzip``. Answers, in the order they are checked (OTLP/HTTP spec):

  1. 401 when a token is configured and ``Authorization: Bearer <token>`` is missing or wrong
     (constant-time compare);
  2. 503 + ``Retry-After`` while the receiver drains (SIGTERM);
  3. 415 for another content type, 400 for another content encoding;
  4. 413 when the body is larger than ``max_body_bytes``, compressed (``Content-Length`` or what
     was read) or decompressed (checked while inflating: a gzip bomb stops at the limit);
  5. 400 when the body does not decode, with the reason;
  6. 429 + ``Retry-After`` when the span log on disk holds ``max_backlog_bytes`` or more;
  7. 503 + ``Retry-After`` when the spans cannot be written to disk;
  8. 200 once the spans are fsynced, with ``partial_success`` (rejected_spans + error_message)
     when some spans were invalid.

  Error bodies are a ``google.rpc.Status``. Every answer is in the request's content type
  (protobuf unless it was JSON).
- ``GET /healthz``: 200 ``ok`` (503 ``draining`` during the drain); no token needed.
- ``GET /metrics``: Prometheus text (``otel_mlflow._receive.metrics``); the token applies.

Configuration (argument > environment variable > default, resolved once in ``serve``):
``host`` ``OTEL_MLFLOW_RECEIVER_HOST`` (127.0.0.1), ``port`` ``OTEL_MLFLOW_RECEIVER_PORT``
(4318), ``token`` ``OTEL_MLFLOW_RECEIVER_TOKEN`` (none), ``max_body_bytes``
``OTEL_MLFLOW_RECEIVER_MAX_BODY_BYTES`` (20 MiB), ``max_backlog_bytes``
``OTEL_MLFLOW_RECEIVER_MAX_BACKLOG_BYTES`` (1 GiB), the spool directory and every exporter
setting as for ``MlflowSpanExporter``. Binding a non-loopback address without a token logs a
warning.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import logging
import signal
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from otel_mlflow._common import faults as _faults
from otel_mlflow._common import settings as _config
from otel_mlflow._receive import metrics as _metrics
from otel_mlflow._receive.convert import (
    JSON,
    PROTOBUF,
    BadRequest,
    encode_response,
    encode_status,
    media_type,
    parse_request,
    span_problem,
)
from otel_mlflow._receive.service import Receiver

_logger = logging.getLogger(__name__)

TRACES_PATH = "/v1/traces"
RETRY_AFTER_SECONDS = 5
# google.rpc.Code values for the Status bodies.
_RPC_CODES = {400: 3, 401: 16, 413: 8, 415: 3, 429: 8, 503: 14}


@dataclass(frozen=True)
class Limits:
    token: str | None
    max_body_bytes: int


class TooLarge(Exception):
    pass


def build_app(receiver: Receiver, limits: Limits, *, close_timeout: float = 30.0) -> Starlette:
    """The ASGI app; closing it (lifespan shutdown) drains ``receiver``."""
    expected = f"Bearer {limits.token}".encode() if limits.token else None

    def authorized(request: Request) -> bool:
        if expected is None:
            return True
        given = request.headers.get("authorization", "").encode("utf-8", "replace")
        return hmac.compare_digest(given, expected)

    def answer(kind: str, status: int, body: bytes, *, retry: bool = False) -> Response:
        receiver.counters.answered(status)
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if retry else None
        return Response(body, status_code=status, media_type=kind, headers=headers)

    def error(kind: str, status: int, message: str, *, retry: bool = False) -> Response:
        return answer(kind, status, encode_status(kind, _RPC_CODES[status], message), retry=retry)

    async def traces(request: Request) -> Response:
        kind = media_type(request.headers.get("content-type"))
        reply_kind = JSON if kind == JSON else PROTOBUF
        if not authorized(request):
            return error(reply_kind, 401, "missing or wrong bearer token")
        if receiver.draining:
            return error(reply_kind, 503, "the receiver is shutting down", retry=True)
        if kind not in (PROTOBUF, JSON):
            return error(reply_kind, 415, f"unsupported content type {kind!r}")
        encoding = request.headers.get("content-encoding", "").strip().lower()
        if encoding not in ("", "identity", "gzip"):
            return error(reply_kind, 400, f"unsupported content encoding {encoding!r}")
        try:
            declared = int(request.headers.get("content-length") or 0)
        except ValueError:
            return error(reply_kind, 400, "bad Content-Length")
        if declared > limits.max_body_bytes:
            return error(reply_kind, 413, f"body over {limits.max_body_bytes} bytes")
        try:
            body = await _read_capped(request, limits.max_body_bytes)
            if encoding == "gzip":
                body = inflate(body, limits.max_body_bytes)
        except TooLarge as exc:
            return error(reply_kind, 413, str(exc))
        except BadRequest as exc:
            return error(reply_kind, 400, str(exc))
        except ClientDisconnect:
            return answer(reply_kind, 400, b"")
        if receiver.backlog_full():
            return error(reply_kind, 429, "backlog on disk is full; retry later", retry=True)
        try:
            rejected, reason = await run_in_threadpool(_accept, receiver, body, kind)
        except BadRequest as exc:
            return error(reply_kind, 400, str(exc))
        except OSError as exc:
            _faults.report("receiver.store", exc)
            return error(reply_kind, 503, "spans could not be stored; retry later", retry=True)
        return answer(reply_kind, 200, encode_response(reply_kind, rejected, reason))

    async def healthz(request: Request) -> Response:
        if receiver.draining:
            return PlainTextResponse("draining\n", status_code=503)
        return PlainTextResponse("ok\n")

    async def metrics(request: Request) -> Response:
        if not authorized(request):
            return PlainTextResponse("missing or wrong bearer token\n", status_code=401)
        _, codes = receiver.counters.snapshot()
        text = _metrics.render(receiver.gauges(), codes)
        return Response(text, media_type=_metrics.CONTENT_TYPE)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await run_in_threadpool(receiver.close, close_timeout)

    return Starlette(
        routes=[
            Route(TRACES_PATH, traces, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
        ],
        lifespan=lifespan,
    )


async def _read_capped(request: Request, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"body over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def inflate(body: bytes, limit: int) -> bytes:
    """gunzip ``body``, never producing more than ``limit`` bytes (``TooLarge`` beyond)."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise BadRequest(f"the body is not gzip: {exc}") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise TooLarge(f"decompressed body over {limit} bytes")
    if not inflater.eof:
        raise BadRequest("the gzip body is truncated")
    return out


def _accept(receiver: Receiver, body: bytes, kind: str) -> tuple[int, str]:
    """Decode, count, store (fsynced); the rejected count and reason. In a worker thread."""
    request = parse_request(body, kind)
    ids: list[int] = []
    accepted = rejected = 0
    reason = ""
    for resource_spans in request.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                problem = span_problem(span)
                if problem:
                    rejected += 1
                    reason = reason or problem
                else:
                    accepted += 1
                    ids.append(int.from_bytes(span.trace_id, "big"))
    if rejected:
        receiver.counters.add("spans_rejected_total", rejected)
    if accepted:
        # The log keeps protobuf; invalid spans are rejected again, the same way, when fed.
        payload = body if kind == PROTOBUF else request.SerializeToString()
        receiver.store(ids, payload, accepted)
    return rejected, reason


def is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve(
    host: str | None = None,
    port: int | None = None,
    *,
    token: str | None = None,
    spool_dir: str | None = None,
    tracking_uri: str | None = None,
    experiment_name: str | None = None,
    max_body_bytes: int | None = None,
    close_timeout: float = 30.0,
    **receiver_kwargs: Any,
) -> int:
    """Run the receiver until SIGINT/SIGTERM (uvicorn's handlers), then drain; exit code 0."""
    import uvicorn

    host = host or _config.env_str(_config.RECEIVER_HOST) or _config.DEFAULT_RECEIVER_HOST
    port = int(port if port is not None else _config.env_int(
        _config.RECEIVER_PORT, _config.DEFAULT_RECEIVER_PORT))
    token = token or _config.env_str(_config.RECEIVER_TOKEN)
    limits = Limits(token, int(max_body_bytes if max_body_bytes is not None else _config.env_int(
        _config.RECEIVER_MAX_BODY_BYTES, _config.DEFAULT_RECEIVER_MAX_BODY_BYTES)))
    if not token and not is_loopback(host):
        _logger.warning(
            "otel_mlflow receiver: listening on %s without a token: anyone who reaches this "
            "address can write runs (set --token or OTEL_MLFLOW_RECEIVER_TOKEN)", host,
        )
    receiver = Receiver(tracking_uri, experiment_name, spool_dir=spool_dir, **receiver_kwargs)
    app = build_app(receiver, limits, close_timeout=close_timeout)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on",
                            access_log=False, timeout_graceful_shutdown=10)
    server = uvicorn.Server(config)
    _logger.warning("otel_mlflow receiver: OTLP/HTTP on http://%s:%d%s, span log %s", host, port,
                    TRACES_PATH, receiver.log.directory)
    # uvicorn restores the handlers it found and raises the captured signal again once it
    # has shut down; a no-op handler here makes that a clean return (exit code 0 after a drain).
    previous = {sig: signal.signal(sig, _ignore_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run()
    finally:
        receiver.close(close_timeout)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0 if server.started else 1


def _ignore_signal(signum: int, frame: Any) -> None:
    _logger.info("otel_mlflow receiver: signal %d after the drain", signum)
