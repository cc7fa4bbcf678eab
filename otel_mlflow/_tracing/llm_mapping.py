"""LLM request and response -> GenAI attributes of the ``chat`` / ``text_completion`` span (pure).

Request parameters, in priority order: LangChain's normalised ``ls_*`` metadata
(``ls_model_name``, ``ls_temperature``, ``ls_max_tokens``, ``ls_stop``), then
``invocation_params`` (``model``/``model_name``/``model_id``, ``temperature``, ``top_p``,
``top_k``, ``max_tokens``/``max_output_tokens``/``max_new_tokens``, ``stop``, ``seed``,
penalties, ``n``/``candidate_count``, and thinking: ``thinking_config`` then
``thinking_budget`` / ``thinking_level`` (or ``reasoning_effort``) / ``include_thoughts``).
Provider: ``ls_provider`` mapped by ``PROVIDER_BY_LS_PROVIDER``, else kept as is; for
``google_genai`` (``ChatGoogleGenerativeAI``) by backend (``gemini_mapping.genai_provider``).

Token usage, in priority order: ``AIMessage.usage_metadata`` of the first generation, then its
``generation_info["usage_metadata"]`` (snake or camel case, as Vertex reports it), then
``llm_output["token_usage"]`` / ``llm_output["usage"]``. The total is taken as reported, never
recomputed (Gemini's total includes thinking tokens). Output tokens are LangChain's: for
``ChatGoogleGenerativeAI`` they include the thinking tokens (``candidates + thoughts``), for
``ChatVertexAI`` they are the candidates' alone; ``gen_ai.usage.reasoning.output_tokens`` is
the thinking part in both.

Gemini response extras (grounding, safety ratings, a blocked prompt): ``gemini_mapping``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from otel_mlflow._common import semconv as A
from otel_mlflow._tracing import gemini_mapping as G
from otel_mlflow._tracing.content.messages import generation_finish_reason


# Numeric request params copied as they are: (invocation param, span attribute).
_NUMERIC_PARAMS = (
    ("top_p", A.GEN_AI_REQUEST_TOP_P),
    ("top_k", A.GEN_AI_REQUEST_TOP_K),
    ("seed", A.GEN_AI_REQUEST_SEED),
    ("frequency_penalty", A.GEN_AI_REQUEST_FREQUENCY_PENALTY),
    ("presence_penalty", A.GEN_AI_REQUEST_PRESENCE_PENALTY),
)

def provider_name(metadata: Mapping[str, Any] | None,
                  serialized: Mapping[str, Any] | None = None) -> str | None:
    """``gen_ai.provider.name`` from ``ls_provider`` (``google_genai``: by backend)."""
    if not metadata:
        return None
    ls = metadata.get("ls_provider")
    if not ls:
        return None
    if ls == G.LS_PROVIDER_GENAI:
        return G.genai_provider(serialized)
    return A.PROVIDER_BY_LS_PROVIDER.get(ls, str(ls))


def _first(params: Mapping[str, Any], keys: Sequence[str]) -> Any:
    for key in keys:
        value = params.get(key)
        if value is not None:
            return value
    return None


def _number(value: Any) -> int | float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    return None


def request_attributes(
    invocation_params: Mapping[str, Any] | None,
    metadata: Mapping[str, Any] | None,
    attrs: dict[str, Any],
) -> str | None:
    """Add request parameters to ``attrs``; return the request model (or None)."""
    meta = metadata or {}
    params = invocation_params or {}
    model = meta.get("ls_model_name") or _first(params, ("model", "model_name", "model_id"))
    if model is not None:
        model = str(model)
        attrs[A.GEN_AI_REQUEST_MODEL] = model
    temperature = _number(meta.get("ls_temperature"))
    if temperature is None:
        temperature = _number(params.get("temperature"))
    if temperature is not None:
        attrs[A.GEN_AI_REQUEST_TEMPERATURE] = temperature
    max_tokens = _number(meta.get("ls_max_tokens"))
    if max_tokens is None:
        max_tokens = _number(_first(params, ("max_tokens", "max_output_tokens", "max_new_tokens")))
    if max_tokens is not None:
        attrs[A.GEN_AI_REQUEST_MAX_TOKENS] = max_tokens
    if params:
        for key, attr in _NUMERIC_PARAMS:
            value = _number(params.get(key))
            if value is not None:
                attrs[attr] = value
        _choices_and_thinking(params, attrs)
    stop = meta.get("ls_stop") or params.get("stop") or params.get("stop_sequences")
    if stop:
        if isinstance(stop, str):
            stop = [stop]
        if isinstance(stop, (list, tuple)):
            attrs[A.GEN_AI_REQUEST_STOP_SEQUENCES] = tuple(str(s) for s in stop)
    return model




def _choices_and_thinking(params: Mapping[str, Any], attrs: dict[str, Any]) -> None:
    """Candidate count (when not 1) and thinking settings (``thinking_config`` wins).

    Plain ``get``s first: this runs on every LLM start, and most calls set none of them.
    """
    count = params.get("n")
    if count is None:
        count = params.get("candidate_count")
    if type(count) is int and count != 1:
        attrs[A.GEN_AI_REQUEST_CHOICE_COUNT] = count
    budget = params.get("thinking_budget")
    level = params.get("thinking_level") or params.get("reasoning_effort")
    include = params.get("include_thoughts")
    config = params.get("thinking_config")
    if config and isinstance(config, Mapping):
        budget = _first(config, ("thinking_budget", "thinkingBudget")) or budget
        level = _first(config, ("thinking_level", "thinkingLevel")) or level
        found = _first(config, ("include_thoughts", "includeThoughts"))
        include = include if found is None else found
    if budget is not None and _number(budget) is not None:
        attrs[A.REQUEST_THINKING_BUDGET] = int(budget)
    if level is not None:
        attrs[A.REQUEST_THINKING_LEVEL] = str(getattr(level, "value", level))
    if type(include) is bool:
        attrs[A.REQUEST_INCLUDE_THOUGHTS] = include


def _get(mapping: Any, *keys: str) -> Any:
    # ``type is dict`` first: the ABC isinstance check costs more than the lookups.
    if type(mapping) is not dict and not isinstance(mapping, Mapping):
        return None
    for key in keys:
        value = mapping.get(key)
        if value is not None:
            return value
    return None


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value == value and abs(value) != float("inf"):
        return int(value)
    return None


def _usage_from_mapping(usage: Mapping[str, Any], attrs: dict[str, Any]) -> bool:
    if "input_tokens" in usage and "output_tokens" in usage:
        return _standard_usage(usage, attrs)
    input_tokens = _int(
        _get(usage, "input_tokens", "prompt_tokens", "prompt_token_count", "promptTokenCount")
    )
    output_tokens = _int(
        _get(
            usage,
            "output_tokens",
            "completion_tokens",
            "candidates_token_count",
            "candidatesTokenCount",
        )
    )
    total = _int(_get(usage, "total_tokens", "total_token_count", "totalTokenCount"))
    cache_read = _int(
        _get(_get(usage, "input_token_details") or {}, "cache_read")
        if "input_token_details" in usage
        else _get(usage, "cached_content_token_count", "cachedContentTokenCount")
    )
    reasoning = _int(
        _get(_get(usage, "output_token_details") or {}, "reasoning")
        if "output_token_details" in usage
        else _get(usage, "thoughts_token_count", "thoughtsTokenCount", "reasoning_tokens")
    )
    if cache_read is None:
        cache_read = _int(_get(_get(usage, "prompt_tokens_details") or {}, "cached_tokens"))
    if reasoning is None:
        reasoning = _int(_get(_get(usage, "completion_tokens_details") or {}, "reasoning_tokens"))
    found = False
    for key, value in (
        (A.GEN_AI_USAGE_INPUT_TOKENS, input_tokens),
        (A.GEN_AI_USAGE_OUTPUT_TOKENS, output_tokens),
        (A.USAGE_TOTAL_TOKENS, total),
        (A.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, cache_read),
        (A.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS, reasoning),
    ):
        if value is not None:
            attrs[key] = value
            found = True
    return found


def _standard_usage(usage: Mapping[str, Any], attrs: dict[str, Any]) -> bool:
    """LangChain's ``UsageMetadata`` shape (the common case): direct lookups only."""
    value = _int(usage["input_tokens"])
    if value is not None:
        attrs[A.GEN_AI_USAGE_INPUT_TOKENS] = value
    value = _int(usage["output_tokens"])
    if value is not None:
        attrs[A.GEN_AI_USAGE_OUTPUT_TOKENS] = value
    value = _int(usage.get("total_tokens"))
    if value is not None:
        attrs[A.USAGE_TOTAL_TOKENS] = value
    details = usage.get("input_token_details")
    if details:
        value = _int(details.get("cache_read"))
        if value is not None:
            attrs[A.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] = value
    details = usage.get("output_token_details")
    if details:
        value = _int(details.get("reasoning"))
        if value is not None:
            attrs[A.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS] = value
    return True


