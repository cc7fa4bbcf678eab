"""OTLP request bodies -> SDK ``ReadableSpan``s: table tests over real SDK spans and the OTLP
exporter's own encoder (``encode_spans``), protobuf and OTLP/JSON, plus the rejection rules."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, StatusCode, TraceFlags
from opentelemetry.trace import set_span_in_context

from otel_mlflow._receive import convert as C


def sdk_spans() -> list[ReadableSpan]:
    """A real SDK trace: a SERVER span under a remote parent, a child with events and an error."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "worker"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("scope.test", "1.2")
    remote = SpanContext(0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, is_remote=True,
                         trace_flags=TraceFlags(1))
    with tracer.start_as_current_span("handle", kind=SpanKind.SERVER,
                                      context=set_span_in_context(NonRecordingSpan(remote)),
                                      attributes={"http.route": "/chat", "n": 3, "ok": True,
                                                  "ratio": 0.5, "tags": ["a", "b"]}):
        with tracer.start_as_current_span("llm") as child:
            child.add_event("retry", {"attempt": 1})
            child.set_status(StatusCode.ERROR, "boom")
    provider.shutdown()
    return list(memory.get_finished_spans())


def roundtrip(spans: list[ReadableSpan]) -> list[ReadableSpan]:
    body = encode_spans(spans).SerializeToString()
    return list(C.convert_request(C.parse_request(body, C.PROTOBUF)).spans)


def test_protobuf_round_trip_keeps_ids_parents_times_and_attributes() -> None:
    original = {s.name: s for s in sdk_spans()}
    got = {s.name: s for s in roundtrip(list(original.values()))}
    assert set(got) == {"handle", "llm"}
    for name, span in original.items():
        back = got[name]
        assert back.context.trace_id == span.context.trace_id
        assert back.context.span_id == span.context.span_id
        assert back.parent is not None and span.parent is not None
        assert back.parent.span_id == span.parent.span_id
        assert (back.start_time, back.end_time) == (span.start_time, span.end_time)
        assert back.kind == span.kind
        assert back.resource.attributes["service.name"] == "worker"
        assert back.instrumentation_scope is not None
        assert back.instrumentation_scope.name == "scope.test"
    assert dict(got["handle"].attributes or {}) == {
        "http.route": "/chat", "n": 3, "ok": True, "ratio": 0.5, "tags": ("a", "b")}
    assert got["llm"].status.status_code is StatusCode.ERROR
    assert got["llm"].status.description == "boom"
    assert [(e.name, dict(e.attributes or {})) for e in got["llm"].events] == [
        ("retry", {"attempt": 1})]


def test_the_remote_flag_of_a_parent_survives_the_wire() -> None:
    got = {s.name: s for s in roundtrip(sdk_spans())}
    assert got["handle"].parent is not None and got["handle"].parent.is_remote is True
    assert got["llm"].parent is not None and got["llm"].parent.is_remote is False


