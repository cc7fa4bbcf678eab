"""Pure conversion: OTLP/HTTP request bodies -> OpenTelemetry SDK ``ReadableSpan``s.

The receiver hands what senders export to the same ``MlflowSpanExporter`` an app process uses,
so the spans must look like the SDK's own. The rules:

- Bodies: ``application/x-protobuf`` is an ``ExportTraceServiceRequest``; ``application/json``
  is its OTLP/JSON mapping (lowerCamelCase keys, the proto3 JSON names also accepted; trace and
  span ids as HEX strings, not base64; enums as integers or names; 64-bit integers as strings or
  numbers; unknown fields ignored, as the OTLP spec asks of receivers). A body that does not
  parse is a ``BadRequest`` (the receiver's 400, with the reason).
- A span is REJECTED (counted in ``partial_success.rejected_spans``, never written) when its
  trace id is not 16 bytes or is all zeros, its span id not 8 bytes or all zeros, or its parent
  span id neither empty nor 8 bytes. The others are accepted.
- Parent: ``parent_span_id`` empty is a root. The parent's ``is_remote`` comes from the span's
  ``flags`` (bits 8-9, ``SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK`` / ``..._IS_REMOTE_MASK``, set
  by the SDK's OTLP encoder); senders that do not set bit 8 give a local parent.
- Attribute values: strings, booleans, integers, doubles and arrays of one such type become the
  SDK's types (arrays as tuples); bytes become base64 text; key-value lists and mixed or nested
  arrays become compact JSON text (SDK attributes cannot hold them); an empty value is dropped.
- Times, kind, status (code and message), events, links, resource attributes and the
  instrumentation scope are copied as they are.

No I/O, no MLflow import; table-tested in ``tests/receive/test_convert.py``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.status import Status, StatusCode

PROTOBUF = "application/x-protobuf"
JSON = "application/json"

_HAS_IS_REMOTE = 0x100
_IS_REMOTE = 0x200
_ID_KEYS = ("traceId", "trace_id", "spanId", "span_id", "parentSpanId", "parent_span_id")
_KINDS = {
    trace_pb2.Span.SPAN_KIND_INTERNAL: SpanKind.INTERNAL,
    trace_pb2.Span.SPAN_KIND_SERVER: SpanKind.SERVER,
    trace_pb2.Span.SPAN_KIND_CLIENT: SpanKind.CLIENT,
    trace_pb2.Span.SPAN_KIND_PRODUCER: SpanKind.PRODUCER,
    trace_pb2.Span.SPAN_KIND_CONSUMER: SpanKind.CONSUMER,
}
_STATUS = {1: StatusCode.OK, 2: StatusCode.ERROR}


class BadRequest(ValueError):
    """The body is not an OTLP trace export request; the message is the reason (the 400)."""


@dataclass(frozen=True)
class Converted:
    """What one request holds: the accepted spans and why others were rejected."""

    spans: tuple[ReadableSpan, ...]
    rejected: int
    reason: str = ""


# --- bodies ------------------------------------------------------------------------------------


def media_type(content_type: str | None) -> str:
    """``application/json`` or ``application/x-protobuf`` (the default), parameters ignored."""
    base = (content_type or "").split(";", 1)[0].strip().lower()
    return JSON if base == JSON else PROTOBUF if base in ("", PROTOBUF) else base


def parse_request(body: bytes, kind: str) -> ExportTraceServiceRequest:
    """Decode a (decompressed) body of media type ``kind``; ``BadRequest`` when it is not one."""
    if kind == PROTOBUF:
        try:
            parsed: ExportTraceServiceRequest = ExportTraceServiceRequest.FromString(body)
            return parsed
        except (DecodeError, ValueError, RuntimeError) as exc:
            raise BadRequest(f"the body is not an ExportTraceServiceRequest: {exc}") from None
    if kind == JSON:
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadRequest(f"the body is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise BadRequest("the body is not an OTLP/JSON object")
        try:
            _hex_ids_to_base64(data)
            request = ExportTraceServiceRequest()
            json_format.ParseDict(data, request, ignore_unknown_fields=True)
            return request
        except (json_format.ParseError, ValueError, TypeError, AttributeError) as exc:
            raise BadRequest(f"the body is not an OTLP/JSON trace request: {exc}") from None
    raise BadRequest(f"unsupported content type {kind!r} (use {PROTOBUF} or {JSON})")


def _hex_ids_to_base64(data: Mapping[str, Any]) -> None:
    """OTLP/JSON writes ids as hex; protobuf's JSON mapping reads bytes as base64."""
    for resource_spans in _list(data, "resourceSpans", "resource_spans"):
        for scope_spans in _list(resource_spans, "scopeSpans", "scope_spans"):
            for span in _list(scope_spans, "spans"):
                _fix_ids(span)
                for link in _list(span, "links"):
                    _fix_ids(link)


def _list(obj: Any, *keys: str) -> list[Any]:
    if not isinstance(obj, dict):
        raise BadRequest("an OTLP/JSON element is not an object")
    for key in keys:
        value = obj.get(key)
        if value is not None:
            if not isinstance(value, list):
                raise BadRequest(f"{key!r} is not a list")
            return value
    return []


def _fix_ids(obj: Any) -> None:
    if not isinstance(obj, dict):
        raise BadRequest("an OTLP/JSON span or link is not an object")
    for key in _ID_KEYS:
        value = obj.get(key)
        if isinstance(value, str):
            try:
                obj[key] = base64.b64encode(bytes.fromhex(value)).decode("ascii")
            except ValueError:
                raise BadRequest(f"{key} {value[:40]!r} is not hex") from None


