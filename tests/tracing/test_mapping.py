"""Pure mapping over REAL LangChain payloads (captured from real runnables by a recorder).

Payloads come from: a prompt | FakeChatModel | parser chain, the real ``ChatVertexAI`` client
against the local Gemini emulator (sync and streamed), a ``create_agent`` agent, a LangGraph
``StateGraph`` with a routing function, a ``@tool`` and a ``BaseRetriever``.
"""

from __future__ import annotations

from typing import Any, TypedDict

import pytest
from langchain.agents import create_agent
from langchain_core.documents import Document
from langchain_core.messages import AIMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.outputs import ChatGeneration, Generation, LLMResult
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.tools import tool
from langgraph.graph import END, START, StateGraph
from opentelemetry.trace import SpanKind

from otel_mlflow._common import semconv as A
from otel_mlflow._tracing import genai_mapping as M
from otel_mlflow._tracing.content import messages as MSG
from otel_mlflow.testing.gemini_emulator import GeminiEmulator, Reply, Usage
from tests._support.fake_models import (
    CACHE_READ_TOKENS,
    REASONING_TOKENS,
    FakeChatModel,
    agent_responder,
)
from tests._support.gemini import gemini_emulator, vertexai_imported  # noqa: F401
from tests._support.recording import Call, Recorder


@tool
def get_weather(city: str) -> str:
    """Weather for a city."""
    return f"sunny in {city}"


def _record(runnable: Any, value: Any, **config: Any) -> Recorder:
    recorder = Recorder()
    runnable.invoke(value, config={"callbacks": [recorder], **config})
    return recorder


def _classify(call: Call) -> M.ChainClass:
    name = M.run_name(call.args[0], call.kwargs, "chain")
    return M.classify_chain(name, call.metadata, call.kwargs.get("tags"), call.parent_run_id is None)


# --- chain classification -----------------------------------------------------------------
def test_simple_chain_root_is_workflow_and_steps_keep_their_names() -> None:
    chain = ChatPromptTemplate.from_messages([("user", "{q}")]) | FakeChatModel() | StrOutputParser()
    rec = _record(chain, {"q": "hi"})
    result = {(_classify(c).span_name, _classify(c).operation) for c in rec.starts("on_chain_start")}
    assert result == {
        ("invoke_workflow RunnableSequence", A.OP_INVOKE_WORKFLOW),
        ("ChatPromptTemplate", None),
        ("StrOutputParser", None),
    }


def test_create_agent_payloads_agent_span_and_skipped_node_wrappers() -> None:
    model = FakeChatModel(responder=agent_responder("get_weather", {"city": "Tokyo"}))
    agent = create_agent(model, [get_weather], name="weather_agent")
    rec = _record(agent, {"messages": [("user", "weather?")]})
    chains = rec.starts("on_chain_start")
    classes = [(c.name, _classify(c)) for c in chains]
    root = [cls for name, cls in classes if name == "weather_agent"]
    assert len(root) == 1
    assert root[0].span_name == "invoke_agent weather_agent"
    assert root[0].operation == A.OP_INVOKE_AGENT
    assert root[0].agent_name == "weather_agent"
    # The real payloads hold the node wrappers "model" and "tools": skipped, nothing else is.
    skipped = sorted(name for name, cls in classes if cls.skip)
    assert skipped == ["model", "model", "tools"]
    assert all(not cls.skip for name, cls in classes if name not in ("model", "tools"))


def test_nested_agent_as_tool_is_its_own_agent() -> None:
    inner = create_agent(
        FakeChatModel(responder=agent_responder("get_weather", {"city": "Oslo"})),
        [get_weather],
        name="inner_agent",
    )

    @tool
    def ask_inner(question: str) -> str:
        """Ask the inner agent."""
        out = inner.invoke({"messages": [("user", question)]})
        return str(out["messages"][-1].content)

    outer = create_agent(
        FakeChatModel(responder=agent_responder("ask_inner", {"question": "weather?"})),
        [ask_inner],
        name="outer_agent",
    )
    rec = _record(outer, {"messages": [("user", "go")]})
    agents = sorted(
        _classify(c).span_name for c in rec.starts("on_chain_start") if _classify(c).agent_name
    )
    assert agents == ["invoke_agent inner_agent", "invoke_agent outer_agent"]


class _State(TypedDict):
    x: int


def _graph() -> Any:
    def step_a(state: _State) -> _State:
        return {"x": state["x"] + 1}

    def step_b(state: _State) -> _State:
        return {"x": state["x"] * 2}

    def route(state: _State) -> str:
        return "b" if state["x"] > 0 else END

    graph = StateGraph(_State)
    graph.add_node("a", step_a)
    graph.add_node("b", step_b)
    graph.add_edge(START, "a")
    graph.add_conditional_edges("a", route)
    graph.add_edge("b", END)
    return graph.compile(name="my_graph")