def _json_body(spans: list[ReadableSpan]) -> bytes:
    """The OTLP/JSON mapping: protobuf JSON with hex ids (what the OTLP spec prescribes)."""
    data = json_format.MessageToDict(encode_spans(spans), use_integers_for_enums=True)
    for rs in data["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for span in ss["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64decode(span[key]).hex()
    return json.dumps(data).encode()


def test_json_with_hex_ids_camel_case_and_integer_enums_matches_protobuf() -> None:
    spans = sdk_spans()
    body = _json_body(spans)
    assert b'"traceId": "0af7651916cd43dd8448eb211c80319c"' in body
    assert b'"kind": 2' in body  # SERVER as an integer
    from_json = C.convert_request(C.parse_request(body, C.JSON)).spans
    from_pb = roundtrip(spans)
    key = lambda s: s.context.span_id  # noqa: E731
    assert [(s.name, s.context.trace_id, s.parent.span_id if s.parent else None, s.kind,
             dict(s.attributes or {})) for s in sorted(from_json, key=key)] == [
        (s.name, s.context.trace_id, s.parent.span_id if s.parent else None, s.kind,
         dict(s.attributes or {})) for s in sorted(from_pb, key=key)]


def test_json_accepts_snake_case_names_string_int64_and_unknown_fields() -> None:
    body = json.dumps({"resource_spans": [{"scope_spans": [{"spans": [{
        "trace_id": "5b8efff798038103d269b633813fc60c", "span_id": "eee19b7ec3c1b174",
        "name": "op", "kind": "SPAN_KIND_CLIENT", "startTimeUnixNano": "1700000000000000000",
        "endTimeUnixNano": 1700000000500000000, "futureField": {"x": 1},
        "attributes": [{"key": "big", "value": {"intValue": "9007199254740993"}}],
    }]}]}]}).encode()
    (span,) = C.convert_request(C.parse_request(body, C.JSON)).spans
    assert span.context.trace_id == 0x5B8EFFF798038103D269B633813FC60C
    assert span.kind is SpanKind.CLIENT
    assert span.end_time - span.start_time == 500_000_000
    assert dict(span.attributes or {}) == {"big": 9007199254740993}
    assert span.parent is None


def _request_with(**span_fields: Any) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add()
    span.name = "s"
    span.trace_id = span_fields.pop("trace_id", b"\x01" * 16)
    span.span_id = span_fields.pop("span_id", b"\x02" * 8)
    for key, value in span_fields.items():
        setattr(span, key, value)
    return request


@pytest.mark.parametrize("fields, reason", [
    ({"trace_id": b"\x01" * 8}, "trace id"),
    ({"trace_id": b"\x00" * 16}, "trace id"),
    ({"trace_id": b""}, "trace id"),
    ({"span_id": b"\x00" * 8}, "span id"),
    ({"span_id": b"\x02" * 16}, "span id"),
    ({"parent_span_id": b"\x03" * 4}, "parent span id"),
])
def test_invalid_spans_are_rejected_with_a_reason(fields: dict[str, Any], reason: str) -> None:
    converted = C.convert_request(_request_with(**fields))
    assert converted.spans == () and converted.rejected == 1
    assert reason in converted.reason
    assert list(C.trace_ids(_request_with(**fields))) == []


def test_a_valid_span_beside_an_invalid_one_is_accepted() -> None:
    request = _request_with()
    bad = request.resource_spans[0].scope_spans[0].spans.add()
    bad.trace_id, bad.span_id = b"\x00" * 16, b"\x05" * 8
    converted = C.convert_request(request)
    assert (len(converted.spans), converted.rejected) == (1, 1)


def _any(**kwargs: Any) -> AnyValue:
    return AnyValue(**kwargs)


@pytest.mark.parametrize("value, expected", [
    (_any(string_value="x"), "x"),
    (_any(bool_value=False), False),
    (_any(int_value=-7), -7),
    (_any(double_value=1.5), 1.5),
    (_any(bytes_value=b"\x00\xff"), "AP8="),
    (_any(array_value=ArrayValue(values=[_any(int_value=1), _any(int_value=2)])), (1, 2)),
    (_any(array_value=ArrayValue(values=[_any(int_value=1), _any(string_value="a")])), '[1,"a"]'),
    (_any(kvlist_value=KeyValueList(values=[KeyValue(key="k", value=_any(string_value="v"))])),
     '{"k":"v"}'),
    (AnyValue(), None),
])
def test_attribute_values_become_sdk_attribute_types(value: AnyValue, expected: Any) -> None:
    assert C.attribute_value(value) == expected


@pytest.mark.parametrize("body, kind, reason", [
    (b"\xff\xff\xff", C.PROTOBUF, "ExportTraceServiceRequest"),
    (b"{not json", C.JSON, "not JSON"),
    (b"[1, 2]", C.JSON, "object"),
    (b'{"resourceSpans": {"a": 1}}', C.JSON, "not a list"),
    (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}', C.JSON, "hex"),
    (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"kind": []}]}]}]}', C.JSON, "OTLP/JSON"),
    (b"", "text/plain", "unsupported content type"),
])
def test_bad_bodies_are_bad_requests_with_the_reason(body: bytes, kind: str, reason: str) -> None:
    with pytest.raises(C.BadRequest, match=reason):
        C.parse_request(body, kind)


@pytest.mark.parametrize("header, expected", [
    (None, C.PROTOBUF), ("application/x-protobuf", C.PROTOBUF),
    ("application/json; charset=utf-8", C.JSON), ("Application/JSON", C.JSON),
    ("text/plain", "text/plain"),
])
def test_media_type_ignores_parameters_and_case(header: str | None, expected: str) -> None:
    assert C.media_type(header) == expected


def test_responses_carry_partial_success_only_when_spans_were_rejected() -> None:
    assert C.encode_response(C.PROTOBUF) == b""
    back = ExportTraceServiceResponse.FromString(C.encode_response(C.PROTOBUF, 2, "bad id"))
    assert (back.partial_success.rejected_spans, back.partial_success.error_message) == (2, "bad id")
    as_json = json.loads(C.encode_response(C.JSON, 3, "why"))
    assert as_json == {"partialSuccess": {"rejectedSpans": "3", "errorMessage": "why"}}
    assert json.loads(C.encode_status(C.JSON, 3, "no")) == {"code": 3, "message": "no"}