def encode_response(kind: str, rejected: int = 0, message: str = "") -> bytes:
    """The ``ExportTraceServiceResponse`` body; ``partial_success`` set when spans were rejected."""
    response = ExportTraceServiceResponse()
    if rejected or message:
        response.partial_success.rejected_spans = rejected
        response.partial_success.error_message = message
    if kind == JSON:
        return str(json_format.MessageToJson(response, indent=None)).encode("utf-8")
    return bytes(response.SerializeToString())


def encode_status(kind: str, code: int, message: str) -> bytes:
    """An error body: ``google.rpc.Status`` (gRPC ``code``, ``message``), as the OTLP spec asks."""
    from google.rpc.status_pb2 import Status as RpcStatus

    status = RpcStatus(code=code, message=message)
    if kind == JSON:
        return str(json_format.MessageToJson(status, indent=None)).encode("utf-8")
    return bytes(status.SerializeToString())


# --- spans -------------------------------------------------------------------------------------


def convert_request(request: ExportTraceServiceRequest) -> Converted:
    """Every span of ``request`` as a ``ReadableSpan``, the invalid ones counted as rejected."""
    spans: list[ReadableSpan] = []
    rejected = 0
    reason = ""
    for resource_spans in request.resource_spans:
        resource = Resource(_attributes(resource_spans.resource.attributes))
        for scope_spans in resource_spans.scope_spans:
            scope = InstrumentationScope(
                scope_spans.scope.name, scope_spans.scope.version or None,
                scope_spans.schema_url or resource_spans.schema_url or None,
            )
            for span in scope_spans.spans:
                problem = span_problem(span)
                if problem:
                    rejected += 1
                    reason = reason or problem
                    continue
                spans.append(to_readable_span(span, resource, scope))
    return Converted(tuple(spans), rejected, reason)


def span_problem(span: trace_pb2.Span) -> str:
    """Why ``span`` cannot be accepted, or ``""`` (see the module doc)."""
    if len(span.trace_id) != 16 or not any(span.trace_id):
        return "span with an invalid trace id (not 16 bytes, or all zeros)"
    if len(span.span_id) != 8 or not any(span.span_id):
        return "span with an invalid span id (not 8 bytes, or all zeros)"
    if span.parent_span_id and len(span.parent_span_id) != 8:
        return "span with an invalid parent span id (not 8 bytes)"
    return ""


def trace_ids(request: ExportTraceServiceRequest) -> Iterator[int]:
    """The trace id of every valid span, in request order (repeats included)."""
    for resource_spans in request.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                if not span_problem(span):
                    yield int.from_bytes(span.trace_id, "big")


def to_readable_span(
    span: trace_pb2.Span, resource: Resource, scope: InstrumentationScope | None = None
) -> ReadableSpan:
    trace_id = int.from_bytes(span.trace_id, "big")
    flags = TraceFlags((span.flags & 0xFF) or TraceFlags.SAMPLED)
    context = SpanContext(trace_id, int.from_bytes(span.span_id, "big"), is_remote=False,
                          trace_flags=flags)
    parent = None
    if span.parent_span_id:
        remote = bool(span.flags & _HAS_IS_REMOTE and span.flags & _IS_REMOTE)
        parent = SpanContext(trace_id, int.from_bytes(span.parent_span_id, "big"),
                             is_remote=remote, trace_flags=flags)
    code = _STATUS.get(span.status.code, StatusCode.UNSET)
    status = Status(code, span.status.message or None) if code is StatusCode.ERROR else Status(code)
    return ReadableSpan(
        name=span.name,
        context=context,
        parent=parent,
        resource=resource,
        attributes=_attributes(span.attributes),
        events=tuple(
            Event(event.name, _attributes(event.attributes), event.time_unix_nano)
            for event in span.events
        ),
        links=tuple(_link(link) for link in span.links if len(link.trace_id) == 16
                    and len(link.span_id) == 8),
        kind=_KINDS.get(span.kind, SpanKind.INTERNAL),
        status=status,
        start_time=span.start_time_unix_nano,
        end_time=span.end_time_unix_nano or span.start_time_unix_nano,
        instrumentation_scope=scope,
    )


def _link(link: trace_pb2.Span.Link) -> Link:
    context = SpanContext(
        int.from_bytes(link.trace_id, "big"), int.from_bytes(link.span_id, "big"),
        is_remote=bool(link.flags & _HAS_IS_REMOTE and link.flags & _IS_REMOTE),
    )
    return Link(context, _attributes(link.attributes))


def _attributes(pairs: Sequence[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        value = attribute_value(pair.value)
        if value is not None:
            out[pair.key] = value
    return out


def attribute_value(value: AnyValue) -> Any:
    """One OTLP ``AnyValue`` as an SDK attribute value (see the module doc), None when empty."""
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    if which == "array_value":
        items = [_plain(v) for v in value.array_value.values]
        kinds = {type(item) for item in items}
        if len(kinds) <= 1 and kinds <= {str, bool, int, float}:
            return tuple(items)
        return json.dumps(items, separators=(",", ":"), ensure_ascii=False, default=str)
    if which == "kvlist_value":
        return json.dumps(_plain(value), separators=(",", ":"), ensure_ascii=False, default=str)
    return getattr(value, which)


def _plain(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [_plain(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _plain(kv.value) for kv in value.kvlist_value.values}
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    return getattr(value, which)
