"""``LangChainInstrumentor``: every LangChain run traced with one line, off again, no double
tracing; real runnables, real OTel SDK with an in-memory exporter."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
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
from otel_mlflow.instrumentation import LangChainInstrumentor, active_tracer
from tests._support.fake_models import FakeChatModel


class Pipeline:
    def __init__(self) -> None:
        self.memory = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.memory))

    def spans(self) -> list[ReadableSpan]:
        return list(self.memory.get_finished_spans())

    def chat_spans(self) -> list[ReadableSpan]:
        return [s for s in self.spans() if s.name.startswith("chat ")]


@pytest.fixture
def pipeline() -> Iterator[Pipeline]:
    p = Pipeline()
    yield p
    p.provider.shutdown()


@pytest.fixture
def instrumentor() -> Iterator[LangChainInstrumentor]:
    inst = LangChainInstrumentor()
    yield inst
    inst.uninstrument()


def chain() -> Any:
    prompt = ChatPromptTemplate.from_messages([("human", "Tell me about {topic}")])
    return prompt | FakeChatModel() | StrOutputParser()


def test_dependencies_and_singleton() -> None:
    assert LangChainInstrumentor().instrumentation_dependencies() == ("langchain-core >= 1.0",)
    assert LangChainInstrumentor() is LangChainInstrumentor()


def test_one_line_traces_invoke_batch_stream(
    pipeline: Pipeline, instrumentor: LangChainInstrumentor
) -> None:
    instrumentor.instrument(tracer_provider=pipeline.provider)
    c = chain()
    assert c.invoke({"topic": "a"}) == "echo: Tell me about a"
    assert c.batch([{"topic": "b"}, {"topic": "c"}]) == ["echo: Tell me about b", "echo: Tell me about c"]
    assert "".join(c.stream({"topic": "d"})).startswith("echo:")
    assert len(pipeline.chat_spans()) == 4
    roots = [s for s in pipeline.spans() if s.attributes.get(A.ROOT)]
    assert len(roots) == 4 and all(s.name.startswith("invoke_workflow") for s in roots)
    by_id = {s.context.span_id: s for s in pipeline.spans()}
    for chat in pipeline.chat_spans():  # children nest under their own run's workflow span
        assert chat.parent is not None
        assert by_id[chat.parent.span_id].name.startswith("invoke_workflow")
        assert chat.context.trace_id == chat.parent.trace_id


def test_async_runs_and_tasks_created_before_instrument(
    pipeline: Pipeline, instrumentor: LangChainInstrumentor
) -> None:
    async def main() -> None:
        go = asyncio.Event()

        async def early_task() -> str:
            await go.wait()
            return await chain().ainvoke({"topic": "early"})

        task = asyncio.create_task(early_task())
        await asyncio.sleep(0)
        instrumentor.instrument(tracer_provider=pipeline.provider)  # after the task started
        go.set()
        assert await task == "echo: Tell me about early"
        chunks = [c async for c in chain().astream({"topic": "late"})]
        assert "".join(chunks).startswith("echo:")
        await chain().abatch([{"topic": "x"}, {"topic": "y"}])

    asyncio.run(main())
    assert len(pipeline.chat_spans()) == 4


def test_threads_started_before_and_pool_threads(
    pipeline: Pipeline, instrumentor: LangChainInstrumentor
) -> None:
    go = threading.Event()
    results: list[str] = []

    def worker() -> None:
        go.wait(10)
        results.append(chain().invoke({"topic": "thread"}))

    thread = threading.Thread(target=worker)
    thread.start()  # started before instrument(): a ContextVar set later would not reach it
    with ThreadPoolExecutor(2) as pool:
        pool.submit(lambda: None).result()  # pool threads exist before instrument()
        instrumentor.instrument(tracer_provider=pipeline.provider)
        go.set()
        thread.join(10)
        pooled = list(pool.map(lambda t: chain().invoke({"topic": t}), ["p1", "p2"]))
    assert results == ["echo: Tell me about thread"]
    assert pooled == ["echo: Tell me about p1", "echo: Tell me about p2"]
    assert len(pipeline.chat_spans()) == 3


def test_uninstrument_turns_it_off_and_instrument_again_on(
    pipeline: Pipeline, instrumentor: LangChainInstrumentor
) -> None:
    instrumentor.instrument(tracer_provider=pipeline.provider)
    chain().invoke({"topic": "on"})
    instrumentor.uninstrument()
    assert active_tracer() is None
    chain().invoke({"topic": "off"})
    assert len(pipeline.chat_spans()) == 1
    instrumentor.instrument(tracer_provider=pipeline.provider)
    chain().invoke({"topic": "on again"})
    assert len(pipeline.chat_spans()) == 2


def test_no_double_tracing_with_an_explicit_tracer(
    pipeline: Pipeline, instrumentor: LangChainInstrumentor
) -> None:
    ambient = Pipeline()
    try:
        instrumentor.instrument(tracer_provider=ambient.provider)
        explicit = OtelTracer(pipeline.provider)
        lam = RunnableLambda(lambda x: x) | chain()
        lam.invoke({"topic": "explicit"}, config={"callbacks": [explicit]})
        chain().batch([{"topic": "1"}, {"topic": "2"}], config={"callbacks": [explicit]})
        # the instrumentor's own tracer passed explicitly: still once
        lam.invoke({"topic": "same"}, config={"callbacks": [active_tracer()]})
    finally:
        ambient.provider.shutdown()
    assert len(pipeline.chat_spans()) == 3
    assert len(ambient.chat_spans()) == 1  # only the run that passed the ambient tracer itself
    run_ids = [s.attributes[A.LC_RUN_ID] for s in pipeline.spans() + ambient.spans()]
    assert len(run_ids) == len(set(run_ids))  # no LangChain run has two spans


def test_given_tracer_is_used_as_is(pipeline: Pipeline, instrumentor: LangChainInstrumentor) -> None:
    tracer = OtelTracer(pipeline.provider, capture_content=False)
    instrumentor.instrument(tracer=tracer)
    assert active_tracer() is tracer
    chain().invoke({"topic": "secret"})
    (chat,) = pipeline.chat_spans()
    assert A.GEN_AI_INPUT_MESSAGES not in chat.attributes  # the given tracer's content switch


# --- the model wrappers (``_tracing.model_context``) are owned and put back ---------------------
def _patched_methods() -> dict[tuple[type, str], Any]:
    from otel_mlflow._tracing import model_context

    return {(cls, name): cls.__dict__[name] for cls, name, _ in model_context._targets()
            if name in cls.__dict__}


def test_uninstrument_puts_every_original_langchain_method_back(
    pipeline: Pipeline, instrumentor: LangChainInstrumentor
) -> None:
    instrumentor.instrument(tracer_provider=pipeline.provider)
    wrapped = _patched_methods()
    assert len(wrapped) >= 8
    originals = {key: fn.__wrapped__ for key, fn in wrapped.items()}  # each one is our wrapper
    for fn in originals.values():  # the originals are LangChain's own functions
        assert fn.__module__.startswith("langchain_core.")
    instrumentor.uninstrument()
    after = _patched_methods()
    assert after.keys() == originals.keys()
    for key, fn in after.items():
        assert fn is originals[key], key
        assert not hasattr(fn, "__wrapped__")


def test_instrument_uninstrument_instrument_traces_again_with_the_wrappers(
    pipeline: Pipeline, instrumentor: LangChainInstrumentor
) -> None:
    tracer = OtelTracer(pipeline.provider)
    instrumentor.instrument(tracer=tracer)
    first = _patched_methods()
    instrumentor.uninstrument()
    assert all(not hasattr(fn, "__wrapped__") for fn in _patched_methods().values())
    chain().invoke({"topic": "off"})
    assert pipeline.chat_spans() == []
    instrumentor.instrument(tracer=tracer)  # the same tracer again: wrappers back, spans again
    again = _patched_methods()
    assert again.keys() == first.keys()
    assert all(fn.__wrapped__ is first[key].__wrapped__ for key, fn in again.items())
    assert "".join(chain().stream({"topic": "on again"})).startswith("echo:")
    chain().invoke({"topic": "invoke"})
    assert len(pipeline.chat_spans()) == 2
    from otel_mlflow._tracing import model_context
    from otel_mlflow._tracing import model_spans

    assert any(ref() is tracer for ref in model_spans._sources)


def test_a_method_re_patched_by_someone_else_is_left_to_them(
    pipeline: Pipeline, instrumentor: LangChainInstrumentor
) -> None:
    from langchain_core.language_models.chat_models import BaseChatModel

    from otel_mlflow._common import faults

    instrumentor.instrument(tracer_provider=pipeline.provider)
    ours = BaseChatModel.__dict__["astream"]

    def theirs(self: Any, *args: Any, **kwargs: Any) -> Any:
        return ours(self, *args, **kwargs)

    BaseChatModel.astream = theirs  # type: ignore[method-assign]
    before = faults.fault_counts().get("model_context.uninstall", 0)
    try:
        instrumentor.uninstrument()
        assert BaseChatModel.__dict__["astream"] is theirs
        assert faults.fault_counts().get("model_context.uninstall", 0) == before + 1
        original = ours.__wrapped__
        assert BaseChatModel.__dict__["stream"] is _patched_methods()[(BaseChatModel, "stream")]
        assert not hasattr(BaseChatModel.__dict__["stream"], "__wrapped__")
    finally:
        BaseChatModel.astream = original  # type: ignore[method-assign]
