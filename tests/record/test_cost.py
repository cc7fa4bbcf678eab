"""Cost per LLM call and per trace, checked against genai-prices' own computation.

The reference figures come from genai-prices itself: ``extract_usage`` over the exact
``usageMetadata`` the Gemini emulator answered (its Google extractor adds thinking to the output
and prices cached input at the cache rate), or ``calc_price`` with genai-prices' own usage terms.
Spans come from real runnables and the real ``ChatVertexAI`` client (REST, local emulator) traced
by ``OtelTracer`` into a real SDK pipeline, or from synthetic GenAI spans on a real provider.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from typing import Any

import genai_prices
import pytest
from langchain_core.prompts import ChatPromptTemplate
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import otel_mlflow._record as R
from otel_mlflow._common import semconv as A
from otel_mlflow._export.prices import resolve_price_table
from otel_mlflow._record.cost import PriceTable, token_usage
from otel_mlflow._record.traces_payload import (
    MLFLOW_LLM_COST,
    MLFLOW_LLM_MODEL,
    MLFLOW_TRACE_TAG_PREFIX,
    TRACE_TAG_LC_RUN_ID,
    prepare_for_mlflow,
)
from otel_mlflow._tracing.handler import OtelTracer
from otel_mlflow.testing.gemini_emulator import GeminiEmulator, Usage

MODEL = "gemini-2.0-flash"  # the emulator's default model
# Gemini's split: 25 thinking tokens outside the 3 candidate tokens, 4 of 12 prompt tokens cached.
THINKING_USAGE = Usage(prompt=12, candidates=3, total=40, cached=4, thoughts=25)


def _reference(usage: Usage, model: str = MODEL) -> genai_prices.types.PriceCalculation:
    """genai-prices' own price for the response the emulator sent."""
    response = {"modelVersion": model, "usageMetadata": usage.to_json()}
    return genai_prices.extract_usage(response, provider_id="google").calc_price()


def _payload_attrs(record: R.TraceRecord) -> dict[str, dict[str, Any]]:
    """Span name -> the MLflow-bound attributes (decoded) of the record's Traces payload."""
    request = ExportTraceServiceRequest()
    request.ParseFromString(record.otlp)
    from google.protobuf.json_format import MessageToDict

    out: dict[str, dict[str, Any]] = {}
    for rs in request.resource_spans:
        for ss in rs.scope_spans:
            for span in ss.spans:
                out[span.name] = {
                    kv.key: MessageToDict(kv.value) for kv in span.attributes
                }
    return out


def _cost_attr(value: dict[str, Any]) -> dict[str, float]:
    return {kv["key"]: float(kv["value"]["doubleValue"]) for kv in value["kvlistValue"]["values"]}


def _chain_record(
    emulator: GeminiEmulator, memory: tuple[TracerProvider, InMemorySpanExporter], *,
    stream: bool, prices: PriceTable | None = None,
) -> R.TraceRecord:
    provider, exporter = memory
    tracer = OtelTracer(tracer_provider=provider)
    emulator.queue_text("わたしはアシスタントです", usage=THINKING_USAGE, stream_chunks=2)
    prompt = ChatPromptTemplate.from_messages([("system", "Be brief."), ("human", "{question}")])
    chain = prompt | emulator.chat_model(MODEL)
    config: Any = {"callbacks": [tracer]}
    inputs = {"question": "あなたは誰?"}
    if stream:
        list(chain.stream(inputs, config=config))
    else:
        chain.invoke(inputs, config=config)
    return R.build_record(exporter.get_finished_spans(), prices=prices)


