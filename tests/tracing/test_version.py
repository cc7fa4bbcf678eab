"""The chain version on root spans: what changes it, what does not, overrides, sessions, users.

Real LangChain runnables (prompts, ``FakeChatModel`` from ``tests/_support``, branches, bound
tools, a real ``ChatVertexAI`` object that is only described, never called) traced by a real
``OtelTracer`` into the OTel SDK's in-memory exporter. The cross-process test runs the same
chains in two fresh interpreters.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.runnables import RunnableBranch, RunnableLambda
from langchain_core.tools import tool
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_mlflow._common import semconv as A
from otel_mlflow._common import settings
from otel_mlflow._tracing import version as version_module
from otel_mlflow._tracing.describe import describe
from otel_mlflow._tracing.handler import OtelTracer
from tests._support.fake_models import FakeChatModel

ROOT = Path(__file__).resolve().parents[2]
PROMPTS = {"v1": "You answer in one word.", "v2": "You answer in one short sentence."}


@tool
def get_weather(city: str) -> str:
    """The weather of a city."""
    return f"{city}: sunny"


@tool
def get_time(city: str) -> str:
    """The local time of a city."""
    return f"{city}: noon"


def make_chain(prompt_version: str = "v1", temperature: float = 0.2) -> Any:
    prompt = ChatPromptTemplate.from_messages(
        [("system", PROMPTS[prompt_version]), MessagesPlaceholder("history", optional=True),
         ("human", "{question}")])
    return prompt | FakeChatModel(temperature=temperature) | StrOutputParser()


class Traced:
    def __init__(self, **tracer_args: Any) -> None:
        self.memory = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(self.memory))
        self.tracer = OtelTracer(provider, **tracer_args)

    def roots(self) -> list[dict[str, Any]]:
        spans = sorted(self.memory.get_finished_spans(), key=lambda s: s.start_time or 0)
        return [dict(s.attributes or {}) for s in spans if (s.attributes or {}).get(A.ROOT)]

    def version(self, runnable: Any, inputs: Any, **config: Any) -> str:
        self.memory.clear()
        runnable.invoke(inputs, config={"callbacks": [self.tracer], **config})
        (root,) = self.roots()
        return str(root[A.CHAIN_VERSION])


def test_same_config_same_version_whatever_the_inputs() -> None:
    traced = Traced()
    first = traced.version(make_chain(), {"question": "誰?"})
    again = traced.version(make_chain(), {"question": "something else entirely"})
    assert first == again
    assert len(first) == 12 and int(first, 16) >= 0


@pytest.mark.parametrize("changed", [
    make_chain("v2", 0.2),                      # prompt text
    make_chain("v1", 0.7),                      # temperature
    (ChatPromptTemplate.from_messages([("system", PROMPTS["v1"]), ("human", "{question}")])
     | FakeChatModel(temperature=0.2) | StrOutputParser()),  # a placeholder removed
    (ChatPromptTemplate.from_messages([("system", PROMPTS["v1"]),
                                       MessagesPlaceholder("history", optional=True),
                                       ("human", "{question}")])
     | FakeChatModel(temperature=0.2, model="fake-gemini-2.5-pro") | StrOutputParser()),
    (ChatPromptTemplate.from_messages([("system", PROMPTS["v1"]),
                                       MessagesPlaceholder("history", optional=True),
                                       ("human", "{question}")])
     | FakeChatModel(temperature=0.2, top_k=20) | StrOutputParser()),
    make_chain() | RunnableLambda(lambda text: text.upper()),  # a step added
], ids=["prompt", "temperature", "placeholder", "model", "top_k", "step"])
def test_any_change_gives_a_new_version(changed: Any) -> None:
    traced = Traced()
    assert traced.version(make_chain(), {"question": "q"}) != traced.version(
        changed, {"question": "q"})


def test_bound_tools_are_part_of_the_version_with_names_and_schemas() -> None:
    model = FakeChatModel()
    one = model.bind_tools([get_weather])
    two = model.bind_tools([get_weather, get_time])
    text = json.dumps(describe(one))
    assert "get_weather" in text and '"city"' in text and "The weather of a city." in text
    traced = Traced()
    assert traced.version(one, "hi") != traced.version(two, "hi")
    assert traced.version(model.bind_tools([get_weather]), "hi") == traced.version(one, "hi")


def test_a_branch_taken_differently_per_input_keeps_one_version() -> None:
    short = make_chain("v1")
    long_ = make_chain("v2")
    app = RunnableBranch((lambda x: len(x["question"]) < 5, short), long_)
    traced = Traced()
    assert traced.version(app, {"question": "q"}) == traced.version(
        app, {"question": "a much longer question"})
    description = json.dumps(describe(app), ensure_ascii=False)
    assert PROMPTS["v1"] in description and PROMPTS["v2"] in description


def test_batch_stream_and_async_see_the_same_version() -> None:
    import asyncio

    traced = Traced()
    expected = traced.version(make_chain(), {"question": "q"})
    traced.memory.clear()
    make_chain().batch([{"question": "a"}, {"question": "b"}],
                       config={"callbacks": [traced.tracer]})
    list(make_chain().stream({"question": "c"}, config={"callbacks": [traced.tracer]}))
    asyncio.run(make_chain().ainvoke({"question": "d"}, config={"callbacks": [traced.tracer]}))
    assert [r[A.CHAIN_VERSION] for r in traced.roots()] == [expected] * 4


def test_a_model_called_alone_has_its_own_version() -> None:
    traced = Traced()
    cold, warm = FakeChatModel(temperature=0.0), FakeChatModel(temperature=1.0)
    assert traced.version(cold, "hi") != traced.version(warm, "hi")
    (root,) = traced.roots()
    assert json.loads(root[A.CHAIN_DESCRIPTION])["params"]["temperature"] == 1.0


def test_vertex_request_params_and_thinking_budget_are_described(vertexai_imported: None) -> None:
    from langchain_google_vertexai import ChatVertexAI

    model = ChatVertexAI(model="gemini-2.5-flash", temperature=0.3, top_p=0.8, top_k=16,
                         max_output_tokens=512, thinking_budget=128, project="test-project",
                         location="us-central1")
    node = describe(model)
    assert node["model"] == "gemini-2.5-flash"
    assert node["params"] == {"temperature": 0.3, "top_p": 0.8, "top_k": 16, "max_tokens": 512,
                              "thinking_budget": 128}


def test_a_bound_api_key_is_redacted_and_leaves_the_version_alone() -> None:
    traced = Traced()
    chain_a = make_chain() | FakeChatModel().bind(api_key="sk-live-aaaaaaaaaaaaaaaaaaaaaaaa")
    chain_b = make_chain() | FakeChatModel().bind(api_key="sk-live-bbbbbbbbbbbbbbbbbbbbbbbb")
    version_a = traced.version(chain_a, {"question": "q"})
    (root,) = traced.roots()
    assert "sk-live" not in root[A.CHAIN_DESCRIPTION]
    assert version_a == traced.version(chain_b, {"question": "q"})


def test_metadata_beats_argument_beats_env_beats_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    computed = Traced().version(make_chain(), {"question": "q"})
    monkeypatch.setenv(settings.APP_VERSION, "from-env")
    assert Traced().version(make_chain(), {"question": "q"}) == "from-env"
    traced = Traced(app_version="from-arg")
    assert traced.version(make_chain(), {"question": "q"}) == "from-arg"
    assert traced.version(make_chain(), {"question": "q"},
                          metadata={"otel_mlflow.version": "from-meta"}) == "from-meta"
    (root,) = traced.roots()
    assert json.loads(root[A.CHAIN_DESCRIPTION])["type"] == "RunnableSequence"
    monkeypatch.delenv(settings.APP_VERSION)
    assert Traced().version(make_chain(), {"question": "q"}) == computed


@pytest.mark.parametrize("metadata, session, user", [
    ({"session_id": "s-1", "user_id": "u-1"}, "s-1", "u-1"),
    ({"thread_id": "t-1"}, "t-1", None),
    ({"conversation_id": "c-1", "user_id": 42}, "c-1", "42"),
    ({"session_id": "s-1", "thread_id": "t-1"}, "s-1", None),
    ({"other": "x"}, None, None),
])
def test_session_and_user_from_metadata(metadata: dict[str, Any], session: str | None,
                                        user: str | None) -> None:
    traced = Traced()
    traced.version(make_chain(), {"question": "q"}, metadata=metadata)
    (root,) = traced.roots()
    assert root.get(A.SESSION_ID) == session
    assert root.get(A.USER_ID) == user


def test_described_once_per_chain_object(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []
    real = version_module.describe

    def counting(root: Any) -> Any:  # a spy around the real describer
        calls.append(root)
        return real(root)

    monkeypatch.setattr(version_module, "describe", counting)
    traced = Traced()
    chain = make_chain()
    for n in range(5):
        traced.version(chain, {"question": f"q{n}"})
    assert len(calls) == 1
    traced.version(make_chain(), {"question": "q"})  # a new object: described again
    assert len(calls) == 2


_CHILD = """
import json, sys
sys.path.insert(0, {root!r})
from tests.tracing.test_version import Traced, make_chain
order = json.loads(sys.argv[1])
traced = Traced()
out = {{}}
for prompt_version, temperature in order:
    key = f"{{prompt_version}}@{{temperature}}"
    out[key] = traced.version(make_chain(prompt_version, temperature),
                              {{"question": f"{{key}} in pid {{__import__('os').getpid()}}"}})
