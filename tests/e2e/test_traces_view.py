"""MLflow's Traces view: ``log_trace`` on a real ``mlflow server`` and on the embedded sqlite store.

The OTLP bytes come from real OTel SDK spans carrying the attributes otel_mlflow's tracer writes
(built here directly so this file tests the Traces-view link on its own); the end-to-end test at
the bottom drives a real LangChain chain through ``OtelTracer`` and ``MlflowSpanExporter`` and
compares the Traces view with the run's ``span_tree.json``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import mlflow
import pytest
from mlflow import MlflowClient
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode, set_span_in_context

import otel_mlflow
from otel_mlflow._common import semconv as A
from otel_mlflow._export.exporter import MlflowSpanExporter
from otel_mlflow._record.traces_payload import (
    MLFLOW_CHAT_USAGE,
    MLFLOW_SPAN_INPUTS,
    MLFLOW_SPAN_TYPE,
    ORIGINAL_PARENT_SPAN_ID,
    prepare_for_mlflow,
)
from otel_mlflow._sink.traces import log_trace
from otel_mlflow._tracing.handler import OtelTracer
from tests._support.fake_models import REASONING_TOKENS, FakeChatModel
from tests.e2e.test_basic_auth import auth_server  # noqa: F401 - the basic-auth server fixture

QUESTION = "東京の天気は？"


def make_trace(*, error: bool = False) -> tuple[list[ReadableSpan], bytes]:
    """A LangChain-shaped trace: workflow root > chat + tool + retrieval, as the tracer emits it."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "traces-view-test"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("test")
    root = tracer.start_span(
        "invoke_workflow RunnableSequence",
        attributes={
            A.ROOT: True,
            A.GEN_AI_OPERATION_NAME: A.OP_INVOKE_WORKFLOW,
            A.LC_RUN_TYPE: A.RUN_CHAIN,
            A.INPUT: json.dumps({"question": QUESTION}, ensure_ascii=False),
            A.OUTPUT: json.dumps("晴れ", ensure_ascii=False),
        },
    )
    ctx = set_span_in_context(root)
    chat = tracer.start_span(
        "chat gemini-2.5-flash",
        context=ctx,
        attributes={
            A.GEN_AI_OPERATION_NAME: A.OP_CHAT,
            A.LC_RUN_TYPE: A.RUN_CHAT_MODEL,
            A.GEN_AI_PROVIDER_NAME: A.PROVIDER_GCP_VERTEX_AI,
            A.GEN_AI_REQUEST_MODEL: "gemini-2.5-flash",
            A.GEN_AI_USAGE_INPUT_TOKENS: 11,
            A.GEN_AI_USAGE_OUTPUT_TOKENS: 5,
            A.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: 2,
            A.USAGE_TOTAL_TOKENS: 23,  # Gemini's total includes 7 thinking tokens
            A.GEN_AI_INPUT_MESSAGES: json.dumps(
                [{"role": "user", "parts": [{"type": "text", "content": QUESTION}]}],
                ensure_ascii=False,
            ),
            A.GEN_AI_OUTPUT_MESSAGES: json.dumps(
                [{"role": "assistant", "parts": [{"type": "text", "content": "晴れ"}],
                  "finish_reason": "stop"}],
                ensure_ascii=False,
            ),
        },
    )
    if error:
        chat.set_status(Status(StatusCode.ERROR, "boom"))
        chat.set_attribute(A.ERROR_TYPE, "RuntimeError")
    chat.end()
    tool = tracer.start_span(
        "execute_tool get_weather",
        context=ctx,
        attributes={
            A.GEN_AI_OPERATION_NAME: A.OP_EXECUTE_TOOL,
            A.LC_RUN_TYPE: A.RUN_TOOL,
            A.GEN_AI_TOOL_NAME: "get_weather",
            A.INPUT: json.dumps({"city": "東京"}, ensure_ascii=False),
            A.OUTPUT: json.dumps("sunny"),
        },
    )
    tool.end()
    retrieval = tracer.start_span(
        "retrieval",
        context=ctx,
        attributes={A.GEN_AI_OPERATION_NAME: A.OP_RETRIEVAL, A.LC_RUN_TYPE: A.RUN_RETRIEVER},
    )
    retrieval.end()
    if error:
        root.set_status(Status(StatusCode.ERROR, "boom"))
    root.end()
    spans = list(memory.get_finished_spans())
    provider.shutdown()
    return spans, encode_spans(spans).SerializeToString()