def test_plain_langgraph_graph_is_a_workflow_and_user_nodes_are_kept() -> None:
    rec = _record(_graph(), {"x": 1})
    names = {c.name: _classify(c) for c in rec.starts("on_chain_start")}
    # What LangGraph 1.x really reports: the graph, its nodes and the routing function.
    assert set(names) == {"my_graph", "a", "b", "route"}
    assert names["my_graph"].span_name == "invoke_workflow my_graph"
    # User nodes and the routing decision carry information: none is skipped.
    assert not any(cls.skip for cls in names.values())


def test_classification_priorities_table() -> None:
    table: list[tuple[str, dict[str, Any] | None, list[str] | None, bool, str | None]] = [
        ("AgentExecutor", None, None, False, "invoke_agent AgentExecutor"),
        ("AgentExecutor", None, None, True, "invoke_agent AgentExecutor"),
        ("mine", {M.AGENT_METADATA_KEY: True}, None, True, "invoke_agent mine"),
        ("ChannelWrite", None, [M.SKIP_TAG], False, None),
        ("x", None, None, True, "invoke_workflow x"),
        ("x", None, None, False, "x"),
    ]
    for name, metadata, tags, is_root, expected in table:
        cls = M.classify_chain(name, metadata, tags, is_root)
        assert (None if cls.skip else cls.span_name) == expected, (name, metadata, tags)
        assert cls.kind == SpanKind.INTERNAL


def test_run_name_priorities() -> None:
    assert M.run_name({"name": "S"}, {"name": "K"}, "d") == "K"
    assert M.run_name({"name": "S"}, {}, "d") == "S"
    assert M.run_name({"id": ["a", "b", "Tail"]}, {}, "d") == "Tail"
    assert M.run_name(None, {}, "d") == "d"


# --- LLM request / response ----------------------------------------------------------------
def _chat_start(rec: Recorder) -> Call:
    (call,) = rec.starts("on_chat_model_start")
    return call


def test_fake_model_request_attributes_from_real_payload() -> None:
    chain = ChatPromptTemplate.from_messages([("user", "{q}")]) | FakeChatModel(top_k=7)
    call = _chat_start(_record(chain, {"q": "hi"}))
    attrs: dict[str, Any] = {}
    model = M.request_attributes(call.kwargs["invocation_params"], call.metadata, attrs)
    assert model == "fake-gemini-2.5-flash"
    assert attrs == {
        A.GEN_AI_REQUEST_MODEL: "fake-gemini-2.5-flash",
        A.GEN_AI_REQUEST_TEMPERATURE: 0.2,
        A.GEN_AI_REQUEST_MAX_TOKENS: 256,
        A.GEN_AI_REQUEST_TOP_P: 0.9,
        A.GEN_AI_REQUEST_TOP_K: 7,
    }
    assert M.provider_name(call.metadata) == A.PROVIDER_GCP_VERTEX_AI


def test_vertexai_real_payload_request_and_response(gemini_emulator: GeminiEmulator) -> None:
    gemini_emulator.queue(
        Reply(
            text="Bonjour",
            usage=Usage(prompt=7, candidates=2, total=19, cached=3, thoughts=10),
            model_version="gemini-2.5-flash-001",
            finish_reason="STOP",
        )
    )
    llm = gemini_emulator.chat_model(
        "gemini-2.5-flash", temperature=0.3, top_p=0.8, top_k=20, max_output_tokens=64
    )
    rec = _record(llm, "Say hello in French")
    call = _chat_start(rec)
    attrs: dict[str, Any] = {}
    model = M.request_attributes(call.kwargs["invocation_params"], call.metadata, attrs)
    assert model == "gemini-2.5-flash"
    assert attrs[A.GEN_AI_REQUEST_TEMPERATURE] == 0.3
    assert attrs[A.GEN_AI_REQUEST_TOP_P] == 0.8
    assert attrs[A.GEN_AI_REQUEST_TOP_K] == 20
    assert attrs[A.GEN_AI_REQUEST_MAX_TOKENS] == 64
    assert M.provider_name(call.metadata) == A.PROVIDER_GCP_VERTEX_AI

    (end,) = [c for c in rec.calls if c.event == "on_llm_end"]
    out: dict[str, Any] = {}
    M.response_attributes(end.args[0], out)
    assert out[A.GEN_AI_USAGE_INPUT_TOKENS] == 7
    assert out[A.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] == 3
    assert out[A.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS] == 10
    # Total as reported (includes thinking tokens), never input + output.
    assert out[A.USAGE_TOTAL_TOKENS] == 19
    # langchain-google-vertexai reports the model it called as response_metadata["model_name"].
    assert out[A.GEN_AI_RESPONSE_MODEL] == "gemini-2.5-flash"
    assert out[A.GEN_AI_RESPONSE_FINISH_REASONS] == ("STOP",)


