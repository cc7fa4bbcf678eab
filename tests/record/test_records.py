"""Pure conversion: finished spans of one trace -> TraceRecord (run schema), no MLflow, no I/O.

Spans come from a real TracerProvider + InMemorySpanExporter: synthetic GenAI spans written with
the attribute constants, and spans of real LangChain runnables traced by ``OtelTracer``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans  # noqa: F401
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, Status, StatusCode, TraceFlags

from otel_mlflow._common import semconv as A
import otel_mlflow._record as R


@pytest.fixture
def memory() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "records-svc"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def _msgs(role: str, text: str, **extra: Any) -> str:
    return json.dumps([{"role": role, "parts": [{"type": "text", "content": text}], **extra}],
                      ensure_ascii=False)


def _llm_attrs(model: str, tin: int, tout: int, total: int | None, **extra: Any) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        A.GEN_AI_OPERATION_NAME: A.OP_CHAT,
        A.GEN_AI_PROVIDER_NAME: A.PROVIDER_GCP_VERTEX_AI,
        A.GEN_AI_REQUEST_MODEL: model,
        A.GEN_AI_USAGE_INPUT_TOKENS: tin,
        A.GEN_AI_USAGE_OUTPUT_TOKENS: tout,
        A.LC_RUN_TYPE: A.RUN_CHAT_MODEL,
    }
    if total is not None:
        attrs[A.USAGE_TOTAL_TOKENS] = total
    attrs.update(extra)
    return attrs


def _synthetic_trace(provider: TracerProvider) -> None:
    """A workflow with two chat calls (one streamed), a tool, a retriever and a failed tool."""
    tracer = provider.get_tracer("test")
    root_attrs = {
        A.ROOT: True,
        A.LC_RUN_TYPE: A.RUN_CHAIN,
        A.GEN_AI_OPERATION_NAME: A.OP_INVOKE_WORKFLOW,
        A.LC_TAGS: ("prod", "v2"),
        A.LC_METADATA: json.dumps({"user": "ユーザー", "bad key!": 3}),
    }
    with tracer.start_as_current_span("invoke_workflow qa", attributes=root_attrs):
        with tracer.start_as_current_span(
            "chat gemini-2.5-flash",
            attributes=_llm_attrs(
                "gemini-2.5-flash", 10, 5, 21,
                **{
                    A.GEN_AI_REQUEST_TEMPERATURE: 0.2,
                    A.GEN_AI_REQUEST_MAX_TOKENS: 256,
                    A.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: 6,
                    A.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: 4,
                    A.GEN_AI_SYSTEM_INSTRUCTIONS: json.dumps([{"type": "text", "content": "Be brief"}]),
                    A.GEN_AI_INPUT_MESSAGES: _msgs("user", "日本の首都は？"),
                    A.GEN_AI_OUTPUT_MESSAGES: _msgs("assistant", "東京です", finish_reason="stop"),
                    A.GEN_AI_RESPONSE_FINISH_REASONS: ("stop",),
                    A.GEN_AI_RESPONSE_MODEL: "gemini-2.5-flash-001",
                },
            ),
        ):
            pass
        with tracer.start_as_current_span(
            "execute_tool search",
            attributes={A.GEN_AI_OPERATION_NAME: A.OP_EXECUTE_TOOL, A.LC_RUN_TYPE: A.RUN_TOOL},
        ):
            pass
        with tracer.start_as_current_span(
            "retrieval", attributes={A.LC_RUN_TYPE: A.RUN_RETRIEVER}
        ):
            pass
        with tracer.start_as_current_span(
            "chat gemini-2.5-pro",
            attributes=_llm_attrs(
                "gemini-2.5-pro", 7, 3, None,
                **{A.GEN_AI_REQUEST_TEMPERATURE: 0.9, A.GEN_AI_REQUEST_TOP_P: 0.5,
                   A.TTFT_MS: 12.5, A.STREAMED: True,
                   A.GEN_AI_OUTPUT_MESSAGES: json.dumps([{"role": "assistant", "parts": [
                       {"type": "tool_call", "name": "search", "arguments": {"q": "x"}}]}])},
            ),
        ):
            pass
        tool = tracer.start_span(
            "execute_tool broken",
            attributes={A.GEN_AI_OPERATION_NAME: A.OP_EXECUTE_TOOL, A.LC_RUN_TYPE: A.RUN_TOOL,
                        A.ERROR_TYPE: "ValueError", A.ERROR_MESSAGE: "bad input"},
        )
        tool.set_status(Status(StatusCode.ERROR, "bad input"))
        tool.end()


def test_metrics_sum_and_count_what_the_trace_did(memory) -> None:
    provider, exporter = memory
    _synthetic_trace(provider)
    rec = R.build_record(exporter.get_finished_spans())
    m = rec.metrics
    assert m[R.M_LLM_CALLS] == 2
    assert m[R.M_TOKENS_INPUT] == 17
    assert m[R.M_TOKENS_OUTPUT] == 8
    # Reported total 21 for the first call (thinking tokens included), 7+3 for the second.
    assert m[R.M_TOKENS_TOTAL] == 31
    assert m[R.M_TOKENS_REASONING] == 6
    assert m[R.M_TOKENS_CACHE_READ] == 4
    assert m[R.M_TOOL_CALLS] == 2
    assert m[R.M_RETRIEVER_CALLS] == 1
    assert m[R.M_SPANS] == 6
    assert m[R.M_ERRORS] == 1
    assert m[R.M_LLM_TTFT] == 12.5
    assert m[R.M_LLM_DURATION_MAX] <= m[R.M_LLM_DURATION] <= m[R.M_TRACE_DURATION]
    assert set(m) == {
        R.M_TRACE_DURATION, R.M_LLM_CALLS, R.M_LLM_DURATION, R.M_LLM_DURATION_MAX, R.M_LLM_TTFT,
        R.M_TOKENS_INPUT, R.M_TOKENS_OUTPUT, R.M_TOKENS_TOTAL, R.M_TOKENS_REASONING,
        R.M_TOKENS_CACHE_READ, R.M_TOOL_CALLS, R.M_RETRIEVER_CALLS, R.M_SPANS, R.M_ERRORS,
        R.M_COST, R.M_COST_INPUT, R.M_COST_OUTPUT,  # both Gemini models have a price
    }


def test_tags_and_params_follow_the_schema(memory) -> None:
    provider, exporter = memory
    _synthetic_trace(provider)
    rec = R.build_record(exporter.get_finished_spans())
    assert rec.run_name == "invoke_workflow qa"
    assert rec.tags[R.TAG_TRACE_ID] == rec.trace_id and len(rec.trace_id) == 32
    assert rec.tags[R.TAG_SERVICE_NAME] == "records-svc"
    assert rec.tags[R.TAG_STATUS] == "OK"  # the root succeeded; a child error is in `errors`
    assert rec.tags[R.TAG_MODELS] == "gemini-2.5-flash-001,gemini-2.5-pro"
    assert rec.tags[R.TAG_PROVIDERS] == "gcp.vertex_ai"
    assert rec.tags[R.TAG_LC_TAGS] == "prod,v2"
    assert rec.tags["langchain.metadata.user"] == "ユーザー"
    assert rec.tags["langchain.metadata.bad key_"] == "3"  # invalid tag-key chars replaced
    assert json.loads(rec.tags[R.TAG_LOGGED_ARTIFACTS]) == [
        {"path": "llm_calls.json", "type": "table"}
    ]
    assert R.TAG_PARTIAL not in rec.tags
    # First call's values win per param; models are joined in first-use order.
    assert rec.params == {
        "model": "gemini-2.5-flash,gemini-2.5-pro",
        "temperature": "0.2",
        "max_tokens": "256",
        "top_p": "0.5",
    }
    assert rec.target_run_id is None and rec.status == "OK" and not rec.partial


def test_table_rows_are_readable_text(memory) -> None:
    provider, exporter = memory
    _synthetic_trace(provider)
    rec = R.build_record(exporter.get_finished_spans())
    table = rec.table.to_dict()
    assert table["columns"] == list(R.TABLE_COLUMNS)
    rows = [dict(zip(table["columns"], row)) for row in table["data"]]
    assert [r["name"] for r in rows] == ["chat gemini-2.5-flash", "chat gemini-2.5-pro"]
    first, second = rows
    assert first["input"] == "system: Be brief\n\nuser: 日本の首都は？"
    assert first["output"] == "東京です"
    assert first["model"] == "gemini-2.5-flash-001"
    assert (first["input_tokens"], first["output_tokens"], first["total_tokens"]) == (10, 5, 21)
    assert first["finish_reason"] == "stop" and first["error"] is None
    assert first["ttft_ms"] is None and second["ttft_ms"] == 12.5
    assert second["output"] == 'tool_call search({"q": "x"})'
    assert second["total_tokens"] is None
    assert all(r["trace_id"] == rec.trace_id and len(r["span_id"]) == 16 for r in rows)
    json.dumps(table, allow_nan=False)  # strict JSON


def test_tree_nests_like_the_spans(memory) -> None:
    provider, exporter = memory
    _synthetic_trace(provider)
    spans = exporter.get_finished_spans()
    rec = R.build_record(spans)
    roots = rec.tree["spans"]
    assert len(roots) == 1 and roots[0]["name"] == "invoke_workflow qa"
    names = [c["name"] for c in roots[0]["children"]]
    assert names == ["chat gemini-2.5-flash", "execute_tool search", "retrieval",
                     "chat gemini-2.5-pro", "execute_tool broken"]
    chat = roots[0]["children"][0]
    assert chat["parent_id"] == roots[0]["span_id"]
    # JSON content attributes are objects in the tree, not quoted JSON.
    assert chat["attributes"][A.GEN_AI_INPUT_MESSAGES][0]["parts"][0]["content"] == "日本の首都は？"
    broken = roots[0]["children"][-1]
    assert broken["status"] == {"code": "ERROR", "description": "bad input"}
    assert broken["start_time_ns"] <= broken["end_time_ns"]
    assert broken["start_time"].endswith("+00:00")
    text = json.dumps(rec.tree, ensure_ascii=False)
    assert "日本の首都は" in text


def test_root_below_a_foreign_parent_and_error_status(memory) -> None:
    provider, exporter = memory
    tracer = provider.get_tracer("t")
    foreign = SpanContext(trace_id=0xABC, span_id=0xDEF, is_remote=False,
                          trace_flags=TraceFlags(TraceFlags.SAMPLED))
    ctx = trace.set_span_in_context(NonRecordingSpan(foreign))
    root = tracer.start_span("invoke_workflow x", context=ctx,
                             attributes={A.ROOT: True, A.ERROR_TYPE: "KeyError"})
    child = tracer.start_span("step", context=trace.set_span_in_context(root))
    child.end()
    root.set_status(Status(StatusCode.ERROR, "boom"))
    root.end()
    spans = exporter.get_finished_spans()
    assert not R.is_trace_root(spans[1]) and R.is_langchain_root(spans[1])
    rec = R.build_record(spans)
    assert rec.run_name == "invoke_workflow x"
    assert rec.status == "ERROR" and rec.tags[R.TAG_ERROR_TYPE] == "KeyError"
    assert rec.trace_id == format(0xABC, "032x")
    # The foreign parent is not in the trace: the LangChain root is a top-level node.
    assert [n["name"] for n in rec.tree["spans"]] == ["invoke_workflow x"]


def test_active_run_target_partial_and_dropped(memory) -> None:
    provider, exporter = memory
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span(
        "invoke_workflow a",
        attributes={A.ROOT: True, A.MLFLOW_RUN_ID: "run123", A.MLFLOW_EXPERIMENT_ID: "7"},
    ):
        pass
    rec = R.build_record(exporter.get_finished_spans(), partial=True, dropped_spans=3)
    assert rec.target_run_id == "run123" and rec.experiment_id == "7"
    assert rec.tags[R.TAG_PARTIAL] == "true" and rec.partial
    assert rec.tags[R.TAG_DROPPED_SPANS] == "3"
    assert rec.metrics[R.M_LLM_CALLS] == 0 and R.M_LLM_TTFT not in rec.metrics
    assert rec.table.rows == ()


def test_json_round_trip_batch_and_otlp(memory) -> None:
    provider, exporter = memory
    _synthetic_trace(provider)
    _synthetic_trace(provider)
    spans = exporter.get_finished_spans()
    by_trace: dict[int, list[ReadableSpan]] = {}
    for span in spans:
        by_trace.setdefault(span.context.trace_id, []).append(span)
    records = [R.build_record(group) for group in by_trace.values()]
    assert len(records) == 2
    batch = R.merge_batch(records)
    assert [m.trace_id for m in batch.traces] == [r.trace_id for r in records]
    assert len(batch.table.rows) == 4
    again = R.TraceRecord.from_json(batch.to_json())
    assert again == batch
    one = R.TraceRecord.from_json(records[0].to_json())
    assert one == records[0] and one.traces == (one,)
    request = ExportTraceServiceRequest()
    request.ParseFromString(records[0].otlp)
    names = {s.name for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans}
    assert "invoke_workflow qa" in names and len(names) == 6
    assert R.build_record(by_trace[next(iter(by_trace))], encode=False).otlp == b""
    with pytest.raises(ValueError):
        R.build_record([])


def test_messages_text_falls_back_on_odd_content() -> None:
    assert R.messages_text(None) is None
    assert R.messages_text("not json") == "not json"
    assert R.messages_text(json.dumps({"role": "user", "content": "hi"})) == "hi"
    two = json.dumps([{"role": "user", "parts": [{"type": "text", "content": "a"}]},
                      {"role": "tool", "parts": [{"type": "tool_call_response", "response": 5}]}])
    assert R.messages_text(two) == "user: a\n\ntool: tool_result: 5"


class _FakeGemini(GenericFakeChatModel):
    """A fake chat model that reports itself like Gemini on Vertex AI."""

    model: str = "gemini-2.5-flash"
    temperature: float = 0.3

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
        return {"ls_provider": "google_vertexai", "ls_model_name": self.model,
                "ls_model_type": "chat", "ls_temperature": self.temperature}


def test_record_from_a_real_chain_traced_by_otel_tracer(memory) -> None:
    from otel_mlflow._tracing.handler import OtelTracer

    provider, exporter = memory
    usage = {"input_tokens": 11, "output_tokens": 4, "total_tokens": 19,
             "output_token_details": {"reasoning": 4}}
    model = _FakeGemini(messages=iter([AIMessage(content="Tokyo", usage_metadata=usage)]))
    chain = (ChatPromptTemplate.from_messages([("system", "Answer briefly"), ("human", "{q}")])
             | model | StrOutputParser())
    out = chain.invoke({"q": "capital of Japan?"},
                       config={"callbacks": [OtelTracer(provider)], "tags": ["t1"]})
    assert out == "Tokyo"
    rec = R.build_record(exporter.get_finished_spans())
    assert rec.metrics[R.M_LLM_CALLS] == 1
    assert rec.metrics[R.M_TOKENS_INPUT] == 11 and rec.metrics[R.M_TOKENS_TOTAL] == 19
    assert rec.metrics[R.M_TOKENS_REASONING] == 4
    assert rec.metrics[R.M_SPANS] == 4  # sequence, prompt, model, parser
    assert rec.params["model"] == "gemini-2.5-flash" and rec.params["temperature"] == "0.3"
    assert rec.tags[R.TAG_PROVIDERS] == "gcp.vertex_ai"
    assert rec.tags[R.TAG_LC_TAGS] == "t1"
    row = dict(zip(R.TABLE_COLUMNS, rec.table.rows[0]))
    assert "capital of Japan?" in row["input"] and "Answer briefly" in row["input"]
    assert row["output"] == "Tokyo"
    root = rec.tree["spans"][0]
    assert root["attributes"][A.ROOT] is True
    assert len(root["children"]) == 3