def span_ids(spans: Sequence[ReadableSpan]) -> set[str]:
    return {format(s.context.span_id, "016x") for s in spans}


def trace_hex(spans: Sequence[ReadableSpan]) -> str:
    return format(spans[0].context.trace_id, "032x")


# --- pure mapping -----------------------------------------------------------------------------


def _attrs_by_name(request: ExportTraceServiceRequest) -> dict[str, dict[str, object]]:
    from google.protobuf.json_format import MessageToDict

    out: dict[str, dict[str, object]] = {}
    for rs in request.resource_spans:
        for ss in rs.scope_spans:
            for span in ss.spans:
                out[span.name] = {
                    kv.key: MessageToDict(kv.value) for kv in span.attributes
                }
    return out


def test_mapping_adds_span_types_inputs_and_reported_usage() -> None:
    spans, otlp = make_trace()
    payload = prepare_for_mlflow(otlp)
    assert payload.otel_trace_ids == (trace_hex(spans),)
    assert payload.mlflow_trace_ids == ("tr-" + trace_hex(spans),)
    assert payload.span_count == 4
    attrs = _attrs_by_name(payload.request)
    assert attrs["invoke_workflow RunnableSequence"][MLFLOW_SPAN_TYPE] == {"stringValue": "CHAIN"}
    assert attrs["chat gemini-2.5-flash"][MLFLOW_SPAN_TYPE] == {"stringValue": "CHAT_MODEL"}
    assert attrs["execute_tool get_weather"][MLFLOW_SPAN_TYPE] == {"stringValue": "TOOL"}
    assert attrs["retrieval"][MLFLOW_SPAN_TYPE] == {"stringValue": "RETRIEVER"}
    root_inputs = attrs["invoke_workflow RunnableSequence"][MLFLOW_SPAN_INPUTS]
    assert root_inputs == {
        "kvlistValue": {"values": [{"key": "question", "value": {"stringValue": QUESTION}}]}
    }
    usage = attrs["chat gemini-2.5-flash"][MLFLOW_CHAT_USAGE]["kvlistValue"]["values"]
    assert {kv["key"]: int(kv["value"]["intValue"]) for kv in usage} == {
        "input_tokens": 11,
        "output_tokens": 5,
        "total_tokens": 23,
        "cache_read_input_tokens": 2,
    }
    # No content attribute, no invented inputs.
    assert MLFLOW_SPAN_INPUTS not in attrs["retrieval"]