def test_vertexai_streamed_payload_usage(gemini_emulator: GeminiEmulator) -> None:
    gemini_emulator.queue(
        Reply(text="one two three", usage=Usage(prompt=4, candidates=3, total=12, thoughts=5))
    )
    recorder = Recorder()
    llm = gemini_emulator.chat_model("gemini-2.5-flash")
    text = "".join(str(c.content) for c in llm.stream("count", config={"callbacks": [recorder]}))
    assert text.replace(" ", "") == "onetwothree"
    assert [c for c in recorder.calls if c.event == "on_llm_new_token"]
    (end,) = [c for c in recorder.calls if c.event == "on_llm_end"]
    out: dict[str, Any] = {}
    M.response_attributes(end.args[0], out)
    assert out[A.GEN_AI_USAGE_INPUT_TOKENS] == 4
    assert out[A.USAGE_TOTAL_TOKENS] == 12
    assert out[A.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS] == 5


def test_vertexai_streamed_finish_reason_is_the_last_meaningful_one(
    gemini_emulator: GeminiEmulator,
) -> None:
    """LangChain concatenates the chunks' finish reasons; the span keeps the final ``STOP``."""
    gemini_emulator.queue(Reply(text="one two three", stream_chunks=3, finish_reason="STOP"))
    recorder = Recorder()
    llm = gemini_emulator.chat_model("gemini-2.5-flash")
    list(llm.stream("count", config={"callbacks": [recorder]}))
    (end,) = [c for c in recorder.calls if c.event == "on_llm_end"]
    generation = end.args[0].generations[0][0]
    # The real payload: two chunks without a finish reason, then STOP, merged as strings.
    raw = (generation.generation_info or {}).get("finish_reason") or (
        generation.message.response_metadata.get("finish_reason")
    )
    assert raw == "FINISH_REASON_UNSPECIFIEDFINISH_REASON_UNSPECIFIEDSTOP"
    out: dict[str, Any] = {}
    M.response_attributes(end.args[0], out)
    assert out[A.GEN_AI_RESPONSE_FINISH_REASONS] == ("STOP",)
    (message,) = MSG.output_messages(end.args[0].generations[0])
    assert message["finish_reason"] == "STOP"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("STOP", "STOP"),
        ("FINISH_REASON_UNSPECIFIEDSTOP", "STOP"),
        ("FINISH_REASON_UNSPECIFIEDFINISH_REASON_UNSPECIFIEDMAX_TOKENS", "MAX_TOKENS"),
        ("FINISH_REASON_UNSPECIFIEDFINISH_REASON_UNSPECIFIED", "FINISH_REASON_UNSPECIFIED"),
        ("FINISH_REASON_UNSPECIFIED", "FINISH_REASON_UNSPECIFIED"),
        ("STOPSTOP", "STOP"),
        ("stop", "stop"),
        ("end_turn", "end_turn"),
        ("length", "length"),
    ],
)
def test_clean_finish_reason_table(raw: str, expected: str) -> None:
    assert MSG.clean_finish_reason(raw) == expected


