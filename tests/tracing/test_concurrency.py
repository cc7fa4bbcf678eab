"""One shared OtelTracer under concurrency: every span tree equals the LangChain run tree.

The LangChain run tree comes from a separate recording handler (``parent_run_id`` as LangChain
reported it). For each exported span, its OTel parent must be the span of its nearest recorded
ancestor that has a span (create_agent's node wrappers are skipped on purpose), all spans of one
root run share one trace id, and no trace holds spans of another root run.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import pytest
from langchain.agents import create_agent
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import tool
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_mlflow._common import semconv as A
from otel_mlflow._tracing.handler import OtelTracer
from tests._support.fake_models import FakeChatModel, agent_responder
from tests._support.recording import Recorder


class Setup:
    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = OtelTracer(self.provider)
        self.recorder = Recorder()
        self.config: Any = {"callbacks": [self.tracer, self.recorder]}

    def check(self, expected_roots: int) -> list[ReadableSpan]:
        """Assert span trees == run trees; return the spans."""
        spans = list(self.exporter.get_finished_spans())
        parents = self.recorder.parents()
        by_run: dict[UUID, ReadableSpan] = {}
        for span in spans:
            run_id = UUID(str((span.attributes or {})[A.LC_RUN_ID]))
            assert run_id not in by_run, "one span per run"
            by_run[run_id] = span
        assert set(by_run) <= set(parents)

        def root_of(run_id: UUID) -> UUID:
            while parents.get(run_id) is not None:
                run_id = parents[run_id]  # type: ignore[assignment]
            return run_id

        def kept_ancestor(run_id: UUID) -> UUID | None:
            parent = parents.get(run_id)
            while parent is not None and parent not in by_run:
                parent = parents.get(parent)
            return parent

        roots = {root_of(r) for r in by_run}
        assert len(roots) == expected_roots
        trace_of_root = {r: by_run[r].context.trace_id for r in roots}
        assert len(set(trace_of_root.values())) == expected_roots, "one trace per root run"
        for run_id, span in by_run.items():
            assert span.context.trace_id == trace_of_root[root_of(run_id)]
            ancestor = kept_ancestor(run_id)
            if ancestor is None:
                assert span.parent is None
                assert (span.attributes or {}).get(A.ROOT) is True
            else:
                assert span.parent is not None
                assert span.parent.span_id == by_run[ancestor].context.span_id
        assert self.tracer.open_runs == 0
        return spans


@pytest.fixture
def setup() -> Iterator[Setup]:
    s = Setup()
    yield s
    s.provider.shutdown()


def _chain() -> Any:
    prompt = ChatPromptTemplate.from_messages([("user", "{q}")])
    return prompt | FakeChatModel() | StrOutputParser()


@tool
def lookup(key: str) -> str:
    """Look a key up."""
    return key.upper()


def _nested() -> Any:
    """A lambda that calls a tool and the chat model (the benchmark's nested workload)."""
    model = FakeChatModel()

    def body(q: str, config: Any) -> str:
        found = lookup.invoke({"key": q}, config=config)
        return str(model.invoke(found, config=config).content)

    return RunnableLambda(body, name="nested")


def test_32_threads_x_50_invokes(setup: Setup) -> None:
    chain = _chain()
    nested = _nested()
    results: dict[int, list[str]] = {}
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            out = []
            for j in range(50):
                runnable = chain if j % 2 else nested
                value = {"q": f"t{i}-{j}"} if j % 2 else f"t{i}-{j}"
                out.append(runnable.invoke(value, config=setup.config))
            results[i] = out
            assert trace.get_current_span() is trace.INVALID_SPAN
        except BaseException as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors
    assert results[7][1] == "echo: t7-1"
    assert results[7][0] == "echo: T7-0"
    spans = setup.check(expected_roots=32 * 50)
    assert len(spans) == 32 * 25 * 4 + 32 * 25 * 3


def test_200_concurrent_ainvoke(setup: Setup) -> None:
    chain = _chain()

    async def main() -> list[str]:
        return await asyncio.gather(
            *(chain.ainvoke({"q": f"a{i}"}, config=setup.config) for i in range(200))
        )

    outs = asyncio.run(main())
    assert outs == [f"echo: a{i}" for i in range(200)]
    assert len(setup.check(expected_roots=200)) == 800


def test_batch_and_abatch_then_nothing_current(setup: Setup) -> None:
    chain = _chain()
    assert chain.batch([{"q": str(i)} for i in range(20)], config=setup.config)[3] == "echo: 3"
    assert trace.get_current_span() is trace.INVALID_SPAN

    async def main() -> list[str]:
        return await chain.abatch([{"q": str(i)} for i in range(20)], config=setup.config)

    assert asyncio.run(main())[5] == "echo: 5"
    assert trace.get_current_span() is trace.INVALID_SPAN
    setup.check(expected_roots=40)
    # A following invoke starts a new trace, not a child of a dead batch span.
    chain.invoke({"q": "after"}, config=setup.config)
    spans = setup.check(expected_roots=41)
    last_root = max((s for s in spans if (s.attributes or {}).get(A.ROOT)),
                    key=lambda s: s.start_time or 0)
    assert last_root.parent is None


def test_interleaved_stream_and_astream(setup: Setup) -> None:
    chain = _chain()
    streams = [chain.stream({"q": f"s{i} x y"}, config=setup.config) for i in range(10)]
    outputs = ["" for _ in streams]
    # Pull the generators round-robin so their runs interleave on one thread.
    active = set(range(len(streams)))
    while active:
        for i in list(active):
            try:
                outputs[i] += next(streams[i])
            except StopIteration:
                active.discard(i)
    assert outputs == [f"echo: s{i} x y" for i in range(10)]

    async def consume(i: int) -> str:
        return "".join([c async for c in chain.astream({"q": f"as{i}"}, config=setup.config)])

    async def main() -> list[str]:
        return await asyncio.gather(*(consume(i) for i in range(30)))

    assert asyncio.run(main()) == [f"echo: as{i}" for i in range(30)]
    spans = setup.check(expected_roots=40)
    streamed = [s for s in spans if (s.attributes or {}).get(A.STREAMED)]
    assert len(streamed) == 40


def test_concurrent_nested_agents(setup: Setup) -> None:
    inner = create_agent(
        FakeChatModel(responder=agent_responder("lookup", {"key": "k"})), [lookup],
        name="inner_agent",
    )

    @tool
    def ask_inner(question: str) -> str:
        """Ask the inner agent."""
        return str(inner.invoke({"messages": [("user", question)]})["messages"][-1].content)

    outer = create_agent(
        FakeChatModel(responder=agent_responder("ask_inner", {"question": "q"})), [ask_inner],
        name="outer_agent",
    )

    async def main() -> list[Any]:
        return await asyncio.gather(
            *(outer.ainvoke({"messages": [("user", f"go {i}")]}, config=setup.config)
              for i in range(10))
        )

    asyncio.run(main())
    threads = [
        threading.Thread(
            target=outer.invoke, args=({"messages": [("user", f"t{i}")]},),
            kwargs={"config": setup.config},
        )
        for i in range(10)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    spans = setup.check(expected_roots=20)
    agents = [s for s in spans if s.name == "invoke_agent inner_agent"]
    assert len(agents) == 20
    # Each inner agent sits under an ask_inner tool span of its own trace.
    names = {s.context.span_id: s for s in spans}
    for agent in agents:
        assert agent.parent is not None
        assert names[agent.parent.span_id].name == "execute_tool ask_inner"
