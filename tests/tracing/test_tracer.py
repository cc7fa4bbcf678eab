"""OtelTracer over real runnables, exported through the real OTel SDK to an in-memory exporter."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator
from typing import Any
from uuid import uuid4

import pytest
from langchain_core.agents import AgentAction, AgentFinish
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.documents import Document
from langchain_core.language_models.llms import create_base_retry_decorator
from langchain_core.messages import BaseMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.outputs import ChatResult
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import tool
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import SpanKind, StatusCode

from otel_mlflow._common import semconv as A
from otel_mlflow._common import faults as _faults
from otel_mlflow._common import settings as _config
from otel_mlflow._tracing.handler import OtelTracer
from tests._support.fake_models import REASONING_TOKENS, FakeChatModel
from tests._support.recording import Recorder

CANARY = "CANARY-7f3a9"


class Capture:
    def __init__(self, **tracer_kwargs: Any) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = OtelTracer(self.provider, **tracer_kwargs)

    def config(self, **extra: Any) -> Any:
        return {"callbacks": [self.tracer], **extra}

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def by_name(self, name: str) -> ReadableSpan:
        (span,) = [s for s in self.spans() if s.name == name]
        return span

    def roots(self) -> list[ReadableSpan]:
        return [s for s in self.spans() if (s.attributes or {}).get(A.ROOT)]


@pytest.fixture
def cap() -> Iterator[Capture]:
    capture = Capture()
    yield capture
    capture.provider.shutdown()


def _chain(model: FakeChatModel | None = None) -> Any:
    prompt = ChatPromptTemplate.from_messages([("system", "Be brief."), ("user", "{q}")])
    return prompt | (model or FakeChatModel()) | StrOutputParser()


def _children(spans: list[ReadableSpan], parent: ReadableSpan) -> list[str]:
    return sorted(
        s.name for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id
    )


def test_simple_chain_spans_tree_and_attributes(cap: Capture) -> None:
    out = _chain().invoke({"q": "hello there"}, config=cap.config(metadata={"thread_id": "T1"}))
    assert out == "echo: hello there"
    spans = cap.spans()
    assert len(spans) == 4
    root = cap.by_name("invoke_workflow RunnableSequence")
    assert root.parent is None
    assert root.kind == SpanKind.INTERNAL
    assert _children(spans, root) == [
        "ChatPromptTemplate", "StrOutputParser", "chat fake-gemini-2.5-flash",
    ]
    assert {s.context.trace_id for s in spans} == {root.context.trace_id}
    ra = root.attributes or {}
    assert ra[A.ROOT] is True
    assert ra[A.GEN_AI_OPERATION_NAME] == A.OP_INVOKE_WORKFLOW
    assert json.loads(ra[A.INPUT]) == {"q": "hello there"}
    assert json.loads(ra[A.OUTPUT]) == "echo: hello there"
    assert json.loads(ra[A.LC_METADATA]) == {"thread_id": "T1"}
    assert ra[A.GEN_AI_CONVERSATION_ID] == "T1"
    assert A.LC_PARENT_RUN_ID not in ra

    chat = cap.by_name("chat fake-gemini-2.5-flash")
    ca = chat.attributes or {}
    assert chat.kind == SpanKind.CLIENT
    assert ca[A.GEN_AI_OPERATION_NAME] == A.OP_CHAT
    assert ca[A.GEN_AI_PROVIDER_NAME] == "gcp.vertex_ai"
    assert ca[A.GEN_AI_REQUEST_MODEL] == "fake-gemini-2.5-flash"
    assert ca[A.GEN_AI_REQUEST_TEMPERATURE] == 0.2
    assert ca[A.GEN_AI_REQUEST_TOP_P] == 0.9
    assert ca[A.GEN_AI_REQUEST_TOP_K] == 40
    assert ca[A.GEN_AI_REQUEST_MAX_TOKENS] == 256
    assert ca[A.GEN_AI_RESPONSE_MODEL] == "fake-gemini-2.5-flash-001"
    assert ca[A.GEN_AI_RESPONSE_FINISH_REASONS] == ("STOP",)
    assert ca[A.USAGE_TOTAL_TOKENS] == (
        ca[A.GEN_AI_USAGE_INPUT_TOKENS] + ca[A.GEN_AI_USAGE_OUTPUT_TOKENS] + REASONING_TOKENS
    )
    assert ca[A.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] == 2
    assert ca[A.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS] == REASONING_TOKENS
    assert ca[A.LC_RUN_TYPE] == A.RUN_CHAT_MODEL
    assert ca[A.LC_PARENT_RUN_ID] == ra[A.LC_RUN_ID]
    assert json.loads(ca[A.GEN_AI_SYSTEM_INSTRUCTIONS]) == [{"type": "text", "content": "Be brief."}]
    assert json.loads(ca[A.GEN_AI_INPUT_MESSAGES]) == [
        {"role": "user", "parts": [{"type": "text", "content": "hello there"}]}
    ]
    assert json.loads(ca[A.GEN_AI_OUTPUT_MESSAGES])[0]["parts"][0]["content"] == "echo: hello there"
    assert A.TTFT_MS not in ca and A.STREAMED not in ca
    assert ca[A.GEN_AI_CONVERSATION_ID] == "T1"
    # Inherited metadata is written where it changes, not repeated on every child.
    assert A.LC_METADATA not in (cap.by_name("StrOutputParser").attributes or {})
    # Nothing was left current.
    assert trace.get_current_span() is trace.INVALID_SPAN
    assert cap.tracer.open_runs == 0


def test_japanese_text_is_readable_in_json_attributes(cap: Capture) -> None:
    _chain().invoke({"q": "東京の天気は？"}, config=cap.config())
    chat = cap.by_name("chat fake-gemini-2.5-flash")
    raw = (chat.attributes or {})[A.GEN_AI_INPUT_MESSAGES]
    assert "東京の天気は？" in raw and "\\u" not in raw
    root = cap.roots()[0]
    assert "東京の天気は？" in (root.attributes or {})[A.OUTPUT]


def test_stream_sets_ttft_only_when_streamed(cap: Capture) -> None:
    chunks = list(_chain().stream({"q": "a b c"}, config=cap.config()))
    assert "".join(chunks) == "echo: a b c"
    chat = cap.by_name("chat fake-gemini-2.5-flash")
    ca = chat.attributes or {}
    assert ca[A.STREAMED] is True
    assert 0 <= ca[A.TTFT_MS] <= (chat.end_time - chat.start_time) / 1e6
    assert [e.name for e in chat.events] == [A.EVENT_FIRST_TOKEN]
    assert ca[A.GEN_AI_USAGE_INPUT_TOKENS] > 0  # usage survives chunk merging
    assert len(cap.roots()) == 1


def test_batch_one_trace_per_input_and_nothing_current(cap: Capture) -> None:
    outs = _chain().batch([{"q": f"n{i}"} for i in range(5)], config=cap.config())
    assert outs == [f"echo: n{i}" for i in range(5)]
    roots = cap.roots()
    assert len(roots) == 5
    assert len({r.context.trace_id for r in roots}) == 5
    for root in roots:
        same = [s for s in cap.spans() if s.context.trace_id == root.context.trace_id]
        assert len(same) == 4
    assert trace.get_current_span() is trace.INVALID_SPAN
    _chain().invoke({"q": "after"}, config=cap.config())
    assert len({s.context.trace_id for s in cap.spans()}) == 6


def test_async_invoke_stream_and_batch(cap: Capture) -> None:
    chain = _chain()

    async def main() -> list[Any]:
        a = await chain.ainvoke({"q": "x"}, config=cap.config())
        b = [c async for c in chain.astream({"q": "y z"}, config=cap.config())]
        c = await chain.abatch([{"q": "1"}, {"q": "2"}], config=cap.config())
        return [a, "".join(b), c]

    assert asyncio.run(main()) == ["echo: x", "echo: y z", ["echo: 1", "echo: 2"]]
    roots = cap.roots()
    assert len(roots) == 4
    for root in roots:
        assert len([s for s in cap.spans() if s.context.trace_id == root.context.trace_id]) == 4
    streamed = [s for s in cap.spans() if (s.attributes or {}).get(A.STREAMED)]
    assert len(streamed) == 1


def test_nested_lambdas_nest_under_their_parent_runs(cap: Capture) -> None:
    inner = RunnableLambda(lambda x: x + 1, name="inner")
    middle = RunnableLambda(lambda x, config: inner.invoke(x, config=config) * 2, name="middle")
    outer = RunnableLambda(lambda x, config: middle.invoke(x, config=config) + 3, name="outer")
    assert outer.invoke(1, config=cap.config()) == 7
    spans = cap.spans()
    root = cap.by_name("invoke_workflow outer")
    middle_span = cap.by_name("middle")
    assert _children(spans, root) == ["middle"]
    assert _children(spans, middle_span) == ["inner"]


@tool
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


def test_tool_span(cap: Capture) -> None:
    call = {"name": "add", "args": {"a": 2, "b": 3}, "id": "call-9", "type": "tool_call"}
    result = add.invoke(call, config=cap.config())
    assert result.content == "5"
    span = cap.by_name("execute_tool add")
    at = span.attributes or {}
    assert span.kind == SpanKind.INTERNAL
    assert at[A.GEN_AI_OPERATION_NAME] == A.OP_EXECUTE_TOOL
    assert at[A.GEN_AI_TOOL_NAME] == "add"
    assert at[A.GEN_AI_TOOL_CALL_ID] == "call-9"
    assert at[A.GEN_AI_TOOL_DESCRIPTION] == "Add two numbers."
    assert json.loads(at[A.GEN_AI_TOOL_CALL_ARGUMENTS]) == {"a": 2, "b": 3}
    assert json.loads(at[A.GEN_AI_TOOL_CALL_RESULT]) == "5"
    assert at[A.ROOT] is True


def test_tool_description_is_redacted_by_each_tracer_s_own_rules() -> None:
    plain, strict = Capture(), Capture(redact_patterns=[r"two numbers"])
    for _ in range(2):  # the second call is served from the per-description memo
        for capture in (plain, strict, plain):
            add.invoke({"a": 1, "b": 2}, config=capture.config())
    for capture, expected in ((plain, "Add two numbers."), (strict, "Add [REDACTED].")):
        descriptions = {(s.attributes or {})[A.GEN_AI_TOOL_DESCRIPTION] for s in capture.spans()}
        assert descriptions == {expected}


class Docs(BaseRetriever):
    def _get_relevant_documents(self, query: str, *, run_manager: Any) -> list[Document]:
        return [Document(page_content=f"doc about {query}", metadata={"src": "kb"})]


def test_retriever_span(cap: Capture) -> None:
    chain = Docs() | RunnableLambda(lambda docs: docs[0].page_content, name="pick")
    assert chain.invoke("cats", config=cap.config()) == "doc about cats"
    span = cap.by_name("retrieval Docs")
    at = span.attributes or {}
    assert at[A.GEN_AI_OPERATION_NAME] == A.OP_RETRIEVAL
    assert json.loads(at[A.INPUT]) == "cats"
    assert json.loads(at[A.OUTPUT]) == [{"page_content": "doc about cats", "metadata": {"src": "kb"}}]
    assert span.parent is not None


class Boom(RuntimeError):
    pass


def test_errors_mark_spans_and_the_exception_is_unchanged(cap: Capture) -> None:
    err = Boom("bad things " + CANARY)
    model = FakeChatModel(responses=[err])
    with pytest.raises(Boom) as info:
        _chain(model).invoke({"q": "x"}, config=cap.config())
    assert info.value is err
    chat = cap.by_name("chat fake-gemini-2.5-flash")
    root = cap.roots()[0]
    for span in (chat, root):
        at = span.attributes or {}
        assert span.status.status_code == StatusCode.ERROR
        assert at[A.ERROR_TYPE] == "Boom"
        assert CANARY in at[A.ERROR_MESSAGE]
        (event,) = [e for e in span.events if e.name == "exception"]
        assert (event.attributes or {})["exception.type"] == "Boom"
        assert CANARY in (event.attributes or {})["exception.message"]
    assert cap.tracer.open_runs == 0


def test_content_off_exports_no_content_anywhere() -> None:
    capture = Capture(capture_content=False)
    model = FakeChatModel(responses=["reply " + CANARY, Boom("fail " + CANARY)])
    chain = _chain(model)
    chain.invoke({"q": "question " + CANARY},
                 config=capture.config(metadata={"note": CANARY}, tags=["t1"]))
    with pytest.raises(Boom):
        chain.invoke({"q": CANARY}, config=capture.config())
    add.invoke({"name": "add", "args": {"a": 1, "b": 2}, "id": "c", "type": "tool_call"},
               config=capture.config(metadata={"note": CANARY}))
    spans = capture.spans()
    assert len(spans) == 4 + 3 + 1  # ok chain, failed chain (no parser), tool
    for span in spans:
        blob = span.to_json()
        assert CANARY not in blob, span.name
        at = span.attributes or {}
        for key in (A.INPUT, A.OUTPUT, A.GEN_AI_INPUT_MESSAGES, A.GEN_AI_OUTPUT_MESSAGES,
                    A.GEN_AI_SYSTEM_INSTRUCTIONS, A.LC_METADATA, A.ERROR_MESSAGE):
            assert key not in at
    errors = [s for s in spans if s.status.status_code == StatusCode.ERROR]
    assert errors and all((s.attributes or {})[A.ERROR_TYPE] == "Boom" for s in errors)
    for span in errors:
        (event,) = [e for e in span.events if e.name == "exception"]
        assert dict(event.attributes or {}) == {"exception.type": "Boom"}
    # Non-content facts stay: model, tokens, tags.
    chat = [s for s in spans if s.name.startswith("chat")][0]
    assert (chat.attributes or {})[A.GEN_AI_USAGE_INPUT_TOKENS] > 0
    assert (capture.roots()[0].attributes or {})[A.LC_TAGS] == ("t1",)
    capture.provider.shutdown()


def test_content_switch_env_and_argument_priority(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(_config.CAPTURE_MESSAGE_CONTENT, "false")
    assert OtelTracer(TracerProvider()).capture_content is False
    assert OtelTracer(TracerProvider(), capture_content=True).capture_content is True
    monkeypatch.delenv(_config.CAPTURE_MESSAGE_CONTENT)
    assert OtelTracer(TracerProvider()).capture_content is True


def test_root_run_is_child_of_the_ambient_span(cap: Capture) -> None:
    web = cap.provider.get_tracer("web")
    with web.start_as_current_span("GET /ask") as request_span:
        _chain().invoke({"q": "x"}, config=cap.config())
        assert trace.get_current_span() is request_span
    root = cap.roots()[0]
    assert root.parent is not None
    assert root.parent.span_id == request_span.get_span_context().span_id
    assert root.context.trace_id == request_span.get_span_context().trace_id


def test_secrets_in_metadata_and_params_are_redacted(cap: Capture) -> None:
    secret = "AIzaSyA1234567890abcdefghijklmnopqrstuv"
    _chain().invoke({"q": "x", "api_key": secret},
                    config=cap.config(metadata={"google_api_key": secret}))
    for span in cap.spans():
        assert secret not in span.to_json()


def test_span_for_run_and_skipped_runs_anchor() -> None:
    capture = Capture()
    tracer = capture.tracer
    run_id = uuid4()
    tracer.on_chain_start(None, {"x": 1}, run_id=run_id, name="root")
    span = tracer.span_for_run(run_id)
    assert span is not None and span.is_recording()
    # A skipped create_agent node wrapper resolves to its nearest kept ancestor.
    node = uuid4()
    tracer.on_chain_start(None, {}, run_id=node, parent_run_id=run_id, name="model",
                          metadata={"lc_agent_name": "a", "langgraph_node": "model"})
    assert tracer.span_for_run(node) is span
    child = uuid4()
    tracer.on_chain_start(None, {}, run_id=child, parent_run_id=node, name="leaf")
    tracer.on_chain_end({}, run_id=child)
    tracer.on_chain_end({}, run_id=node)
    tracer.on_chain_end({}, run_id=run_id)
    assert tracer.span_for_run(run_id) is None
    names = {s.name: s for s in capture.spans()}
    assert set(names) == {"invoke_workflow root", "leaf"}
    assert names["leaf"].parent.span_id == names["invoke_workflow root"].context.span_id
    capture.provider.shutdown()


def test_max_open_runs_evicts_the_oldest() -> None:
    capture = Capture(max_open_runs=3)
    tracer = capture.tracer
    ids = [uuid4() for _ in range(5)]
    for i, run_id in enumerate(ids):
        tracer.on_chain_start(None, {}, run_id=run_id, name=f"r{i}")
    assert tracer.open_runs == 3
    ended = {s.name: s for s in capture.spans()}
    assert set(ended) == {"invoke_workflow r0", "invoke_workflow r1"}
    for span in ended.values():
        assert span.status.status_code == StatusCode.ERROR
        assert (span.attributes or {})[A.ERROR_TYPE] == A.RUN_EVICTED_ERROR
    assert _faults.fault_counts().get("tracer.run_evicted", 0) >= 2
    # Ending an evicted run later is harmless.
    tracer.on_chain_end({}, run_id=ids[0])
    for run_id in ids[2:]:
        tracer.on_chain_end({}, run_id=run_id)
    assert tracer.open_runs == 0
    assert len(capture.spans()) == 5
    capture.provider.shutdown()


def test_ttl_ends_runs_that_never_end() -> None:
    capture = Capture(run_ttl_seconds=0.2)
    tracer = capture.tracer
    stale = uuid4()
    tracer.on_chain_start(None, {}, run_id=stale, name="stuck")
    time.sleep(0.3)
    fresh = uuid4()
    tracer.on_chain_start(None, {}, run_id=fresh, name="fresh")
    (span,) = capture.spans()
    assert span.name == "invoke_workflow stuck"
    assert (span.attributes or {})[A.ERROR_TYPE] == A.RUN_TIMEOUT_ERROR
    assert span.status.status_code == StatusCode.ERROR
    assert tracer.open_runs == 1
    tracer.on_chain_end({}, run_id=fresh)
    capture.provider.shutdown()


def test_agent_action_and_finish_events_from_real_objects(cap: Capture) -> None:
    tracer = cap.tracer
    run_id = uuid4()
    tracer.on_chain_start(None, {"input": "q"}, run_id=run_id, name="AgentExecutor")
    tracer.on_agent_action(AgentAction(tool="add", tool_input={"a": 1}, log="thinking"),
                           run_id=run_id)
    tracer.on_agent_finish(AgentFinish(return_values={"output": "2"}, log="done"), run_id=run_id)
    tracer.on_chain_end({"output": "2"}, run_id=run_id)
    span = cap.by_name("invoke_agent AgentExecutor")
    assert (span.attributes or {})[A.GEN_AI_OPERATION_NAME] == A.OP_INVOKE_AGENT
    action, finish = span.events
    assert action.name == A.EVENT_AGENT_ACTION
    assert (action.attributes or {})[A.GEN_AI_TOOL_NAME] == "add"
    assert json.loads((action.attributes or {})[A.GEN_AI_TOOL_CALL_ARGUMENTS]) == {"a": 1}
    assert finish.name == A.EVENT_AGENT_FINISH
    assert json.loads((finish.attributes or {})[A.OUTPUT]) == {"output": "2"}


class FlakyModel(FakeChatModel):
    """Fails once, then answers; retries through LangChain's own retry decorator."""

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None,
                  **kwargs: Any) -> ChatResult:
        attempts = {"n": 0}
        retry = create_base_retry_decorator(
            error_types=[ConnectionError], max_retries=3, run_manager=run_manager
        )

        @retry
        def call() -> ChatResult:
            attempts["n"] += 1
            if attempts["n"] == 1:
                raise ConnectionError("transient")
            return super(FlakyModel, self)._generate(messages, stop, run_manager, **kwargs)

        return call()