def test_fake_model_usage_from_real_llm_result() -> None:
    rec = _record(FakeChatModel(), "one two")
    (end,) = [c for c in rec.calls if c.event == "on_llm_end"]
    out: dict[str, Any] = {}
    gens = M.response_attributes(end.args[0], out)
    assert len(gens) == 1
    assert out[A.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] == CACHE_READ_TOKENS
    assert out[A.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS] == REASONING_TOKENS
    assert out[A.USAGE_TOTAL_TOKENS] == (
        out[A.GEN_AI_USAGE_INPUT_TOKENS] + out[A.GEN_AI_USAGE_OUTPUT_TOKENS] + REASONING_TOKENS
    )


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (  # generation_info usage (snake case, as Vertex's generation_info carries it)
            LLMResult(generations=[[Generation(text="x", generation_info={
                "usage_metadata": {"prompt_token_count": 5, "candidates_token_count": 2,
                                   "total_token_count": 9, "thoughts_token_count": 2},
                "finish_reason": "MAX_TOKENS"})]]),
            {A.GEN_AI_USAGE_INPUT_TOKENS: 5, A.GEN_AI_USAGE_OUTPUT_TOKENS: 2,
             A.USAGE_TOTAL_TOKENS: 9, A.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: 2,
             A.GEN_AI_RESPONSE_FINISH_REASONS: ("MAX_TOKENS",)},
        ),
        (  # OpenAI-style llm_output token_usage
            LLMResult(generations=[[Generation(text="x")]], llm_output={
                "token_usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7,
                                "completion_tokens_details": {"reasoning_tokens": 1}},
                "model_name": "gpt-x"}),
            {A.GEN_AI_USAGE_INPUT_TOKENS: 3, A.GEN_AI_USAGE_OUTPUT_TOKENS: 4,
             A.USAGE_TOTAL_TOKENS: 7, A.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: 1,
             A.GEN_AI_RESPONSE_MODEL: "gpt-x"},
        ),
        (  # message usage wins over llm_output
            LLMResult(generations=[[ChatGeneration(message=AIMessage(
                content="x", usage_metadata={"input_tokens": 1, "output_tokens": 1,
                                             "total_tokens": 2}))]],
                llm_output={"token_usage": {"prompt_tokens": 99}}),
            {A.GEN_AI_USAGE_INPUT_TOKENS: 1, A.GEN_AI_USAGE_OUTPUT_TOKENS: 1,
             A.USAGE_TOTAL_TOKENS: 2},
        ),
        (LLMResult(generations=[]), {}),
    ],
)
def test_usage_fallbacks(result: LLMResult, expected: dict[str, Any]) -> None:
    out: dict[str, Any] = {}
    M.response_attributes(result, out)
    assert out == expected


# --- metadata, tags, conversation ------------------------------------------------------------
def test_metadata_filter_and_conversation_from_real_agent_payload() -> None:
    model = FakeChatModel(responder=agent_responder("get_weather", {"city": "Tokyo"}))
    agent = create_agent(model, [get_weather], name="weather_agent")
    rec = _record(agent, {"messages": [("user", "w?")]}, metadata={"session_id": "s-1", "k": 1})
    call = _chat_start(rec) if len(rec.starts("on_chat_model_start")) == 1 else \
        rec.starts("on_chat_model_start")[0]
    kept = M.user_metadata(call.metadata)
    assert kept is not None
    assert kept["k"] == 1 and kept["lc_agent_name"] == "weather_agent"
    assert "langgraph_node" in kept
    assert not any(k.startswith("ls_") or k.startswith("langgraph_checkpoint") for k in kept)
    assert "lc_versions" not in kept and "checkpoint_ns" not in kept
    assert M.conversation_id(call.metadata) == "s-1"
    assert M.user_tags(call.kwargs.get("tags")) is None  # only per-step tags there


def test_conversation_id_priority() -> None:
    assert M.conversation_id({"conversation_id": "c", "thread_id": "t"}) == "t"
    assert M.conversation_id({"conversation_id": "c", "session_id": "s"}) == "s"
    assert M.conversation_id({"conversation_id": 5}) == "5"
    assert M.conversation_id({}) is None


def test_tool_and_retriever_real_payloads() -> None:
    rec = _record(get_weather, {"name": "get_weather", "args": {"city": "Kyoto"},
                                "id": "call-1", "type": "tool_call"})
    (start,) = rec.starts("on_tool_start")
    assert M.run_name(start.args[0], start.kwargs, "tool") == "get_weather"
    assert start.kwargs["tool_call_id"] == "call-1"
    assert start.kwargs["inputs"] == {"city": "Kyoto"}

    class Docs(BaseRetriever):
        def _get_relevant_documents(self, query: str, *, run_manager: Any) -> list[Document]:
            return [Document(page_content=query)]

    rec = _record(Docs(), "q")
    (start,) = rec.starts("on_retriever_start")
    # LangChain 1.x sends serialized=None for retrievers: the name comes from the kwargs.
    assert M.run_name(start.args[0], start.kwargs, "retriever") == "Docs"


def test_provider_mapping_table() -> None:
    assert M.provider_name({"ls_provider": "google_vertexai"}) == "gcp.vertex_ai"
    assert M.provider_name({"ls_provider": "google_genai"}) == "gcp.gemini"
    assert M.provider_name({"ls_provider": "somethingelse"}) == "somethingelse"
    assert M.provider_name({}) is None


def test_stop_sequences_and_non_numeric_params_ignored() -> None:
    attrs: dict[str, Any] = {}
    M.request_attributes({"temperature": "hot", "top_k": True, "stop": "END"}, None, attrs)
    assert attrs == {A.GEN_AI_REQUEST_STOP_SEQUENCES: ("END",)}
    assert M.llm_span(A.OP_CHAT, None) == "chat"
    assert M.llm_span(A.OP_CHAT, "m") == "chat m"