print(json.dumps(out))
"""


def test_versions_are_equal_across_processes_and_differ_across_configs() -> None:
    configs = [["v1", 0.1], ["v1", 0.9], ["v2", 0.1], ["v2", 0.9]]
    results = []
    for order, seed in ((configs, "1"), (list(reversed(configs)), "2")):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)}
        done = subprocess.run(
            [sys.executable, "-c", _CHILD.format(root=str(ROOT)), json.dumps(order)],
            capture_output=True, text=True, env=env, timeout=120, cwd=str(ROOT), check=True)
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    first, second = results
    assert first == second
    assert len(set(first.values())) == 4


def test_a_runnable_that_cannot_be_described_still_gets_its_span() -> None:
    from langchain_core.runnables import Runnable

    from otel_mlflow._common.faults import fault_counts

    class Odd(Runnable[Any, Any]):
        def invoke(self, input: Any, config: Any = None, **kwargs: Any) -> Any:
            return self._call_with_config(lambda x: x, input, config)

        @property
        def steps(self) -> Any:
            raise RuntimeError("no steps here")

    before = fault_counts().get("tracer.version", 0)
    traced = Traced()
    assert Odd().invoke("x", config={"callbacks": [traced.tracer],
                                     "metadata": {"user_id": "u"}}) == "x"
    (root,) = traced.roots()
    assert A.CHAIN_VERSION not in root and root[A.LC_NAME] == "Odd"
    assert fault_counts()["tracer.version"] == before + 1


def test_create_agent_versions_cover_model_tools_and_system_prompt() -> None:
    from langchain.agents import create_agent

    def agent(system: str, temperature: float, tools: list[Any]) -> Any:
        return create_agent(FakeChatModel(temperature=temperature), tools=tools,
                            system_prompt=system, name="weather_agent")

    base = describe(agent("Be brief.", 0.1, [get_weather]))
    assert describe(agent("Be brief.", 0.1, [get_weather])) == base
    for changed in (agent("Be thorough.", 0.1, [get_weather]), agent("Be brief.", 0.5,
                    [get_weather]), agent("Be brief.", 0.1, [get_weather, get_time])):
        assert describe(changed) != base
    text = json.dumps(base)
    assert "Be brief." in text and "get_weather" in text and '"temperature": 0.1' in text