def test_retry_becomes_an_event(cap: Capture) -> None:
    FlakyModel().invoke("hi", config=cap.config())
    chat = cap.by_name("chat fake-gemini-2.5-flash")
    (event,) = [e for e in chat.events if e.name == A.EVENT_RETRY]
    assert (event.attributes or {})[A.RETRY_ATTEMPT] == 1
    assert (event.attributes or {})["exception.type"] == "ConnectionError"


def test_faults_never_reach_the_chain(cap: Capture, caplog: pytest.LogCaptureFixture) -> None:
    before = _faults.fault_counts().get("tracer.on_llm_end", 0)
    run_id = uuid4()
    cap.tracer.on_chat_model_start(None, [[]], run_id=run_id, invocation_params=None)

    class Garbage:
        @property
        def generations(self) -> Any:
            raise ValueError("broken response object")

    with caplog.at_level(logging.WARNING, logger="otel_mlflow"):
        cap.tracer.on_llm_end(Garbage(), run_id=run_id)
    assert _faults.fault_counts()["tracer.on_llm_end"] == before + 1
    # Events for unknown runs are ignored.
    cap.tracer.on_chain_end({}, run_id=uuid4())
    cap.tracer.on_llm_new_token("x", run_id=uuid4())
    cap.tracer.on_text("ignored", run_id=uuid4())