@pytest.mark.parametrize("stream", [False, True], ids=["invoke", "stream"])
def test_gemini_cost_matches_genai_prices_with_thinking_and_cached_tokens(
    gemini_emulator: GeminiEmulator, memory: Any, stream: bool
) -> None:
    record = _chain_record(gemini_emulator, memory, stream=stream)
    ref = _reference(THINKING_USAGE)
    assert ref.total_price > 0
    m = record.metrics
    assert m[R.M_COST] == pytest.approx(float(ref.total_price), rel=1e-12)
    assert m[R.M_COST_INPUT] == pytest.approx(float(ref.input_price), rel=1e-12)
    assert m[R.M_COST_OUTPUT] == pytest.approx(float(ref.output_price), rel=1e-12)
    # Thinking priced as output (28 tokens, not 3) and 4 of 12 input tokens at the cache rate.
    assert m[R.M_COST_OUTPUT] == pytest.approx(28 * 0.4 / 1e6)
    assert m[R.M_COST_INPUT] == pytest.approx((8 * 0.1 + 4 * 0.025) / 1e6)

    (row,) = [dict(zip(record.table.columns, r)) for r in record.table.rows]
    assert row["cost_usd"] == pytest.approx(float(ref.total_price), rel=1e-9)
    # The Traces view gets the same figures, in MLflow's own form.
    chat = next(v for k, v in _payload_attrs(record).items() if k.startswith("chat "))
    assert _cost_attr(chat[MLFLOW_LLM_COST]) == pytest.approx({
        "input_cost": m[R.M_COST_INPUT], "output_cost": m[R.M_COST_OUTPUT],
        "total_cost": m[R.M_COST],
    })


def test_request_column_is_first_and_holds_the_root_inputs(
    gemini_emulator: GeminiEmulator, memory: Any
) -> None:
    record = _chain_record(gemini_emulator, memory, stream=False)
    assert record.table.columns[0] == "request"
    (row,) = record.table.rows
    assert json.loads(row[0]) == {"question": "あなたは誰?"}
    assert "あなたは誰?" in row[0]  # readable, not \\u-escaped
    # The rendered prompt differs per prompt version; the request does not.
    assert "Be brief." in row[record.table.columns.index("input")]


def test_root_run_id_is_a_run_tag_and_a_trace_tag(
    gemini_emulator: GeminiEmulator, memory: Any
) -> None:
    record = _chain_record(gemini_emulator, memory, stream=False)
    provider, exporter = memory
    root = next(s for s in exporter.get_finished_spans() if (s.attributes or {}).get(A.ROOT))
    lc_run_id = (root.attributes or {})[A.LC_RUN_ID]
    assert record.tags[R.TAG_LC_RUN_ID] == lc_run_id
    attrs = _payload_attrs(record)[root.name]
    assert attrs[MLFLOW_TRACE_TAG_PREFIX + TRACE_TAG_LC_RUN_ID] == {"stringValue": lc_run_id}


def _llm_span(
    provider: TracerProvider, model: str, *, provider_name: str = A.PROVIDER_GCP_VERTEX_AI,
    **usage: Any,
) -> None:
    keys = {"tin": A.GEN_AI_USAGE_INPUT_TOKENS, "tout": A.GEN_AI_USAGE_OUTPUT_TOKENS,
            "total": A.USAGE_TOTAL_TOKENS, "cached": A.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
            "thinking": A.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS}
    attrs: dict[str, Any] = {
        A.GEN_AI_OPERATION_NAME: A.OP_CHAT, A.GEN_AI_PROVIDER_NAME: provider_name,
        A.GEN_AI_REQUEST_MODEL: model, A.LC_RUN_TYPE: A.RUN_CHAT_MODEL,
    }
    attrs.update({keys[k]: v for k, v in usage.items() if v is not None})
    with provider.get_tracer("t").start_as_current_span(f"chat {model}", attributes=attrs):
        pass


# (model, provider, span usage, genai-prices' usage for the same call)
CASES = [
    pytest.param("gemini-2.5-pro", A.PROVIDER_GCP_VERTEX_AI,
                 dict(tin=250_000, tout=1_000, total=253_000, cached=50_000, thinking=2_000),
                 dict(input_tokens=250_000, cache_read_tokens=50_000, output_tokens=3_000),
                 id="gemini-long-context-tier"),
    pytest.param("gemini-2.5-pro", A.PROVIDER_GCP_VERTEX_AI,
                 dict(tin=1_000, tout=100, total=1_600, cached=200, thinking=500),
                 dict(input_tokens=1_000, cache_read_tokens=200, output_tokens=600),
                 id="gemini-base-tier"),
    pytest.param("gemini-2.5-flash", A.PROVIDER_GCP_GEMINI,
                 dict(tin=100, tout=10, total=None, cached=None, thinking=30),
                 dict(input_tokens=100, output_tokens=40),
                 id="gemini-no-total-thinking-apart"),
    pytest.param("gemini-2.5-flash", A.PROVIDER_GCP_GEMINI,
                 dict(tin=100, tout=40, total=140, cached=None, thinking=30),
                 dict(input_tokens=100, output_tokens=40),
                 id="gemini-output-already-has-thinking"),
    pytest.param("gpt-4o", "openai",
                 dict(tin=1_000, tout=300, total=1_300, cached=400, thinking=None),
                 dict(input_tokens=1_000, cache_read_tokens=400, output_tokens=300),
                 id="openai-cached"),
]


