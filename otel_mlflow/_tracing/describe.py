"""A runnable's static structure -> a JSON-able description (what the chain version hashes).

Pure: reads attributes of LangChain objects, never runs them, no I/O. The description of a node is
a dict with ``type`` (the class name) and, per kind, in this order of checks:

1. chat model / LLM (``BaseLanguageModel``): ``kind="model"``, ``model`` and ``params``: the
   request parameters that change answers (temperature, top_p, top_k, max tokens, thinking
   budget / level, reasoning effort), unset ones left out;
2. prompt template (``BasePromptTemplate``): ``kind="prompt"``, ``messages`` (role + template text
   with its placeholders, or a ``placeholder`` variable) and ``input_variables``;
3. tool (``BaseTool``): ``kind="tool"``, name, description and argument JSON schema;
4. composition: ``RunnableSequence`` (``steps``), ``RunnableParallel`` (``steps`` by key),
   ``RunnableBranch`` (``branches`` as [condition, runnable] and ``default``: every branch,
   whichever one an input takes), ``RunnableWithFallbacks``, ``RunnableBinding`` (``bound`` and
   its ``kwargs``: tools bound with ``bind_tools`` are there, with names and schemas), a LangGraph
   graph (``nodes`` by name; a node function's closure cells that hold runnables, tools, models
   or a system message / prompt string, which is where ``create_agent`` keeps its model, tools
   and ``system_prompt``);
5. anything else: type and name only (a ``RunnableLambda`` is its function's name).

Inputs never enter the description, so branches and agent loops that run differently per input
keep one version. Bounded: depth ``MAX_DEPTH``, ``MAX_NODES`` nodes; a node seen twice (a graph
that refers back) is ``{"ref": type}``. Values that are not JSON are reduced to their type name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

MAX_DEPTH = 24
MAX_NODES = 2_000
_MAX_VALUE_DEPTH = 12

# Request parameters of a model, first attribute found per key (provider classes name them apart).
_MODEL_KEYS = ("model_name", "model", "model_id", "deployment_name", "repo_id")
_PARAMS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("temperature", ("temperature",)),
    ("top_p", ("top_p",)),
    ("top_k", ("top_k",)),
    ("max_tokens", ("max_tokens", "max_output_tokens", "max_new_tokens", "max_tokens_to_sample")),
    ("thinking_budget", ("thinking_budget",)),
    ("thinking_level", ("thinking_level",)),
    ("reasoning_effort", ("reasoning_effort",)),
    ("thinking", ("thinking",)),
)
_ROLE_BY_CLASS = {
    "SystemMessagePromptTemplate": "system",
    "HumanMessagePromptTemplate": "user",
    "AIMessagePromptTemplate": "assistant",
}
_ROLE_BY_MESSAGE_TYPE = {"system": "system", "human": "user", "ai": "assistant", "tool": "tool"}


def value(obj: Any, depth: int = 0) -> Any:
    """A JSON-able, deterministic form of a config value (tool schemas, bound kwargs)."""
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if obj == obj and obj not in (float("inf"), float("-inf")) else str(obj)
    if depth >= _MAX_VALUE_DEPTH:
        return type(obj).__qualname__
    if isinstance(obj, Mapping):
        return {str(k): value(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [value(v, depth + 1) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted(str(v) for v in obj)
    if isinstance(obj, type):
        schema = getattr(obj, "model_json_schema", None)
        if callable(schema):
            try:
                return value(schema(), depth + 1)
            except Exception:  # noqa: BLE001 - a class we cannot reduce: its name
                pass
        return obj.__qualname__
    dump = getattr(obj, "model_dump", None)
    if callable(dump):
        try:
            return value(dump(mode="json", exclude_none=True), depth + 1)
        except Exception:  # noqa: BLE001
            pass
    name = getattr(obj, "__qualname__", None)
    if isinstance(name, str) and callable(obj):
        return name
    return type(obj).__qualname__


def _name(obj: Any) -> str:
    get_name = getattr(obj, "get_name", None)
    if callable(get_name):
        try:
            return str(get_name())
        except Exception:  # noqa: BLE001
            pass
    return type(obj).__name__


class _Walk:
    __slots__ = ("nodes", "seen")

    def __init__(self) -> None:
        self.nodes = 0
        self.seen: set[int] = set()

    def node(self, obj: Any, depth: int) -> Any:
        kind = type(obj).__name__
        if depth > MAX_DEPTH or self.nodes >= MAX_NODES:
            return {"type": kind, "truncated": True}
        if id(obj) in self.seen:
            return {"ref": kind}
        self.nodes += 1
        self.seen.add(id(obj))
        try:
            return self._node(obj, kind, depth + 1)
        finally:
            self.seen.discard(id(obj))

    def _many(self, items: Sequence[Any], depth: int) -> list[Any]:
        return [self.node(item, depth) for item in items]

    def _node(self, obj: Any, kind: str, depth: int) -> Any:
        from langchain_core.language_models import BaseLanguageModel
        from langchain_core.prompts import BasePromptTemplate
        from langchain_core.runnables import Runnable
        from langchain_core.tools import BaseTool

        if isinstance(obj, BaseLanguageModel):
            return _model(obj, kind)
        if isinstance(obj, BasePromptTemplate):
            return _prompt(obj, kind)
        if isinstance(obj, BaseTool):
            return _tool(obj, kind)
        out: dict[str, Any] = {"type": kind, "name": _name(obj)}
        steps = getattr(obj, "steps", None)
        if kind.startswith("RunnableSequence") and isinstance(steps, list):
            out["steps"] = self._many(steps, depth)
            return out
        steps = getattr(obj, "steps__", None)
        if isinstance(steps, Mapping):
            out["steps"] = {str(k): self.node(v, depth) for k, v in steps.items()}
            return out
        branches = getattr(obj, "branches", None)
        if isinstance(branches, Sequence) and hasattr(obj, "default"):
            out["branches"] = [self._many(list(pair), depth) for pair in branches]
            out["default"] = self.node(obj.default, depth)
            return out
        fallbacks = getattr(obj, "fallbacks", None)
        if isinstance(fallbacks, Sequence) and hasattr(obj, "runnable"):
            out["runnable"] = self.node(obj.runnable, depth)
            out["fallbacks"] = self._many(list(fallbacks), depth)
            return out
        bound = getattr(obj, "bound", None)
        if isinstance(bound, Runnable):
            out["bound"] = self.node(bound, depth)
            kwargs = getattr(obj, "kwargs", None)
            if kwargs:
                out["kwargs"] = value(kwargs)
            return out
        mapper = getattr(obj, "mapper", None)
        if isinstance(mapper, Runnable):
            out["mapper"] = self.node(mapper, depth)
            return out
        keys = getattr(obj, "keys", None)
        if kind == "RunnablePick" and keys is not None:
            out["keys"] = value(keys)
            return out
        nodes = getattr(obj, "nodes", None)
        if isinstance(nodes, Mapping) and hasattr(obj, "channels"):  # a LangGraph graph
            out["nodes"] = {str(k): self._graph_node(v, depth) for k, v in nodes.items()}
            return out
        tools = getattr(obj, "tools_by_name", None)
        if isinstance(tools, Mapping):  # LangGraph's ToolNode
            out["tools"] = [self.node(tools[k], depth) for k in sorted(tools)]
            return out
        inner = self._closure(getattr(obj, "func", None), depth)
        if inner:
            out["uses"] = inner
        return out

    def _graph_node(self, node: Any, depth: int) -> Any:
        bound = getattr(node, "bound", None)
        return self.node(bound if bound is not None else node, depth)

    def _closure(self, func: Any, depth: int) -> list[Any]:
        """Runnables, tools and models a node function closes over (``create_agent``'s nodes)."""
        from langchain_core.runnables import Runnable

        cells = getattr(func, "__closure__", None)
        if not cells:
            return []
        from langchain_core.messages import BaseMessage

        code = getattr(func, "__code__", None)
        names = getattr(code, "co_freevars", ()) or ()
        found = []
        for index, cell in enumerate(cells):
            try:
                content = cell.cell_contents
            except ValueError:  # an empty cell
                continue
            name = names[index] if index < len(names) else ""
            if isinstance(content, BaseMessage) or (isinstance(content, str) and "prompt" in name):
                # ``create_agent(system_prompt=...)`` keeps its system prompt as a message here.
                found.append({"type": type(content).__name__, "kind": "prompt", "name": name,
                              "messages": [_message(content) if isinstance(content, BaseMessage)
                                           else {"role": "system", "template": content}],
                              "input_variables": []})
            elif isinstance(content, Runnable):
                found.append(self.node(content, depth))
            elif isinstance(content, Mapping) and content and all(
                isinstance(v, Runnable) for v in content.values()
            ):
                found.append({str(k): self.node(content[k], depth) for k in sorted(content)})
            elif isinstance(content, (list, tuple)) and content and all(
                isinstance(v, Runnable) for v in content
            ):
                found.append(self._many(list(content), depth))
        return found


def _model(obj: Any, kind: str) -> dict[str, Any]:
    out: dict[str, Any] = {"type": kind, "kind": "model"}
    for key in _MODEL_KEYS:
        model = getattr(obj, key, None)
        if isinstance(model, str) and model:
            out["model"] = model
            break
    params: dict[str, Any] = {}
    for param, attrs in _PARAMS:
        for attr in attrs:
            found = getattr(obj, attr, None)
            if found is not None and not callable(found):
                params[param] = value(found)
                break
    out["params"] = params
    return out


def _message(msg: Any) -> dict[str, Any]:
    kind = type(msg).__name__
    variable = getattr(msg, "variable_name", None)
    if isinstance(variable, str):  # MessagesPlaceholder
        return {"placeholder": variable}
    content = getattr(msg, "content", None)
    msg_type = getattr(msg, "type", None)
    if content is not None and isinstance(msg_type, str):  # a literal message in the template
        return {"role": _ROLE_BY_MESSAGE_TYPE.get(msg_type, msg_type), "template": value(content)}
    role = getattr(msg, "role", None)
    out: dict[str, Any] = {
        "role": _ROLE_BY_CLASS.get(kind) or (role if isinstance(role, str) else kind),
    }
    prompt = getattr(msg, "prompt", None)
    if isinstance(prompt, list):
        texts = [getattr(p, "template", None) for p in prompt]
        out["template"] = [t if isinstance(t, str) else value(t) for t in texts]
    elif prompt is not None:
        out["template"] = value(getattr(prompt, "template", None))
    return out


def _prompt(obj: Any, kind: str) -> dict[str, Any]:
    out: dict[str, Any] = {"type": kind, "kind": "prompt",
                           "input_variables": sorted(getattr(obj, "input_variables", ()) or ())}
    messages = getattr(obj, "messages", None)
    if isinstance(messages, list):
        out["messages"] = [_message(m) for m in messages]
    else:
        template = getattr(obj, "template", None)
        out["messages"] = [{"role": "user", "template": value(template)}]
    name = getattr(obj, "name", None)
    if isinstance(name, str) and name:
        out["name"] = name
    return out


def _tool(obj: Any, kind: str) -> dict[str, Any]:
    out: dict[str, Any] = {"type": kind, "kind": "tool", "name": str(getattr(obj, "name", kind)),
                           "description": value(getattr(obj, "description", None))}
    try:
        out["schema"] = value(obj.tool_call_schema)  # a pydantic class: its JSON schema
    except Exception:  # noqa: BLE001 - a tool without a schema we can read
        pass
    return out


def describe(root: Any) -> dict[str, Any]:
    """The description of ``root`` and everything it statically contains (module docstring)."""
    node = _Walk().node(root, 0)
    return node if isinstance(node, dict) else {"type": type(root).__name__}