def test_active_mlflow_run_is_recorded_on_the_root(
    cap: Capture, embedded_tracking_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow
    from mlflow.tracking._tracking_service import utils as tracking_utils

    # The tracking URI through the environment, and MLflow's process-wide URI restored after
    # the test: a relative sqlite URI left set would send later tests to this temp dir's store.
    monkeypatch.setattr(tracking_utils, "_tracking_uri", None)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", embedded_tracking_uri)
    with mlflow.start_run() as run:
        _chain().invoke({"q": "x"}, config=cap.config())
    _chain().invoke({"q": "y"}, config=cap.config())
    first, second = sorted(cap.roots(), key=lambda s: s.start_time or 0)
    assert (first.attributes or {})[A.MLFLOW_RUN_ID] == run.info.run_id
    assert (first.attributes or {})[A.MLFLOW_EXPERIMENT_ID] == run.info.experiment_id
    assert A.MLFLOW_RUN_ID not in (second.attributes or {})
    children = [s for s in cap.spans() if not (s.attributes or {}).get(A.ROOT)]
    assert all(A.MLFLOW_RUN_ID not in (s.attributes or {}) for s in children)


def test_handler_attached_to_a_model_only_makes_that_run_a_root(cap: Capture) -> None:
    recorder = Recorder()
    model = FakeChatModel(callbacks=[cap.tracer])
    chain = ChatPromptTemplate.from_messages([("user", "{q}")]) | model
    chain.invoke({"q": "x"}, config={"callbacks": [recorder]})
    (span,) = cap.spans()
    assert (span.attributes or {})[A.ROOT] is True
    assert A.LC_PARENT_RUN_ID in (span.attributes or {})


def test_mutations_between_runs_are_seen(cap: Capture) -> None:
    """Objects serialized once for a composition are never reused across user code."""
    inner = RunnableLambda(lambda d: {"items": d["items"] + ["inner"]}, name="inner")

    def outer_body(d: dict[str, Any], config: Any) -> dict[str, Any]:
        d["items"].append("mutated-before-child")
        out = inner.invoke(d, config=config)
        out["items"].append("mutated-after-child")
        return out

    outer = RunnableLambda(outer_body, name="outer")
    outer.invoke({"items": ["start"]}, config=cap.config())
    inner_span = cap.by_name("inner")
    root = cap.by_name("invoke_workflow outer")
    assert json.loads((root.attributes or {})[A.INPUT]) == {"items": ["start"]}
    assert json.loads((inner_span.attributes or {})[A.INPUT]) == {
        "items": ["start", "mutated-before-child"]
    }
    assert json.loads((inner_span.attributes or {})[A.OUTPUT]) == {
        "items": ["start", "mutated-before-child", "inner"]
    }
    assert json.loads((root.attributes or {})[A.OUTPUT]) == {
        "items": ["start", "mutated-before-child", "inner", "mutated-after-child"]
    }


def test_sequence_input_and_output_match_first_and_last_step(cap: Capture) -> None:
    chain = RunnableLambda(lambda d: dict(d, a=1), name="first") | RunnableLambda(
        lambda d: sorted(d), name="last"
    )
    assert chain.invoke({"z": 0}, config=cap.config()) == ["a", "z"]
    root = cap.roots()[0]
    first, last = cap.by_name("first"), cap.by_name("last")
    assert (root.attributes or {})[A.INPUT] == (first.attributes or {})[A.INPUT]
    assert (root.attributes or {})[A.OUTPUT] == (last.attributes or {})[A.OUTPUT]
    assert json.loads((root.attributes or {})[A.OUTPUT]) == ["a", "z"]


def test_odd_payloads_keep_the_tree_and_the_result(cap: Capture) -> None:
    class BadStr(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no str for you")

    class Weird:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    def body(x: Any, config: Any) -> Any:
        return inner.invoke(x, config=config)

    inner = RunnableLambda(lambda x: [x, Weird(), b"\xff", float("nan")], name="inner")
    outer = RunnableLambda(body, name="outer")
    result = outer.invoke({1: "int key", ("t",): Weird()},
                          config=cap.config(metadata={3: "x", "ok": Weird()}, tags=[5]))
    assert isinstance(result[1], Weird)
    spans = cap.spans()
    assert len(spans) == 2
    root = cap.by_name("invoke_workflow outer")
    assert cap.by_name("inner").parent.span_id == root.context.span_id
    for span in spans:
        for key in (A.INPUT, A.OUTPUT):
            json.loads((span.attributes or {})[key])
    assert (root.attributes or {})[A.LC_TAGS] == ("5",)

    failing = RunnableLambda(lambda x: (_ for _ in ()).throw(BadStr()), name="bad")
    with pytest.raises(BadStr):
        failing.invoke(1, config=cap.config())
    bad = cap.by_name("invoke_workflow bad")
    assert bad.status.status_code == StatusCode.ERROR
    assert (bad.attributes or {})[A.ERROR_TYPE] == "BadStr"
    assert cap.tracer.open_runs == 0


def test_a_fault_while_opening_a_run_still_yields_a_span(
    cap: Capture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from otel_mlflow._tracing import genai_mapping as _mapping

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("mapping bug")

    monkeypatch.setattr(_mapping, "classify_chain", broken)
    before = _faults.fault_counts().get("tracer.on_chain_start", 0)
    assert _chain().invoke({"q": "x"}, config=cap.config()) == "echo: x"
    assert _faults.fault_counts()["tracer.on_chain_start"] > before
    spans = cap.spans()
    assert len(spans) == 4
    assert len({s.context.trace_id for s in spans}) == 1
    assert cap.tracer.open_runs == 0


def test_text_completion_llm_span(cap: Capture) -> None:
    from langchain_core.language_models import FakeListLLM

    llm = FakeListLLM(responses=["completed text"])
    assert llm.invoke("complete this", config=cap.config()) == "completed text"
    (span,) = cap.spans()
    at = span.attributes or {}
    assert span.name == "text_completion"  # FakeListLLM reports no model name
    assert at[A.GEN_AI_OPERATION_NAME] == A.OP_TEXT_COMPLETION
    assert at[A.LC_RUN_TYPE] == A.RUN_LLM
    assert json.loads(at[A.GEN_AI_INPUT_MESSAGES]) == [
        {"role": "user", "parts": [{"type": "text", "content": "complete this"}]}
    ]
    assert json.loads(at[A.GEN_AI_OUTPUT_MESSAGES])[0]["parts"][0]["content"] == "completed text"


def test_huge_content_is_capped_with_a_marker() -> None:
    capture = Capture(max_attribute_chars=2000)
    big = "x" * 10_000_000
    out = RunnableLambda(lambda s: len(s), name="count").invoke(big, config=capture.config())
    assert out == 10_000_000
    (span,) = capture.spans()
    text = (span.attributes or {})[A.INPUT]
    assert len(text) <= 2000
    data = json.loads(text)
    assert "10000000" in json.dumps(data)  # the original size is stated
    capture.provider.shutdown()


def test_user_redaction_rules_and_mask_hook() -> None:
    seen: list[str | None] = []

    def mask(key: str | None, value: Any) -> Any:
        seen.append(key)
        return "[masked]" if key == "email" else value

    capture = Capture(redact_keys=["^internal_"], redact_patterns=[r"ORDER-\d+"], mask=mask)
    RunnableLambda(lambda d: "ok", name="step").invoke(
        {"email": "a@b.c", "internal_note": "hush", "text": "see ORDER-12345 now"},
        config=capture.config(),
    )
    (span,) = capture.spans()
    text = (span.attributes or {})[A.INPUT]
    data = json.loads(text)
    assert data["email"] == "[masked]"
    assert "hush" not in text and "ORDER-12345" not in text
    assert "email" in seen
    capture.provider.shutdown()


# --- the direct attribute path (``_span_ops``) against the SDK's public API --------------------
class _ReadingSampler(Sampler):
    """A sampler that looks at attributes: start attributes must reach ``start_span``."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    def should_sample(self, parent_context: Any, trace_id: int, name: str, kind: Any = None,
                      attributes: Any = None, links: Any = None,
                      trace_state: Any = None) -> SamplingResult:
        self.seen.append(dict(attributes or {}))
        return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes, None)

    def get_description(self) -> str:
        return "reading"


class _OnStartReader(SpanProcessor):
    """A processor reading attributes in ``on_start``."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        self.seen.append(dict(span.attributes or {}))


def _run_and_collect(provider: TracerProvider) -> dict[str, dict[str, Any]]:
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = OtelTracer(provider)
    _chain().invoke({"q": "hello"}, config={"callbacks": [tracer], "tags": ["t1"],
                                            "metadata": {"thread_id": "T"}})
    ids = (A.LC_RUN_ID, A.LC_PARENT_RUN_ID)  # fresh per run
    return {s.name: {k: v for k, v in (s.attributes or {}).items() if k not in ids}
            for s in exporter.get_finished_spans()}


def test_direct_attribute_writes_give_the_same_spans_as_the_public_api() -> None:
    direct = _run_and_collect(TracerProvider())
    sampler = _ReadingSampler()
    via_sampler = _run_and_collect(TracerProvider(sampler=sampler))
    reader = _OnStartReader()
    hooked = TracerProvider()
    hooked.add_span_processor(reader)
    via_hook = _run_and_collect(hooked)
    assert len(direct) == 4
    assert direct == via_sampler == via_hook
    chat = direct["chat fake-gemini-2.5-flash"]
    assert chat[A.GEN_AI_RESPONSE_FINISH_REASONS] == ("STOP",)
    assert chat[A.LC_TAGS] == ("t1",)
    # A sampler or an on_start hook that reads attributes sees the start attributes.
    assert any(A.GEN_AI_INPUT_MESSAGES in seen for seen in sampler.seen)
    assert any(A.GEN_AI_INPUT_MESSAGES in seen for seen in reader.seen)


def test_span_limits_still_apply() -> None:
    limits = SpanLimits(max_span_attribute_length=16, max_span_attributes=6)
    spans = _run_and_collect(TracerProvider(span_limits=limits))
    for attrs in spans.values():
        assert len(attrs) <= 6
        assert all(len(v) <= 16 for v in attrs.values() if isinstance(v, str))
