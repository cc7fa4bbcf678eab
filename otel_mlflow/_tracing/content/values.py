"""Content attribute values: LangChain inputs, outputs and messages -> JSON text (pure, no OTel).

``Content`` writes the JSON of ``gen_ai.input.messages``, ``gen_ai.system_instructions``,
``gen_ai.output.messages`` and the chain/tool/retriever ``INPUT`` / ``OUTPUT`` values. Each method
returns exactly ``Serializer.dumps`` of the ``otel_mlflow._tracing.content.messages`` conversion (the parts
schema; a test holds them to it), only faster for the common shapes.

Why a separate path: converting messages to dicts and then checking and encoding those dicts
costs 4-7 µs per value on the application thread; most messages are a role plus one string,
whose JSON can be written directly. Fast path, per message: a known message type, a string
``content``, tool calls whose fields are plain values, a string ``name`` if any. The strings go
through the same redaction and checks as in ``dumps`` (``Serializer.fragment``). Anything else
(content blocks, a mask hook, a value needing a truncation marker or a base64 summary, a document
longer than ``max_chars``) takes the general path: the conversion, then ``dumps``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.messages import BaseMessage
from langchain_core.prompt_values import ChatPromptValue

from otel_mlflow._tracing.content import messages as MSG
from otel_mlflow._tracing.content.serialize import Serializer

_ROLE_JSON = {"user": '"user"', "assistant": '"assistant"', "system": '"system"',
              "tool": '"tool"'}
# Message types whose one part is a tool_call_response, and those that carry tool calls (the
# same sets as ``_messages.message_parts``).
_TOOL_RESULT_TYPES = frozenset({"tool", "function", "ToolMessageChunk"})
_AI_TYPES = frozenset({"ai", "AIMessageChunk"})


# Per-trace memo of message parts (see ``Content``): at most this many messages per trace.
MEMO_MAX = 512


class Content:
    """JSON text of content values for one tracer (see the module docstring).

    ``memo``: a dict shared by the runs of one trace (or None). The same message objects come
    back within a trace (a prompt's output messages are the chat model's input; its reply is
    the next step's input; an agent re-sends its whole history on every model call), so the
    JSON of each message's parts is kept there, keyed by the object's id together with the
    object itself (an id is never reused while the memo holds the object) and checked against
    the message's current ``content`` and ``tool_calls`` objects.
    """

    __slots__ = ("_ser", "_frag", "_max")

    def __init__(self, ser: Serializer) -> None:
        self._ser = ser
        self._frag = ser.fragment
        self._max = ser.max_chars

    # --- public ---------------------------------------------------------------------------
    def value(self, value: Any, memo: dict[int, Any] | None = None) -> str:
        """A chain/tool input or output: ``dumps(to_content(value))``."""
        cls = type(value)
        if cls is str or cls is dict and "messages" not in value:
            return self._ser.dumps(value)
        text: str | None = None
        if isinstance(value, BaseMessage):
            text = self._message(value, 0, memo)
        elif cls is ChatPromptValue or cls is list:
            items = value.messages if cls is ChatPromptValue else value
            if type(items) is list and items and isinstance(items[0], BaseMessage):
                text = self._messages(items, memo)
        if text is not None and len(text) <= self._max:
            return text
        return self._ser.dumps(MSG.to_content(value))

    def chat_input(self, messages: Sequence[Any],
                   memo: dict[int, Any] | None = None) -> tuple[str, str | None]:
        """``(gen_ai.input.messages, gen_ai.system_instructions or None)`` of a chat call."""
        out: list[str] = []
        system: list[str] = []
        for message in messages:
            if not isinstance(message, BaseMessage):
                break
            if MSG.role_of(message) == "system":
                # A system message's parts are its content parts (no tool calls).
                parts = self._parts(message, 2, memo)
                if parts is None:
                    break
                if parts != "[]":
                    system.append(parts[1:-1])
                continue
            entry = self._message(message, 1, memo)
            if entry is None:
                break
            out.append(entry)
        else:
            inputs = "[" + ",".join(out) + "]"
            instructions = "[" + ",".join(system) + "]" if system else None
            if len(inputs) <= self._max and (
                instructions is None or len(instructions) <= self._max
            ):
                return inputs, instructions
        data, parts_list = MSG.chat_input(messages)
        return self._ser.dumps(data), (self._ser.dumps(parts_list) if parts_list else None)

    def prompts(self, prompts: Sequence[str]) -> str:
        """``gen_ai.input.messages`` of a text-completion call."""
        return self._ser.dumps(MSG.prompt_input(prompts))

    def outputs(self, generations: Sequence[Any], reasons: Sequence[str | None] | None = None,
                memo: dict[int, Any] | None = None) -> str:
        """``gen_ai.output.messages`` of one call: one assistant message per generation.

        ``reasons``: each generation's finish reason when already read, else None.
        """
        out: list[str] = []
        for index, generation in enumerate(generations):
            message = getattr(generation, "message", None)
            if message is None:
                break
            parts = self._parts(message, 2, memo)
            if parts is None:
                break
            reason = (reasons[index] if reasons is not None and index < len(reasons)
                      else MSG.generation_finish_reason(generation))
            if reason is None:
                out.append('{"role":"assistant","parts":' + parts + "}")
            else:
                frag = self._frag(reason, 2)
                if frag is None:
                    break
                out.append('{"role":"assistant","parts":' + parts + ',"finish_reason":' + frag
                           + "}")
        else:
            text = "[" + ",".join(out) + "]"
            if len(text) <= self._max:
                return text
        return self._ser.dumps(MSG.output_messages(generations))

    def documents(self, documents: Sequence[Any]) -> str:
        """A retriever's result: each document's ``page_content`` and ``metadata``."""
        return self._ser.dumps([
            {"page_content": getattr(d, "page_content", d), "metadata": getattr(d, "metadata", None)}
            for d in documents
        ])

    # --- internals ------------------------------------------------------------------------
    def _messages(self, messages: list[Any], memo: dict[int, Any] | None) -> str | None:
        out = []
        for message in messages:
            if not isinstance(message, BaseMessage):
                return None
            entry = self._message(message, 1, memo)
            if entry is None:
                return None
            out.append(entry)
        return "[" + ",".join(out) + "]"

    def _message(self, message: Any, depth: int, memo: dict[int, Any] | None) -> str | None:
        """``message_dict(message)`` as JSON text, or None (general path)."""
        role = _ROLE_JSON.get(MSG.role_of(message))
        if role is None:
            return None
        parts = self._parts(message, depth + 1, memo)
        if parts is None:
            return None
        name = message.name
        if name:
            frag = self._frag(name, depth + 1)
            if frag is None:
                return None
            return '{"role":' + role + ',"parts":' + parts + ',"name":' + frag + "}"
        return '{"role":' + role + ',"parts":' + parts + "}"

    def _parts(self, message: Any, depth: int, memo: dict[int, Any] | None) -> str | None:
        """``message_parts(message)`` as JSON text (memoized per trace), or None."""
        if memo is None:
            return self._new_parts(message, depth)
        content = message.content
        calls = getattr(message, "tool_calls", None) if message.type in _AI_TYPES else None
        entry = memo.get(id(message))
        if (
            entry is not None
            and entry[0] is message
            and entry[1] is content
            and entry[2] is calls
            # Depth bounds the scan of tool-call arguments only.
            and (not calls or entry[3] == depth)
        ):
            return entry[4]  # type: ignore[no-any-return]
        parts = self._new_parts(message, depth)
        if parts is not None and len(memo) < MEMO_MAX:
            memo[id(message)] = (message, content, calls, depth, parts)
        return parts

    def _new_parts(self, message: Any, depth: int) -> str | None:
        mtype = message.type
        content = message.content
        if mtype in _TOOL_RESULT_TYPES:
            call_id = getattr(message, "tool_call_id", None)
            ident = self._frag(call_id, depth + 2)
            response = self._frag(content, depth + 2)
            if ident is None or response is None:
                return None
            return ('[{"type":"tool_call_response","id":' + ident + ',"response":' + response
                    + "}]")
        if type(content) is not str:
            return None
        parts: list[str] = []
        if content:
            frag = self._frag(content, depth + 2)
            if frag is None:
                return None
            parts.append('{"type":"text","content":' + frag + "}")
        if mtype in _AI_TYPES:
            for call in getattr(message, "tool_calls", None) or ():
                if type(call) is not dict:
                    return None
                ident = self._frag(call.get("id"), depth + 2)
                name = self._frag(call.get("name"), depth + 2)
                args = self._frag(call.get("args"), depth + 2)
                if ident is None or name is None or args is None:
                    return None
                parts.append('{"type":"tool_call","id":' + ident + ',"name":' + name
                             + ',"arguments":' + args + "}")
        return "[" + ",".join(parts) + "]"
