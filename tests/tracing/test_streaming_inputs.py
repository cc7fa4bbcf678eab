"""Issue 13 defect 1: a streamed chain's span input is its real input, not LangChain's placeholder.

LangChain starts a streamed chain (``stream`` / ``astream`` of a sequence, a parser, a lambda)
with ``on_chain_start(..., {"input": ""})`` and passes the real input to
``on_chain_end(..., inputs=...)``. Real runnables, the real OTel SDK (in-memory exporter), both
content paths (deferred to first read and serialized in the callback), and the real
``ChatVertexAI`` client over REST against the local Gemini emulator.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_mlflow._common import semconv as A
from otel_mlflow._tracing.handler import OtelTracer
from otel_mlflow.testing.gemini_emulator import GeminiEmulator
from tests._support.fake_models import FakeChatModel

PLACEHOLDER = {"input": ""}


class Traced:
    def __init__(self, defer: bool) -> None:
        self.memory = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.memory))
        self.tracer = OtelTracer(self.provider, defer_content=defer)
        self.config: Any = {"callbacks": [self.tracer]}

    def by_name(self, name: str) -> ReadableSpan:
        (span,) = [s for s in self.memory.get_finished_spans()
                   if s.attributes.get(A.LC_NAME) == name]
        return span

    def root(self) -> ReadableSpan:
        (span,) = [s for s in self.memory.get_finished_spans() if s.attributes.get(A.ROOT)]
        return span


@pytest.fixture(params=[True, False], ids=["deferred", "eager"])
def traced(request: pytest.FixtureRequest) -> Iterator[Traced]:
    t = Traced(request.param)
    yield t
    t.provider.shutdown()


def span_input(span: ReadableSpan) -> Any:
    return json.loads(span.attributes[A.INPUT])


def chain() -> Any:
    prompt = ChatPromptTemplate.from_messages([("human", "Tell me about {topic}")])
    return prompt | FakeChatModel() | StrOutputParser()


def shout(text: str) -> str:
    return text.upper()


def test_stream_root_input_is_the_real_input(traced: Traced) -> None:
    out = "".join(chain().stream({"topic": "otters"}, config=traced.config))
    assert out == "echo: Tell me about otters"
    assert span_input(traced.root()) == {"topic": "otters"}
    parser = span_input(traced.by_name("StrOutputParser"))
    assert parser != PLACEHOLDER
    assert "echo: Tell me about otters" in json.dumps(parser)


def test_astream_root_and_parser_inputs(traced: Traced) -> None:
    async def main() -> str:
        return "".join([c async for c in chain().astream({"topic": "seals"},
                                                           config=traced.config)])

    assert asyncio.run(main()) == "echo: Tell me about seals"
    assert span_input(traced.root()) == {"topic": "seals"}
    parser = span_input(traced.by_name("StrOutputParser"))
    assert parser != PLACEHOLDER
    assert "echo: Tell me about seals" in json.dumps(parser)


def test_stream_and_astream_of_a_lambda(traced: Traced) -> None:
    lam = RunnableLambda(shout, name="shout")
    assert "".join(lam.stream("quiet", config=traced.config)) == "QUIET"

    async def main() -> str:
        return "".join([c async for c in lam.astream("hush", config=traced.config)])

    assert asyncio.run(main()) == "HUSH"
    inputs = sorted(span_input(s) for s in traced.memory.get_finished_spans()
                    if s.attributes.get(A.LC_NAME) == "shout")
    assert inputs == ["hush", "quiet"]


def test_lambda_inside_a_streamed_sequence(traced: Traced) -> None:
    seq = chain() | RunnableLambda(shout, name="shout")
    assert "".join(seq.stream({"topic": "kelp"}, config=traced.config)) == \
        "ECHO: TELL ME ABOUT KELP"
    assert span_input(traced.root()) == {"topic": "kelp"}
    assert span_input(traced.by_name("shout")) == "echo: Tell me about kelp"


def test_invoke_keeps_its_input_and_a_real_empty_input_is_kept(traced: Traced) -> None:
    assert chain().invoke({"topic": "x"}, config=traced.config) == "echo: Tell me about x"
    assert span_input(traced.root()) == {"topic": "x"}
    traced.memory.clear()
    # A user input that looks like the placeholder, invoked (no inputs at end): still recorded.
    lam = RunnableLambda(lambda d: d["input"] + "!", name="bang")
    assert lam.invoke(dict(PLACEHOLDER), config=traced.config) == "!"
    assert span_input(traced.by_name("bang")) == PLACEHOLDER


def test_a_failing_stream_still_records_the_real_input(traced: Traced) -> None:
    def boom(text: str) -> str:
        raise ValueError("nope")

    seq = chain() | RunnableLambda(boom, name="boom")
    with pytest.raises(ValueError):
        "".join(seq.stream({"topic": "fail"}, config=traced.config))
    assert span_input(traced.root()) != PLACEHOLDER
    assert "fail" in traced.root().attributes[A.INPUT]


def test_stream_through_chatvertexai(gemini_emulator: GeminiEmulator) -> None:
    traced = Traced(True)
    try:
        gemini_emulator.queue_text("kelp forests are tall", stream_chunks=3)
        prompt = ChatPromptTemplate.from_messages([("human", "Tell me about {topic}")])
        seq = prompt | gemini_emulator.chat_model() | StrOutputParser()
        out = "".join(seq.stream({"topic": "kelp"}, config=traced.config))
        assert out == "kelp forests are tall"
        assert gemini_emulator.requests[0].stream
        assert span_input(traced.root()) == {"topic": "kelp"}
        parser = span_input(traced.by_name("StrOutputParser"))
        assert parser != PLACEHOLDER
        assert "kelp forests are tall" in json.dumps(parser)
    finally:
        traced.provider.shutdown()