def response_attributes(
    response: Any, attrs: dict[str, Any], reasons_out: list[str | None] | None = None
) -> list[Any]:
    """Add response model, finish reasons and usage of an ``LLMResult`` to ``attrs``.

    Returns the generations of the first prompt (for output messages); ``reasons_out``, when
    given, receives each generation's finish reason (or None), so they are read once.
    """
    all_generations = getattr(response, "generations", None) or []
    generations = all_generations[0] if all_generations else []
    llm_output = getattr(response, "llm_output", None) or {}
    first = generations[0] if generations else None
    message = getattr(first, "message", None) if first is not None else None
    info = getattr(first, "generation_info", None) if first is not None else None

    meta = getattr(message, "response_metadata", None) if message is not None else None
    model = (
        _get(meta, "model_name", "model", "model_version")
        or _get(info, "model_name", "model")
        or _get(llm_output, "model_name", "model", "model_id")
    )
    if model is not None:
        attrs[A.GEN_AI_RESPONSE_MODEL] = str(model)
    response_id = _get(meta, "id", "response_id") or _get(llm_output, "id")
    if isinstance(response_id, str):
        attrs[A.GEN_AI_RESPONSE_ID] = response_id

    each = [generation_finish_reason(g) for g in generations]
    if reasons_out is not None:
        reasons_out.extend(each)
    reasons = [r for r in each if r is not None]
    if reasons:
        attrs[A.GEN_AI_RESPONSE_FINISH_REASONS] = tuple(reasons)

    if meta or info or llm_output:
        G.response_extras(meta, info, llm_output, attrs)
    usage = getattr(message, "usage_metadata", None) if message is not None else None
    if not (usage and _usage_from_mapping(usage, attrs)):
        usage = _get(info, "usage_metadata")
        if not (usage and _usage_from_mapping(usage, attrs)):
            usage = _get(llm_output, "token_usage", "usage", "usage_metadata")
            if usage:
                _usage_from_mapping(usage, attrs)
    return generations
