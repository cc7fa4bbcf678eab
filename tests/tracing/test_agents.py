"""Agents: a real ``create_agent`` graph driving a fake tool-calling chat model and real tools."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import tool
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from otel_mlflow._common import semconv as A
from otel_mlflow._tracing.handler import OtelTracer
from tests._support.fake_models import FakeChatModel, agent_responder


@tool
def get_weather(city: str) -> str:
    """Weather for a city."""
    return f"sunny in {city}"


@tool
def explode(reason: str) -> str:
    """A tool that fails."""
    raise ValueError(f"tool failed: {reason}")


class Capture:
    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = OtelTracer(self.provider)

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())


@pytest.fixture
def cap() -> Iterator[Capture]:
    capture = Capture()
    yield capture
    capture.provider.shutdown()


def tree(spans: list[ReadableSpan]) -> Any:
    """Nested (name, [children]) tuples, children in start order."""
    by_parent: dict[int | None, list[ReadableSpan]] = {}
    for span in spans:
        key = span.parent.span_id if span.parent is not None else None
        by_parent.setdefault(key, []).append(span)

    def build(span: ReadableSpan) -> Any:
        kids = sorted(by_parent.get(span.context.span_id, []), key=lambda s: s.start_time or 0)
        return (span.name, [build(k) for k in kids])

    return [build(root) for root in by_parent.get(None, [])]


def weather_agent(name: str = "weather_agent") -> Any:
    model = FakeChatModel(responder=agent_responder("get_weather", {"city": "Tokyo"}))
    return create_agent(model, [get_weather], name=name)


def test_agent_tree_is_invoke_agent_with_model_and_tool_children(cap: Capture) -> None:
    out = weather_agent().invoke(
        {"messages": [("user", "weather?")]},
        config={"callbacks": [cap.tracer], "metadata": {"thread_id": "conv-1"}},
    )
    assert out["messages"][-1].content == "done: sunny in Tokyo"
    chat = "chat fake-gemini-2.5-flash"
    assert tree(cap.spans()) == [
        ("invoke_agent weather_agent", [
            (chat, []),
            ("execute_tool get_weather", []),
            (chat, []),
        ])
    ]
    spans = {s.name: s for s in cap.spans()}
    agent = spans["invoke_agent weather_agent"]
    at = agent.attributes or {}
    assert at[A.GEN_AI_OPERATION_NAME] == A.OP_INVOKE_AGENT
    assert at[A.GEN_AI_AGENT_NAME] == "weather_agent"
    assert at[A.ROOT] is True
    assert at[A.GEN_AI_CONVERSATION_ID] == "conv-1"
    tool_span = spans["execute_tool get_weather"]
    ta = tool_span.attributes or {}
    assert json.loads(ta[A.GEN_AI_TOOL_CALL_ARGUMENTS]) == {"city": "Tokyo"}
    assert json.loads(ta[A.GEN_AI_TOOL_CALL_RESULT]) == "sunny in Tokyo"
    assert ta[A.GEN_AI_TOOL_CALL_ID].startswith("call_")
    chats = [s for s in cap.spans() if s.name == chat]
    first_out = json.loads((chats[0].attributes or {})[A.GEN_AI_OUTPUT_MESSAGES])
    assert first_out[0]["parts"][0]["type"] == "tool_call"
    assert first_out[0]["parts"][0]["id"] == ta[A.GEN_AI_TOOL_CALL_ID]
    assert (chats[0].attributes or {})[A.GEN_AI_RESPONSE_FINISH_REASONS] == ("TOOL_CALLS",)
    second_in = json.loads((chats[1].attributes or {})[A.GEN_AI_INPUT_MESSAGES])
    assert second_in[-1]["parts"][0]["type"] == "tool_call_response"
    assert cap.tracer.open_runs == 0


def test_nested_agents_agent_as_a_tool(cap: Capture) -> None:
    inner = weather_agent("inner_agent")

    @tool
    def ask_inner(question: str) -> str:
        """Ask the weather agent."""
        result = inner.invoke({"messages": [("user", question)]})
        return str(result["messages"][-1].content)

    outer = create_agent(
        FakeChatModel(responder=agent_responder("ask_inner", {"question": "weather?"})),
        [ask_inner],
        name="outer_agent",
    )
    outer.invoke({"messages": [("user", "go")]}, config={"callbacks": [cap.tracer]})
    chat = "chat fake-gemini-2.5-flash"
    assert tree(cap.spans()) == [
        ("invoke_agent outer_agent", [
            (chat, []),
            ("execute_tool ask_inner", [
                ("invoke_agent inner_agent", [
                    (chat, []),
                    ("execute_tool get_weather", []),
                    (chat, []),
                ]),
            ]),
            (chat, []),
        ])
    ]


def test_agent_inside_a_workflow_and_streamed(cap: Capture) -> None:
    agent = weather_agent()
    app = RunnableLambda(
        lambda q, config: agent.invoke({"messages": [("user", q)]}, config=config),
        name="app",
    )
    list(app.stream("weather?", config={"callbacks": [cap.tracer]}))
    (root,) = tree(cap.spans())
    assert root[0] == "invoke_workflow app"
    assert [child[0] for child in root[1]] == ["invoke_agent weather_agent"]


def test_agent_async_stream(cap: Capture) -> None:
    agent = weather_agent()

    async def main() -> int:
        n = 0
        async for _ in agent.astream({"messages": [("user", "w")]},
                                     config={"callbacks": [cap.tracer]}, stream_mode="messages"):
            n += 1
        return n

    assert asyncio.run(main()) > 0
    (root,) = tree(cap.spans())
    assert root[0] == "invoke_agent weather_agent"
    assert [c[0] for c in root[1]] == [
        "chat fake-gemini-2.5-flash", "execute_tool get_weather", "chat fake-gemini-2.5-flash",
    ]
    streamed = [s for s in cap.spans() if (s.attributes or {}).get(A.STREAMED)]
    assert streamed  # stream_mode="messages" streams the model


def test_failing_tool_inside_agent_is_an_error_span(cap: Capture) -> None:
    agent = create_agent(
        FakeChatModel(responder=agent_responder("explode", {"reason": "x"})), [explode],
        name="fragile",
    )
    with pytest.raises(ValueError, match="tool failed"):
        agent.invoke({"messages": [("user", "go")]}, config={"callbacks": [cap.tracer]})
    spans = {s.name: s for s in cap.spans()}
    tool_span = spans["execute_tool explode"]
    assert tool_span.status.status_code == StatusCode.ERROR
    assert (tool_span.attributes or {})[A.ERROR_TYPE] == "ValueError"
    assert spans["invoke_agent fragile"].status.status_code == StatusCode.ERROR
    assert cap.tracer.open_runs == 0
