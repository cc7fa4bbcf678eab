"""Gemini specifics of an LLM span (pure apart from one environment read): backend, extras.

Backend of ``ChatGoogleGenerativeAI`` (LangChain ``ls_provider`` ``google_genai`` for both), so
``gen_ai.provider.name`` is ``gcp.vertex_ai`` or ``gcp.gemini``, in the client's own priority
order (``langchain_google_genai._common`` ``_determine_backend``), read from the serialized
constructor arguments LangChain hands the start callback:

1. ``vertexai`` set explicitly (True / False);
2. the ``GOOGLE_GENAI_USE_VERTEXAI`` environment variable (true/1/yes, false/0/no);
3. ``credentials`` or ``project`` given -> Vertex AI;
4. else the Gemini Developer API.

Response extras (``ChatGoogleGenerativeAI`` and ``ChatVertexAI``), from the first generation's
``response_metadata`` / ``generation_info`` and the result's ``llm_output``:

- ``grounding_metadata``: web search queries and source URIs (web, retrieved context, maps),
  at most ``MAX_ITEMS`` each, each cut to ``MAX_ITEM_CHARS``;
- ``safety_ratings``: ``CATEGORY:PROBABILITY`` per rating (``:blocked`` appended when blocked);
- ``prompt_feedback.block_reason`` (a blocked prompt: no candidates): the reason, and
  ``error.type`` ``otel_mlflow.prompt_blocked`` with the message ``prompt blocked (REASON)``
  (the handler marks the span failed).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from otel_mlflow._common import semconv as A
from otel_mlflow._common import settings as _config

LS_PROVIDER_GENAI = "google_genai"
MAX_ITEMS = 32
MAX_ITEM_CHARS = 1024


def genai_provider(serialized: Mapping[str, Any] | None) -> str:
    """``gcp.vertex_ai`` or ``gcp.gemini`` for a ``ChatGoogleGenerativeAI`` (module docstring)."""
    kwargs = _get(serialized, "kwargs")
    if type(kwargs) is not dict and not isinstance(kwargs, Mapping):
        kwargs = {}
    vertexai = kwargs.get("vertexai")
    if vertexai is None:
        env = (_config.env_str(_config.GOOGLE_GENAI_USE_VERTEXAI) or "").lower()
        if env in ("true", "1", "yes"):
            vertexai = True
        elif env in ("false", "0", "no"):
            vertexai = False
        else:
            vertexai = kwargs.get("credentials") is not None or kwargs.get("project") is not None
    return A.PROVIDER_GCP_VERTEX_AI if vertexai else A.PROVIDER_GCP_GEMINI


def _value(item: Any) -> str:
    # google-genai enums are str enums; model_dump keeps them as enum members.
    return str(getattr(item, "value", item))


def _cut(text: Any) -> str:
    text = str(text)
    return text if len(text) <= MAX_ITEM_CHARS else text[:MAX_ITEM_CHARS]


def _grounding(grounding: Mapping[str, Any], attrs: dict[str, Any]) -> None:
    queries = grounding.get("web_search_queries") or grounding.get("webSearchQueries") or []
    if isinstance(queries, (list, tuple)) and queries:
        attrs[A.GEMINI_GROUNDING_QUERIES] = tuple(_cut(q) for q in queries[:MAX_ITEMS])
    uris: list[str] = []
    chunks = grounding.get("grounding_chunks") or grounding.get("groundingChunks") or []
    for chunk in chunks if isinstance(chunks, (list, tuple)) else ():
        if not isinstance(chunk, Mapping):
            continue
        for kind in ("web", "retrieved_context", "retrievedContext", "maps"):
            source = chunk.get(kind)
            if isinstance(source, Mapping) and source.get("uri"):
                uris.append(_cut(source["uri"]))
                break
        if len(uris) >= MAX_ITEMS:
            break
    if uris:
        attrs[A.GEMINI_GROUNDING_SOURCES] = tuple(uris)


def _ratings(ratings: Any, attrs: dict[str, Any]) -> None:
    if not isinstance(ratings, (list, tuple)) or not ratings:
        return
    out: list[str] = []
    for rating in ratings[:MAX_ITEMS]:
        if not isinstance(rating, Mapping):
            continue
        category = _value(rating.get("category", "?")).removeprefix("HARM_CATEGORY_")
        probability = rating.get("probability_label") or rating.get("probability") or "?"
        text = f"{category}:{_value(probability)}"
        if rating.get("blocked"):
            text += ":blocked"
        out.append(text)
    if out:
        attrs[A.GEMINI_SAFETY_RATINGS] = tuple(out)


def _get(mapping: Any, key: str) -> Any:
    # ``type is dict`` first: the ABC isinstance check costs more than the lookup.
    if type(mapping) is dict or isinstance(mapping, Mapping):
        return mapping.get(key)
    return None


def response_extras(meta: Any, info: Any, llm_output: Any, attrs: dict[str, Any]) -> None:
    """Add grounding, safety and prompt-block facts (see the module docstring) to ``attrs``."""
    grounding = _get(meta, "grounding_metadata") or _get(info, "grounding_metadata")
    if grounding and isinstance(grounding, Mapping):
        _grounding(grounding, attrs)
    ratings = _get(meta, "safety_ratings") or _get(info, "safety_ratings")
    if ratings:
        _ratings(ratings, attrs)
    feedback = (_get(llm_output, "prompt_feedback") if llm_output else None) or _get(
        meta, "prompt_feedback")
    if feedback and isinstance(feedback, Mapping):
        reason = feedback.get("block_reason") or feedback.get("blockReason")
        if reason:
            attrs[A.GEMINI_BLOCK_REASON] = _value(reason)
            attrs[A.ERROR_TYPE] = A.PROMPT_BLOCKED_ERROR
            # Not content (the reason is an enum), so set with capture off too.
            attrs[A.ERROR_MESSAGE] = f"prompt blocked ({attrs[A.GEMINI_BLOCK_REASON]})"
            if A.GEMINI_SAFETY_RATINGS not in attrs:
                _ratings(feedback.get("safety_ratings"), attrs)
