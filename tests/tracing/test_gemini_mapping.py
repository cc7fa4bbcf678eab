"""Gemini specifics of the mapping as tables (pure): the ChatGoogleGenerativeAI backend as
``gen_ai.provider.name``, thinking parameters, grounding / safety / blocked-prompt attributes.

The serialized payloads are what LangChain hands ``on_chat_model_start`` for real
``ChatGoogleGenerativeAI`` objects (``dumpd``), built here from real constructor calls.
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.load import dumpd
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, LLMResult

from otel_mlflow._common import semconv as A
from otel_mlflow._tracing import genai_mapping as M
from otel_mlflow._tracing.gemini_mapping import MAX_ITEM_CHARS, MAX_ITEMS

GENAI = {"ls_provider": "google_genai", "ls_model_name": "gemini-2.5-flash"}


def _serialized(**kwargs: Any) -> dict[str, Any]:
    from langchain_google_genai import ChatGoogleGenerativeAI

    options: dict[str, Any] = {"model": "gemini-2.5-flash", "base_url": "http://127.0.0.1:9"}
    options.update(kwargs)
    return dumpd(ChatGoogleGenerativeAI(**options))


@pytest.mark.parametrize(("kwargs", "env", "provider"), [
    ({"vertexai": True, "project": "p", "api_key": "k"}, None, A.PROVIDER_GCP_VERTEX_AI),
    ({"vertexai": False, "api_key": "k"}, None, A.PROVIDER_GCP_GEMINI),
    ({"api_key": "k"}, None, A.PROVIDER_GCP_GEMINI),
    ({"project": "p", "api_key": "k"}, None, A.PROVIDER_GCP_VERTEX_AI),
    ({"api_key": "k"}, "true", A.PROVIDER_GCP_VERTEX_AI),
    ({"project": "p", "api_key": "k"}, "false", A.PROVIDER_GCP_GEMINI),
    ({"vertexai": False, "api_key": "k"}, "1", A.PROVIDER_GCP_GEMINI),  # explicit wins
])
def test_genai_backend_is_the_provider(kwargs: dict[str, Any], env: str | None, provider: str,
                                       monkeypatch: pytest.MonkeyPatch, no_adc: None) -> None:
    if env is not None:
        monkeypatch.setenv("GOOGLE_GENAI_USE_VERTEXAI", env)
    serialized = _serialized(**kwargs)
    assert M.provider_name(GENAI, serialized) == provider


def test_other_providers_ignore_serialized() -> None:
    assert M.provider_name({"ls_provider": "google_vertexai"}, {"kwargs": {"vertexai": False}}) \
        == A.PROVIDER_GCP_VERTEX_AI
    assert M.provider_name(GENAI, None) == A.PROVIDER_GCP_GEMINI


@pytest.mark.parametrize(("params", "expected"), [
    ({"thinking_budget": 128, "include_thoughts": True},
     {A.REQUEST_THINKING_BUDGET: 128, A.REQUEST_INCLUDE_THOUGHTS: True}),
    ({"thinking_level": "high"}, {A.REQUEST_THINKING_LEVEL: "high"}),
    ({"reasoning_effort": "low"}, {A.REQUEST_THINKING_LEVEL: "low"}),
    ({"thinking_budget": 10, "thinking_config": {"thinking_budget": 512, "include_thoughts": False}},
     {A.REQUEST_THINKING_BUDGET: 512, A.REQUEST_INCLUDE_THOUGHTS: False}),
    ({"n": 3}, {A.GEN_AI_REQUEST_CHOICE_COUNT: 3}),
    ({"n": 1, "thinking_budget": None}, {}),
])
def test_thinking_and_choice_params(params: dict[str, Any], expected: dict[str, Any]) -> None:
    attrs: dict[str, Any] = {}
    M.request_attributes({"model": "gemini-2.5-flash", **params}, GENAI, attrs)
    extra = {k: v for k, v in attrs.items() if k != A.GEN_AI_REQUEST_MODEL}
    assert extra == expected


def _result(meta: dict[str, Any], llm_output: dict[str, Any] | None = None) -> LLMResult:
    return LLMResult(generations=[[ChatGeneration(message=AIMessage("x", response_metadata=meta))]],
                     llm_output=llm_output)


def test_grounding_is_bounded() -> None:
    chunks = [{"web": {"uri": f"https://s{i}.example/" + "p" * 2000}} for i in range(50)]
    meta = {"grounding_metadata": {"web_search_queries": ["q"] * 40, "grounding_chunks": chunks}}
    attrs: dict[str, Any] = {}
    M.response_attributes(_result(meta), attrs)
    assert len(attrs[A.GEMINI_GROUNDING_QUERIES]) == MAX_ITEMS
    sources = attrs[A.GEMINI_GROUNDING_SOURCES]
    assert len(sources) == MAX_ITEMS and all(len(s) == MAX_ITEM_CHARS for s in sources)


def test_vertexai_safety_ratings_shape() -> None:
    # ChatVertexAI's shape: probability_label, blocked flag.
    meta = {"safety_ratings": [{"category": "HARM_CATEGORY_HATE_SPEECH",
                                "probability_label": "MEDIUM", "blocked": True}]}
    attrs: dict[str, Any] = {}
    M.response_attributes(_result(meta), attrs)
    assert attrs[A.GEMINI_SAFETY_RATINGS] == ("HATE_SPEECH:MEDIUM:blocked",)
    assert A.ERROR_TYPE not in attrs  # a blocked candidate is a finish reason, not a failure


def test_blocked_prompt_sets_error_type() -> None:
    attrs: dict[str, Any] = {}
    M.response_attributes(_result({}, {"prompt_feedback": {"block_reason": "PROHIBITED_CONTENT"}}),
                          attrs)
    assert attrs[A.GEMINI_BLOCK_REASON] == "PROHIBITED_CONTENT"
    assert attrs[A.ERROR_TYPE] == A.PROMPT_BLOCKED_ERROR
