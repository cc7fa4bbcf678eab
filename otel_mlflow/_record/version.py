"""Pure: the root span's version identity -> run tags, ``prompt.<name>`` params, ``prompts.json``
and the chain facts a LoggedModel is made of (``TraceRecord.chain``). No I/O, no MLflow import.

Read from the LangChain root span (``otel_mlflow._tracing.version`` writes them):
``otel_mlflow.chain.version`` / ``.name`` / ``.description`` (canonical JSON), ``session.id``,
``user.id``, ``otel_mlflow.mlflow.model_id``; from the resource: ``service.version``.

Prompt templates are the description's ``kind="prompt"`` nodes in canonical (sorted-key, depth
first) order. Name, in priority order: (1) the template's own ``name``; (2) ``prompt`` for the
first unnamed one, ``prompt_2``, ``prompt_3`` ... for the next. The same name twice gets the same
numbering. A prompt's hash is the 12-hex canonical hash of ``{"messages", "input_variables"}``,
so it changes with any template text, role or variable and with nothing else.

LoggedModel params (``chain["params"]``): ``chain.name``, ``chain.version``, the first model's
``model`` and request params unprefixed (``temperature`` ...), later distinct models as
``model_2.model``, ``model_2.temperature`` ...; ``tools`` (names, sorted, comma-joined);
``prompt.<name>`` hashes; ``chain.description`` (capped at 5,000 characters).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

from otel_mlflow._common import semconv as A
from otel_mlflow._common.canonical import canonical_hash, canonical_json
from otel_mlflow._record.schema import (
    PARAM_PROMPT_PREFIX,
    TAG_APP_VERSION,
    TAG_CHAIN_VERSION,
    TAG_MODEL_ID,
    TAG_SESSION_ID,
    TAG_USER_ID,
)

_MAX_VALUE_CHARS = 5000
_INVALID_KEY_CHARS = re.compile(r"[^\w\-. /:]")


def _cap(text: str) -> str:
    return text if len(text) <= _MAX_VALUE_CHARS else text[: _MAX_VALUE_CHARS - 20] + "...[truncated]"


def _walk(node: Any) -> Iterator[Mapping[str, Any]]:
    """Every dict in the description, depth first, keys in canonical (sorted) order."""
    if isinstance(node, Mapping):
        yield node
        for key in sorted(node):
            yield from _walk(node[key])
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)


def prompts_of(description: Any) -> list[dict[str, Any]]:
    """The prompt templates of a description, named and hashed (module docstring)."""
    out: list[dict[str, Any]] = []
    unnamed = 0
    seen: set[str] = set()
    for node in _walk(description):
        if node.get("kind") != "prompt":
            continue
        body = {"messages": node.get("messages") or [],
                "input_variables": list(node.get("input_variables") or [])}
        digest = canonical_hash(body)
        name = node.get("name")
        if not isinstance(name, str) or not name:
            unnamed += 1
            name = "prompt" if unnamed == 1 else f"prompt_{unnamed}"
        name = _INVALID_KEY_CHARS.sub("_", name)[:200]
        if name in seen:
            continue
        seen.add(name)
        out.append({"name": name, "hash": digest, **body})
    return out


def _tool_names(description: Any) -> list[str]:
    names: set[str] = set()
    for node in _walk(description):
        if node.get("kind") == "tool" and isinstance(node.get("name"), str):
            names.add(node["name"])
        function = node.get("function")
        if node.get("type") == "function" and isinstance(function, Mapping):
            if isinstance(function.get("name"), str):
                names.add(function["name"])
    return sorted(names)


def _model_params(description: Any) -> dict[str, str]:
    params: dict[str, str] = {}
    seen: list[str] = []
    for node in _walk(description):
        if node.get("kind") != "model":
            continue
        key = canonical_json([node.get("model"), node.get("params")])
        if key in seen:
            continue
        seen.append(key)
        prefix = "" if len(seen) == 1 else f"model_{len(seen)}."
        if node.get("model") is not None:
            params[prefix + "model"] = _cap(str(node["model"]))
        for name, value in sorted((node.get("params") or {}).items()):
            text = value if isinstance(value, str) else canonical_json(value)
            params[prefix + name] = _cap(text)
    return params


def version_fields(
    root_attrs: Mapping[str, Any], resource_attrs: Mapping[str, Any]
) -> tuple[dict[str, str], dict[str, str], dict[str, Any]]:
    """``(tags, params, chain)`` of one trace from its LangChain root's attributes.

    ``chain`` is empty when the trace carries no version; else it holds ``version``, ``name``,
    ``params`` (LoggedModel params), ``prompts`` (``prompts.json`` entries) and, when the user
    set one, ``model_id`` (their active LoggedModel).
    """
    tags: dict[str, str] = {}
    params: dict[str, str] = {}
    app_version = resource_attrs.get("service.version")
    if app_version:
        tags[TAG_APP_VERSION] = _cap(str(app_version))
    for tag, attr in ((TAG_SESSION_ID, A.SESSION_ID), (TAG_USER_ID, A.USER_ID)):
        if root_attrs.get(attr):
            tags[tag] = _cap(str(root_attrs[attr]))
    version = root_attrs.get(A.CHAIN_VERSION)
    if not version:
        return tags, params, {}
    tags[TAG_CHAIN_VERSION] = _cap(str(version))
    description: Any = None
    text = root_attrs.get(A.CHAIN_DESCRIPTION)
    if isinstance(text, str):
        try:
            description = json.loads(text)
        except ValueError:
            description = None
    name = str(root_attrs.get(A.CHAIN_NAME) or "chain")
    prompts = prompts_of(description) if description is not None else []
    for prompt in prompts:
        params[PARAM_PROMPT_PREFIX + prompt["name"]] = prompt["hash"]
    model_params: dict[str, str] = {"chain.name": _cap(name), "chain.version": str(version)}
    if description is not None:
        model_params.update(_model_params(description))
        tools = _tool_names(description)
        if tools:
            model_params["tools"] = _cap(",".join(tools))
        model_params["chain.description"] = _cap(text)  # type: ignore[arg-type]
    model_params.update(params)
    chain: dict[str, Any] = {"version": str(version), "name": name, "params": model_params,
                             "prompts": prompts}
    model_id = root_attrs.get(A.MLFLOW_MODEL_ID)
    if model_id:
        chain["model_id"] = str(model_id)
        tags[TAG_MODEL_ID] = str(model_id)
    return tags, params, chain