@pytest.mark.parametrize(("model", "provider_name", "usage", "gp_usage"), CASES)
def test_llm_call_cost_equals_genai_prices(
    memory: Any, model: str, provider_name: str, usage: dict[str, Any],
    gp_usage: dict[str, int],
) -> None:
    provider, exporter = memory
    _llm_span(provider, model, provider_name=provider_name, **usage)
    (span,) = exporter.get_finished_spans()
    ref = genai_prices.calc_price(genai_prices.Usage(**gp_usage), model)
    priced = PriceTable().cost_of_span(span)
    assert priced is not None and priced.model == model
    assert priced.cost.total_usd == pytest.approx(float(ref.total_price), rel=1e-12)
    assert priced.cost.input_usd == pytest.approx(float(ref.input_price), rel=1e-12)
    assert priced.cost.output_usd == pytest.approx(float(ref.output_price), rel=1e-12)


def test_long_context_tier_applies_to_all_tokens_of_the_call(memory: Any) -> None:
    provider, exporter = memory
    _llm_span(provider, "gemini-2.5-pro", tin=199_999, tout=0, total=199_999)
    _llm_span(provider, "gemini-2.5-pro", tin=200_001, tout=0, total=200_001)
    small, large = (PriceTable().cost_of_span(s) for s in exporter.get_finished_spans())
    assert small is not None and large is not None
    assert small.cost.input_usd == pytest.approx(199_999 * 1.25 / 1e6)
    assert large.cost.input_usd == pytest.approx(200_001 * 2.5 / 1e6)


def test_unpriced_model_has_no_cost_and_one_log_line(
    memory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    provider, exporter = memory
    table = PriceTable()
    records = []
    for _ in range(3):
        exporter.clear()
        _llm_span(provider, "house-model-7b", provider_name="self-hosted", tin=10, tout=5)
        with caplog.at_level(logging.WARNING, logger="otel_mlflow._record.cost"):
            records.append(R.build_record(exporter.get_finished_spans(), prices=table))
    for record in records:
        assert R.M_COST not in record.metrics and R.M_COST_INPUT not in record.metrics
        (row,) = [dict(zip(record.table.columns, r)) for r in record.table.rows]
        assert row["cost_usd"] is None
        # MLflow must not price it either (it would download its catalog first).
        attrs = _payload_attrs(record)["chat house-model-7b"]
        assert MLFLOW_LLM_COST not in attrs
        assert attrs[MLFLOW_LLM_MODEL] == {"stringValue": ""}
    lines = [r for r in caplog.records if "house-model-7b" in r.getMessage()]
    assert len(lines) == 1


def test_mixed_trace_sums_only_priced_calls(memory: Any) -> None:
    provider, exporter = memory
    with provider.get_tracer("t").start_as_current_span("invoke_workflow w", attributes={
        A.ROOT: True, A.GEN_AI_OPERATION_NAME: A.OP_INVOKE_WORKFLOW, A.LC_RUN_TYPE: A.RUN_CHAIN,
    }):
        _llm_span(provider, "gemini-2.0-flash", tin=1_000, tout=100, total=1_100)
        _llm_span(provider, "house-model-7b", provider_name="self-hosted", tin=10, tout=5)
    record = R.build_record(exporter.get_finished_spans())
    assert record.metrics[R.M_COST] == pytest.approx((1_000 * 0.1 + 100 * 0.4) / 1e6)
    costs = [dict(zip(record.table.columns, r))["cost_usd"] for r in record.table.rows]
    assert costs == [pytest.approx(record.metrics[R.M_COST]), None]


def test_user_price_map_overrides_the_table(
    gemini_emulator: GeminiEmulator, memory: Any
) -> None:
    table = PriceTable({MODEL: {"input_mtok": 1.0, "output_mtok": 10.0, "cache_read_mtok": 0.5}})
    record = _chain_record(gemini_emulator, memory, stream=False, prices=table)
    assert record.metrics[R.M_COST_INPUT] == pytest.approx((8 * 1.0 + 4 * 0.5) / 1e6)
    assert record.metrics[R.M_COST_OUTPUT] == pytest.approx(28 * 10.0 / 1e6)


def test_price_map_from_env_json_or_file_and_argument_wins(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, memory: Any
) -> None:
    provider, exporter = memory
    _llm_span(provider, "house-model-7b", provider_name="self-hosted", tin=1_000_000, tout=0)
    (span,) = exporter.get_finished_spans()

    def price(table: PriceTable) -> float | None:
        priced = table.cost_of_span(span)
        return None if priced is None else priced.cost.total_usd

    monkeypatch.setenv("OTEL_MLFLOW_PRICES", json.dumps(
        {"House-Model-7B": {"input_mtok": 2, "output_mtok": 3}}))
    assert price(resolve_price_table(None)) == pytest.approx(2.0)
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"house-model-7b": {"input_mtok": 4, "output_mtok": 3}}))
    monkeypatch.setenv("OTEL_MLFLOW_PRICES", str(path))
    assert price(resolve_price_table(None)) == pytest.approx(4.0)
    assert price(resolve_price_table(
        {"house-model-7b": {"input_mtok": 8, "output_mtok": 1}})) == pytest.approx(8.0)