def test_mapping_keeps_ids_and_reroots_a_span_whose_parent_is_elsewhere() -> None:
    spans, _ = make_trace()
    children = [s for s in spans if s.parent is not None]
    payload = prepare_for_mlflow(encode_spans(children).SerializeToString())
    got = [s for rs in payload.request.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert {s.span_id.hex() for s in got} == span_ids(children)
    for span in got:
        assert span.parent_span_id == b""
        kept = {kv.key: kv.value.string_value for kv in span.attributes}
        assert kept[ORIGINAL_PARENT_SPAN_ID] == format(children[0].parent.span_id, "016x")


@pytest.mark.parametrize("bad", [b"\x00\x01garbage\xff", ExportTraceServiceRequest().SerializeToString() + b"\x0a\x00"])
def test_mapping_rejects_payloads_without_spans(bad: bytes) -> None:
    with pytest.raises(ValueError):
        prepare_for_mlflow(bad)


def _one_span_payload(attributes: dict[str, object]) -> dict[str, object]:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    provider.get_tracer("t").start_span("s", attributes=attributes).end()  # type: ignore[arg-type]
    payload = prepare_for_mlflow(encode_spans(memory.get_finished_spans()).SerializeToString())
    provider.shutdown()
    return _attrs_by_name(payload.request)["s"]


@pytest.mark.parametrize(
    ("input_json", "expected"),
    [
        ('{"a": null, "b": [1, 2.5, true]}', {"kvlistValue": {"values": [
            {"key": "a"},  # an unset AnyValue: OTLP's null, which MLflow decodes to None
            {"key": "b", "value": {"arrayValue": {"values": [
                {"intValue": "1"}, {"doubleValue": 2.5}, {"boolValue": True}]}}},
        ]}}),
        ("not json at all", {"stringValue": "not json at all"}),
        ('"\\ud800 lone"', {"stringValue": "\ufffd lone"}),  # a lone surrogate cannot be UTF-8
        (str(2**70), {"stringValue": str(2**70)}),  # beyond int64: kept exact as text
        ('{"otel_mlflow.truncated": true, "original_chars": 99}', {"kvlistValue": {"values": [
            {"key": "otel_mlflow.truncated", "value": {"boolValue": True}},
            {"key": "original_chars", "value": {"intValue": "99"}},
        ]}}),
    ],
)
def test_mapping_input_values(input_json: str, expected: dict[str, object]) -> None:
    attrs = _one_span_payload({A.LC_RUN_TYPE: A.RUN_CHAIN, A.INPUT: input_json})
    assert attrs[MLFLOW_SPAN_INPUTS] == expected
    assert attrs[MLFLOW_SPAN_TYPE] == {"stringValue": "CHAIN"}


def test_mapping_deep_nesting_is_capped_not_recursed_forever() -> None:
    deep: object = "leaf"
    for _ in range(500):
        deep = [deep]
    attrs = _one_span_payload({A.INPUT: json.dumps(deep)})
    node = attrs[MLFLOW_SPAN_INPUTS]
    depth = 0
    while isinstance(node, dict) and "arrayValue" in node:
        node = node["arrayValue"]["values"][0]
        depth += 1
    assert 60 <= depth <= 70
    assert "leaf" in node["stringValue"]  # the rest kept as JSON text


def test_mapping_never_overrides_mlflow_keys_already_present() -> None:
    attrs = _one_span_payload(
        {A.GEN_AI_OPERATION_NAME: A.OP_CHAT, MLFLOW_SPAN_TYPE: "LLM", A.GEN_AI_USAGE_INPUT_TOKENS: 1}
    )
    assert attrs[MLFLOW_SPAN_TYPE] == {"stringValue": "LLM"}
    assert attrs[MLFLOW_CHAT_USAGE] == {
        "kvlistValue": {"values": [{"key": "input_tokens", "value": {"intValue": "1"}}]}
    }


# --- real stores ------------------------------------------------------------------------------


@pytest.fixture(params=["server", "embedded"])
def client(request: pytest.FixtureRequest) -> Iterator[MlflowClient]:
    if request.param == "server":
        yield MlflowClient(request.getfixturevalue("mlflow_server").url)
    else:
        yield MlflowClient(request.getfixturevalue("embedded_tracking_uri"))


def _new_run(client: MlflowClient, name: str) -> tuple[str, str]:
    experiment_id = client.create_experiment(f"{name}-{mlflow.utils.time.get_current_time_millis()}")
    run = client.create_run(experiment_id, run_name=name)
    return experiment_id, run.info.run_id


def test_trace_is_in_the_traces_view_linked_to_the_run(client: MlflowClient) -> None:
    spans, otlp = make_trace()
    experiment_id, run_id = _new_run(client, "linked")
    log_trace(client, experiment_id, run_id, otlp)
    log_trace(client, experiment_id, run_id, otlp)  # a replay must not duplicate anything

    found = client.search_traces(locations=[experiment_id], run_id=run_id)
    assert [t.info.trace_id for t in found] == ["tr-" + trace_hex(spans)]
    assert len(client.search_traces(locations=[experiment_id])) == 1

    trace = client.get_trace(found[0].info.trace_id)
    assert trace.info.state.value == "OK"
    assert QUESTION in (trace.info.request_preview or "")
    assert "晴れ" in (trace.info.response_preview or "")
    assert trace.info.token_usage == {"input_tokens": 11, "output_tokens": 5, "total_tokens": 23,
                                      "cache_read_input_tokens": 2}
    by_name = {s.name: s for s in trace.data.spans}
    assert {s.span_id for s in trace.data.spans} == span_ids(spans)
    assert len(trace.data.spans) == 4
    assert by_name["invoke_workflow RunnableSequence"].span_type == "CHAIN"
    assert by_name["invoke_workflow RunnableSequence"].inputs == {"question": QUESTION}
    chat = by_name["chat gemini-2.5-flash"]
    assert chat.span_type == "CHAT_MODEL"
    assert chat.inputs == {"messages": [{"role": "user", "content": QUESTION}]}
    assert chat.outputs == {"choices": [{"index": 0, "finish_reason": "stop",
                                         "message": {"role": "assistant", "content": "晴れ"}}]}
    assert chat.parent_id == by_name["invoke_workflow RunnableSequence"].span_id
    assert by_name["execute_tool get_weather"].span_type == "TOOL"
    assert by_name["execute_tool get_weather"].inputs == {"city": "東京"}
    assert by_name["retrieval"].span_type == "RETRIEVER"
    # The original attributes stay, so nothing of the OTel span is lost in MLflow's copy.
    assert chat.attributes[A.GEN_AI_PROVIDER_NAME] == A.PROVIDER_GCP_VERTEX_AI


def test_first_attempt_links_in_the_same_request(client: MlflowClient) -> None:
    # link_explicitly=False: a server links on the x-mlflow-run-id header of POST /v1/traces;
    # a local store has no header and must still link explicitly.
    spans, otlp = make_trace()
    experiment_id, run_id = _new_run(client, "header-link")
    log_trace(client, experiment_id, run_id, otlp, link_explicitly=False)
    found = client.search_traces(locations=[experiment_id], run_id=run_id)
    assert [t.info.trace_id for t in found] == ["tr-" + trace_hex(spans)]
    other_run = client.create_run(experiment_id, run_name="other").info.run_id
    assert client.search_traces(locations=[experiment_id], run_id=other_run) == []


def test_error_trace_is_marked_error(client: MlflowClient) -> None:
    spans, otlp = make_trace(error=True)
    experiment_id, run_id = _new_run(client, "error")
    log_trace(client, experiment_id, run_id, otlp)
    (found,) = client.search_traces(locations=[experiment_id], run_id=run_id)
    assert found.info.state.value == "ERROR"
    chat = next(s for s in client.get_trace(found.info.trace_id).data.spans if s.name.startswith("chat"))
    assert chat.status.status_code.value == "ERROR"


def test_empty_payload_is_a_no_op(client: MlflowClient) -> None:
    experiment_id, run_id = _new_run(client, "empty")
    log_trace(client, experiment_id, run_id, b"")
    assert client.search_traces(locations=[experiment_id]) == []


def test_unknown_experiment_raises_so_the_caller_retries(client: MlflowClient) -> None:
    _, otlp = make_trace()
    _, run_id = _new_run(client, "noexp")
    with pytest.raises(Exception):  # noqa: B017 - MlflowException or RestException, both retried
        log_trace(client, "987654321", run_id, otlp)


def test_unreachable_server_raises_without_retrying_inside() -> None:
    from tests._support.mlflow_server import free_port

    _, otlp = make_trace()
    client = MlflowClient(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(Exception):  # noqa: B017 - connection errors surface as MlflowException
        log_trace(client, "1", "0" * 32, otlp)


# --- end to end: real chain -> OtelTracer -> MlflowSpanExporter -> run + Traces view ------------


def test_real_chain_trace_matches_the_runs_span_tree(client: MlflowClient, tmp_path: Path) -> None:
    experiment_name = f"e2e-{mlflow.utils.time.get_current_time_millis()}"
    provider = TracerProvider()
    provider.add_span_processor(
        SimpleSpanProcessor(
            MlflowSpanExporter(client.tracking_uri, experiment_name, grace_seconds=0.05,
                               spool_dir=str(tmp_path / "spool"))
        )
    )
    chain = (
        ChatPromptTemplate.from_messages([("system", "Be brief."), ("human", "{question}")])
        | FakeChatModel(responses=["晴れです"])
        | StrOutputParser()
    )
    try:
        assert chain.invoke({"question": QUESTION}, config={"callbacks": [OtelTracer(provider)]}) == "晴れです"
        assert otel_mlflow.flush(60)
    finally:
        provider.shutdown()

    experiment = client.get_experiment_by_name(experiment_name)
    (run,) = client.search_runs([experiment.experiment_id])
    tree = json.loads(Path(client.download_artifacts(run.info.run_id, "span_tree.json")).read_text())

    def ids(nodes: list[dict[str, object]]) -> set[str]:
        return {str(n["span_id"]) for n in nodes} | {
            i for n in nodes for i in ids(n["children"])  # type: ignore[arg-type]
        }

    (found,) = client.search_traces(locations=[experiment.experiment_id], run_id=run.info.run_id)
    assert found.info.trace_id == "tr-" + run.data.tags["otel.trace_id"]
    trace = client.get_trace(found.info.trace_id)
    assert {s.span_id for s in trace.data.spans} == ids(tree["spans"])
    assert QUESTION in (trace.info.request_preview or "")
    assert "晴れです" in (trace.info.response_preview or "")
    chat = next(s for s in trace.data.spans if s.name.startswith("chat "))
    assert chat.span_type == "CHAT_MODEL"
    assert "晴れです" in json.dumps(chat.outputs, ensure_ascii=False)
    # The system prompt is the first message of the chat inputs MLflow renders.
    assert chat.inputs["messages"][0] == {"role": "system", "content": "Be brief."}
    assert chat.inputs["messages"][-1] == {"role": "user", "content": QUESTION}
    usage = chat.attributes["mlflow.chat.tokenUsage"]
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"] + REASONING_TOKENS
    assert usage["total_tokens"] == run.data.metrics["tokens.total"]
    assert trace.info.token_usage["total_tokens"] == run.data.metrics["tokens.total"]
    root = next(s for s in trace.data.spans if s.parent_id is None)
    assert root.span_type == "CHAIN"
    assert root.inputs == {"question": QUESTION}


def test_model_called_directly_previews_as_plain_text(client: MlflowClient, tmp_path: Path) -> None:
    # A chat model as the root (llm.invoke, as the seed does): MLflow takes the previews from the
    # root span's inputs / outputs, which must read as the user's and the model's text.
    experiment_name = f"direct-{mlflow.utils.time.get_current_time_millis()}"
    provider = TracerProvider()
    provider.add_span_processor(
        SimpleSpanProcessor(
            MlflowSpanExporter(client.tracking_uri, experiment_name, grace_seconds=0.05,
                               spool_dir=str(tmp_path / "spool"))
        )
    )
    try:
        reply = FakeChatModel(responses=["晴れです"]).invoke(
            [("system", "Answer in Japanese."), ("human", QUESTION)],
            config={"callbacks": [OtelTracer(provider)]},
        )
        assert reply.content == "晴れです"
        assert otel_mlflow.flush(60)
    finally:
        provider.shutdown()
    experiment = client.get_experiment_by_name(experiment_name)
    (found,) = client.search_traces(locations=[experiment.experiment_id])
    assert found.info.request_preview == QUESTION
    assert found.info.response_preview == "晴れです"
    (root,) = [s for s in client.get_trace(found.info.trace_id).data.spans if s.parent_id is None]
    assert root.inputs["messages"] == [
        {"role": "system", "content": "Answer in Japanese."},
        {"role": "user", "content": QUESTION},
    ]


# --- a server with MLflow's basic auth: credentials only from MLFLOW_TRACKING_USERNAME/PASSWORD --


def test_basic_auth_server_uses_mlflows_own_credentials(
    auth_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.e2e.test_basic_auth import ADMIN, PASSWORD, WRONG

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", ADMIN)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)
    client = MlflowClient(auth_server.url)
    spans, otlp = make_trace()
    experiment_id, run_id = _new_run(client, "auth")
    log_trace(client, experiment_id, run_id, otlp)
    (found,) = client.search_traces(locations=[experiment_id], run_id=run_id)
    assert found.info.trace_id == "tr-" + trace_hex(spans)

    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", WRONG)
    _, other = make_trace()
    with pytest.raises(Exception, match="401|Unauthorized|credentials|permission"):
        log_trace(MlflowClient(auth_server.url), experiment_id, run_id, other)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)
    assert len(client.search_traces(locations=[experiment_id])) == 1
