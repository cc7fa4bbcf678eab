"""Version identity on the record side: root-span attributes -> tags, params, prompts, LoggedModel.

Table tests over the attributes the tracer writes (descriptions made by the real describer from
real LangChain runnables), and ``build_record`` over real OTel SDK spans.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder, PromptTemplate
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_mlflow._common import semconv as A
from otel_mlflow._common.canonical import canonical_json, short_hash
from otel_mlflow._record import build_record
from otel_mlflow._record import schema as R
from otel_mlflow._record.model import TraceRecord
from otel_mlflow._record.version import prompts_of, version_fields
from otel_mlflow._tracing.describe import describe
from tests._support.fake_models import FakeChatModel


def root_attrs(runnable: Any, **extra: Any) -> dict[str, Any]:
    text = canonical_json(describe(runnable))
    return {A.CHAIN_VERSION: short_hash(text), A.CHAIN_DESCRIPTION: text,
            A.CHAIN_NAME: "qa", **extra}


CHAT = ChatPromptTemplate.from_messages(
    [("system", "You are {who}."), MessagesPlaceholder("history"), ("human", "{question}")])


def test_prompts_json_holds_templates_not_rendered_prompts() -> None:
    (prompt,) = prompts_of(describe(CHAT | FakeChatModel()))
    assert prompt["name"] == "prompt"
    assert prompt["messages"] == [{"role": "system", "template": "You are {who}."},
                                  {"placeholder": "history"},
                                  {"role": "user", "template": "{question}"}]
    assert prompt["input_variables"] == ["history", "question", "who"]
    assert len(prompt["hash"]) == 12


def test_unnamed_prompts_are_numbered_and_named_ones_keep_their_name() -> None:
    second = PromptTemplate.from_template("Summarise: {text}")
    named = ChatPromptTemplate.from_template("Q: {q}").with_config(run_name="ignored")
    named_prompt = ChatPromptTemplate.from_template("Q: {q}")
    named_prompt.name = "question_prompt"
    chain = CHAT | FakeChatModel() | StrOutputParser() | second | named | named_prompt
    names = [p["name"] for p in prompts_of(describe(chain))]
    assert names == ["prompt", "prompt_2", "prompt_3", "question_prompt"]


def test_a_prompt_hash_changes_with_its_text_only() -> None:
    base = prompts_of(describe(CHAT))[0]["hash"]
    other_model = prompts_of(describe(CHAT | FakeChatModel(temperature=0.9)))[0]["hash"]
    edited = ChatPromptTemplate.from_messages(
        [("system", "You are {who}!"), MessagesPlaceholder("history"), ("human", "{question}")])
    assert base == other_model
    assert prompts_of(describe(edited))[0]["hash"] != base


def test_tags_params_and_logged_model_params() -> None:
    chain = CHAT | FakeChatModel(temperature=0.4).bind_tools([]) | FakeChatModel(
        model="fake-gemini-2.5-pro", temperature=0.0)
    attrs = root_attrs(chain, **{A.SESSION_ID: "s", A.USER_ID: "u"})
    tags, params, chain_facts = version_fields(attrs, {"service.version": "2.1.0"})
    assert tags == {R.TAG_CHAIN_VERSION: attrs[A.CHAIN_VERSION], R.TAG_APP_VERSION: "2.1.0",
                    R.TAG_SESSION_ID: "s", R.TAG_USER_ID: "u"}
    prompt_hash = chain_facts["prompts"][0]["hash"]
    assert params == {"prompt.prompt": prompt_hash}
    model_params = chain_facts["params"]
    assert model_params["chain.name"] == "qa"
    assert model_params["model"] == "fake-gemini-2.5-flash"
    assert model_params["temperature"] == "0.4"
    assert model_params["model_2.model"] == "fake-gemini-2.5-pro"
    assert model_params["model_2.temperature"] == "0.0"
    assert model_params["prompt.prompt"] == prompt_hash
    assert json.loads(model_params["chain.description"]) == json.loads(attrs[A.CHAIN_DESCRIPTION])


@pytest.mark.parametrize("attrs, expected_tags", [
    ({}, {}),
    ({A.SESSION_ID: "s"}, {R.TAG_SESSION_ID: "s"}),
    ({A.CHAIN_VERSION: "release-7"}, {R.TAG_CHAIN_VERSION: "release-7"}),
    ({A.CHAIN_VERSION: "v", A.CHAIN_DESCRIPTION: "{not json"}, {R.TAG_CHAIN_VERSION: "v"}),
    ({A.CHAIN_VERSION: "v", A.MLFLOW_MODEL_ID: "m-1"},
     {R.TAG_CHAIN_VERSION: "v", R.TAG_MODEL_ID: "m-1"}),
])
def test_partial_inputs_give_what_they_can(attrs: dict[str, Any],
                                           expected_tags: dict[str, str]) -> None:
    tags, params, chain = version_fields(attrs, {})
    assert tags == expected_tags
    assert params == {}
    assert bool(chain) == (A.CHAIN_VERSION in attrs)
    if A.MLFLOW_MODEL_ID in attrs:
        assert chain["model_id"] == "m-1"


def test_build_record_carries_the_version_and_survives_the_spool_round_trip() -> None:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.version": "3.0"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    attrs = root_attrs(CHAT | FakeChatModel(), **{A.ROOT: True})
    provider.get_tracer("t").start_span("invoke_workflow qa", attributes=attrs).end()
    record = build_record(memory.get_finished_spans())
    assert record.tags[R.TAG_CHAIN_VERSION] == attrs[A.CHAIN_VERSION]
    assert record.tags[R.TAG_APP_VERSION] == "3.0"
    assert record.params["prompt.prompt"] == record.chain["prompts"][0]["hash"]
    again = TraceRecord.from_json(record.to_json())
    assert again.chain == record.chain