@pytest.mark.parametrize("bad", [
    '{"m": {"input_mtok": -1, "output_mtok": 1}}',
    '{"m": {"input_mtok": 1}}',
    '{"m": {"input_mtok": 1, "output_mtok": 1, "per_request": 2}}',
    "/no/such/prices.json",
    "[1, 2]",
])
def test_bad_price_map_is_logged_and_ignored(
    bad: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OTEL_MLFLOW_PRICES", bad)
    with caplog.at_level(logging.WARNING):
        table = resolve_price_table(None)
    assert table.overrides == {}
    assert any("OTEL_MLFLOW_PRICES" in r.getMessage() for r in caplog.records)


def test_usage_terms_cached_never_exceeds_input(memory: Any) -> None:
    provider, exporter = memory
    _llm_span(provider, "gemini-2.0-flash", tin=5, tout=1, cached=9)
    (span,) = exporter.get_finished_spans()
    usage = token_usage(span.attributes or {})
    assert usage is not None and usage.cache_read_tokens == 5
    assert PriceTable().cost_of_span(span) is not None


def test_pricing_makes_no_network_call() -> None:
    """genai-prices is imported and used with every socket connect failing (fresh interpreter)."""
    code = """
import socket
def refuse(*a, **k):
    raise OSError("network used")
socket.socket.connect = refuse
socket.create_connection = refuse
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from otel_mlflow._common import semconv as A
from otel_mlflow._record import build_record
exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
with provider.get_tracer("t").start_as_current_span("chat", attributes={
        A.GEN_AI_OPERATION_NAME: A.OP_CHAT, A.GEN_AI_REQUEST_MODEL: "gemini-2.0-flash",
        A.GEN_AI_PROVIDER_NAME: A.PROVIDER_GCP_VERTEX_AI,
        A.GEN_AI_USAGE_INPUT_TOKENS: 10, A.GEN_AI_USAGE_OUTPUT_TOKENS: 5}):
    pass
print(build_record(exporter.get_finished_spans()).metrics["cost.usd"])
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)
    assert float(out.stdout.strip()) == pytest.approx((10 * 0.1 + 5 * 0.4) / 1e6)


def test_prepared_payload_keeps_our_cost(gemini_emulator: GeminiEmulator, memory: Any) -> None:
    """The sink's rewrite (prepare_for_mlflow) leaves the explicit cost in place."""
    record = _chain_record(gemini_emulator, memory, stream=False)
    payload = prepare_for_mlflow(record.otlp)
    spans = [s for rs in payload.request.resource_spans for ss in rs.scope_spans
             for s in ss.spans if s.name.startswith("chat ")]
    (chat,) = spans
    assert sum(kv.key == MLFLOW_LLM_COST for kv in chat.attributes) == 1
