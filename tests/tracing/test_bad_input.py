"""Bad input through real chains, tools and chat models: the tracer never breaks the app.

Hypothesis feeds hostile values (bytes, cycles, NaN/inf, 10 MB strings, deep nesting, non-string
keys, pydantic models, base64 images, lone surrogates, Japanese and emoji) as chain inputs and
outputs, prompt variables, message content, metadata values and tool arguments. Each example
asserts: the chain result is the untraced result, no exception, no internal fault, every JSON
attribute parses, every string attribute is within the cap and encodes as UTF-8, the spans encode
as OTLP, and the run record built from them (table, tree) is valid JSON.
"""

from __future__ import annotations

import base64
import json
import math
import os
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.messages import HumanMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import StructuredTool
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import BaseModel

from otel_mlflow._common import semconv as A
from otel_mlflow._common.faults import fault_counts
from otel_mlflow._record import TraceRecord, build_record, encode_otlp
from otel_mlflow._tracing.handler import OtelTracer
from tests._support.fake_models import FakeChatModel

CAP = 4096
EXAMPLES = {"count": 0}
JSON_ATTRS = frozenset({
    A.INPUT, A.OUTPUT, A.LC_METADATA, A.GEN_AI_INPUT_MESSAGES, A.GEN_AI_OUTPUT_MESSAGES,
    A.GEN_AI_SYSTEM_INSTRUCTIONS, A.GEN_AI_TOOL_CALL_ARGUMENTS, A.GEN_AI_TOOL_CALL_RESULT,
})
# Built once: hypothesis draws the same objects, so examples stay fast.
TEN_MB = "長い文章 long text 🎉 " * 600_000
IMAGE_B64 = base64.b64encode(os.urandom(200_000)).decode()
DATA_URL = "data:image/png;base64," + IMAGE_B64


@pytest.fixture(scope="module", autouse=True)
def _report_examples(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"hypothesis examples run in test_bad_input: {EXAMPLES['count']}")


class Profile(BaseModel):
    name: str
    scores: list[float]
    extra: dict[str, Any] = {}


def _cyclic_list() -> list[Any]:
    value: list[Any] = ["a"]
    value.append(value)
    return value


def _cyclic_dict() -> dict[str, Any]:
    value: dict[str, Any] = {"k": "v"}
    value["me"] = {"parent": value}
    return value


def _deep(levels: int) -> dict[str, Any]:
    root: dict[str, Any] = {}
    cur = root
    for _ in range(levels):
        nxt: dict[str, Any] = {}
        cur["d"] = nxt
        cur = nxt
    return root


_special = st.sampled_from([
    b"\x00\xff\xfe raw bytes",
    bytearray(b"abc"),
    float("nan"),
    math.inf,
    -math.inf,
    TEN_MB,
    DATA_URL,
    IMAGE_B64,
    "日本語のテキストです。絵文字も 🎉👍🏽🇯🇵",
    "lone \ud800 surrogate \udfff",
    "\x00\x01 control \x1f",
    {1: "int key", (2, 3): "tuple key", None: "none key", 4.5: "float key"},
    Profile(name="名前", scores=[1.0, float("nan")], extra={"b": b"x"}),
    {"type": "image_url", "image_url": {"url": DATA_URL}},
    2**100,
])
_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=40),
    st.binary(max_size=16), _special,
)
_value = st.recursive(
    _leaf,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=8), st.integers()), children, max_size=4),
        st.tuples(children),
    ),
    max_leaves=12,
)
_bad = st.one_of(
    _value,
    st.builds(_cyclic_list),
    st.builds(_cyclic_dict),
    st.builds(_deep, st.integers(min_value=30, max_value=300)),
)
_text = st.one_of(st.text(max_size=200), st.sampled_from([
    TEN_MB, DATA_URL, "日本語 🎉", "lone \ud800 surrogate", "{not json}", "\x00",
]))


def _pipeline() -> tuple[OtelTracer, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return OtelTracer(provider, max_attribute_chars=CAP), exporter


def _same(a: Any, b: Any) -> bool:
    return a is b or repr(a) == repr(b)


def _tracer_faults() -> int:
    return sum(n for where, n in fault_counts().items() if where.startswith(("tracer.", "serialize.")))


def _check_spans(spans: tuple[ReadableSpan, ...]) -> None:
    assert spans, "no span was exported"
    for span in spans:
        for key, value in (span.attributes or {}).items():
            values = value if isinstance(value, tuple) else (value,)
            for item in values:
                if isinstance(item, str):
                    item.encode("utf-8")
                    assert len(item) <= CAP, (key, len(item))
                    if key in JSON_ATTRS:
                        json.loads(item)
        for event in span.events:
            for item in (event.attributes or {}).values():
                if isinstance(item, str):
                    item.encode("utf-8")
                    assert len(item) <= CAP
    encode_otlp(spans)  # the OTLP protobuf encoder accepts every attribute
    by_trace: dict[int, list[ReadableSpan]] = {}
    for span in spans:
        by_trace.setdefault(span.context.trace_id, []).append(span)
    for trace_spans in by_trace.values():
        record = build_record(trace_spans)
        json.dumps(record.tree, allow_nan=False, ensure_ascii=False).encode("utf-8")
        json.dumps(record.table.to_dict(), allow_nan=False, ensure_ascii=False).encode("utf-8")
        assert TraceRecord.from_json(record.to_json()).trace_id == record.trace_id


def _run_both(build: Any, arg: Any, config: dict[str, Any] | None = None) -> None:
    """Run ``build()`` untraced and traced on ``arg``; compare results, check the spans."""
    EXAMPLES["count"] += 1
    expected = build().invoke(arg, config=config)
    tracer, exporter = _pipeline()
    faults = _tracer_faults()
    traced_config = dict(config or {})
    traced_config["callbacks"] = [tracer]
    result = build().invoke(arg, config=traced_config)
    assert _same(result, expected)
    assert _tracer_faults() == faults, fault_counts()
    assert tracer.open_runs == 0
    _check_spans(exporter.get_finished_spans())


def _identity_chain() -> Any:
    return RunnableLambda(lambda x: x, name="identity") | RunnableLambda(lambda x: x, name="again")


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(value=_bad, meta=_bad)
def test_chain_inputs_outputs_and_metadata(value: Any, meta: Any) -> None:
    _run_both(_identity_chain, value, {"metadata": {"payload": meta, "日本": "語"},
                                       "tags": ["bad-input"]})


def _tool_chain() -> Any:
    def echo(payload: Any, note: str = "") -> Any:
        return payload

    tool = StructuredTool.from_function(echo, name="echo", description="Returns its payload.")
    return RunnableLambda(lambda x: tool.invoke({"payload": x, "note": "日本語"}), name="call_tool")


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(value=_bad)
def test_tool_arguments_and_results(value: Any) -> None:
    _run_both(_tool_chain, value)


def _chat_chain() -> Any:
    prompt = ChatPromptTemplate.from_messages(
        [("system", "You answer in {lang}."), ("human", "{question}")]
    )
    return prompt | FakeChatModel() | StrOutputParser()


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(question=_text, lang=_bad)
def test_prompt_variables_and_chat_messages(question: str, lang: Any) -> None:
    _run_both(_chat_chain, {"question": question, "lang": lang})


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(text=_text, url=st.sampled_from([DATA_URL, "https://example.com/x.png"]))
def test_multimodal_message_content(text: str, url: str) -> None:
    def build() -> Any:
        return FakeChatModel() | StrOutputParser()

    message = HumanMessage(content=[
        {"type": "text", "text": text},
        {"type": "image_url", "image_url": {"url": url}},
        {"type": "image", "source_type": "base64", "mime_type": "image/png", "data": IMAGE_B64},
    ])
    _run_both(build, [message])


def test_base64_image_never_copied_into_attributes() -> None:
    tracer, exporter = _pipeline()
    message = HumanMessage(content=[{"type": "image_url", "image_url": {"url": DATA_URL}}])
    (FakeChatModel() | StrOutputParser()).invoke([message], config={"callbacks": [tracer]})
    blob = json.dumps([dict(s.attributes or {}) for s in exporter.get_finished_spans()],
                      ensure_ascii=False)
    assert IMAGE_B64[:64] not in blob


def test_ten_megabyte_input_is_capped_with_marker_and_original_size() -> None:
    tracer, exporter = _pipeline()
    _identity_chain().invoke({"doc": TEN_MB}, config={"callbacks": [tracer]})
    spans = exporter.get_finished_spans()
    raw = next(s for s in spans if s.attributes.get(A.ROOT)).attributes[A.INPUT]
    assert isinstance(raw, str) and len(raw) <= CAP
    parsed = json.loads(raw)
    assert parsed["doc"]["otel_mlflow.truncated"] is True
    assert parsed["doc"]["original_chars"] == len(TEN_MB)


def test_japanese_and_emoji_stay_readable() -> None:
    tracer, exporter = _pipeline()
    _identity_chain().invoke({"q": "日本語 🎉"}, config={"callbacks": [tracer]})
    raw = next(s for s in exporter.get_finished_spans() if s.attributes.get(A.ROOT))
    assert "日本語 🎉" in raw.attributes[A.INPUT]


def test_exception_with_hostile_message_keeps_the_original_error() -> None:
    class HostileError(Exception):
        def __str__(self) -> str:
            return "bad \ud800 " + "x" * 100_000

    def boom(_: Any) -> Any:
        raise HostileError()

    tracer, exporter = _pipeline()
    faults = _tracer_faults()
    with pytest.raises(HostileError):
        RunnableLambda(boom).invoke({"a": 1}, config={"callbacks": [tracer]})
    assert _tracer_faults() == faults
    _check_spans(exporter.get_finished_spans())
