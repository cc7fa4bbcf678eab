"""LangChain messages and generations -> GenAI "parts" schema (pure, no I/O, no OTel).

The shapes follow the GenAI semantic conventions for ``gen_ai.input.messages``,
``gen_ai.output.messages`` and ``gen_ai.system_instructions``:

- a message is ``{"role": ..., "parts": [...]}`` (output messages add ``"finish_reason"``);
- parts: ``{"type": "text", "content": str}``,
  ``{"type": "tool_call", "id", "name", "arguments"}``,
  ``{"type": "tool_call_response", "id", "response"}``, ``{"type": "reasoning", "content"}``
  (thought summaries, e.g. Gemini's with ``include_thoughts=True``), and for images, audio,
  video, PDFs and files ``{"type": "blob" | "uri" | "file", "modality", "mime_type", ...}``
  with the size or URI but never the bytes (``otel_mlflow._tracing.content.media``);
- system messages are not input messages: their parts become ``gen_ai.system_instructions``.

Role priority: the message ``type`` (``human`` -> user, ``ai`` -> assistant, ``system``,
``tool``/``function`` -> tool), then a ``ChatMessage``'s own ``role``. Unknown content blocks are
kept as they are (the serializer caps and redacts them); nothing here copies whole objects.
Callers serialize the returned lists; these functions never raise on odd content.
``to_content`` applies the same schema to chain/tool inputs and outputs that hold messages.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from langchain_core.messages import BaseMessage
from langchain_core.prompt_values import PromptValue

from otel_mlflow._tracing.content.media import MEDIA_KINDS, media_part

Part = dict[str, Any]
Message = dict[str, Any]

_AI_TYPES = frozenset({"ai", "AIMessageChunk"})
_UNSPECIFIED = "FINISH_REASON_UNSPECIFIED"
_ROLE_BY_TYPE = {
    "human": "user",
    "HumanMessageChunk": "user",
    "ai": "assistant",
    "AIMessageChunk": "assistant",
    "system": "system",
    "SystemMessageChunk": "system",
    "tool": "tool",
    "ToolMessageChunk": "tool",
    "function": "tool",
    "FunctionMessageChunk": "tool",
    "developer": "system",
}


def role_of(message: Any) -> str:
    """GenAI role of a LangChain message (see the module docstring for the priority)."""
    role = _ROLE_BY_TYPE.get(getattr(message, "type", ""))
    if role is not None:
        return role
    own = getattr(message, "role", None)
    if isinstance(own, str) and own:
        return {"human": "user", "ai": "assistant"}.get(own, own)
    return "user"


def _block_part(block: Any) -> Part:
    if isinstance(block, str):
        return {"type": "text", "content": block}
    if not isinstance(block, dict):
        return {"type": "text", "content": str(block)}
    kind = block.get("type")
    if kind == "text" or (kind is None and "text" in block):
        return {"type": "text", "content": block.get("text", "")}
    if kind in MEDIA_KINDS:
        part = media_part(kind, block)
        if part is not None:
            return part
    if kind in ("reasoning", "thinking"):
        return {"type": "reasoning", "content": block.get("reasoning") or block.get("thinking")}
    return block


def content_parts(content: Any) -> list[Part]:
    """Parts of a message's ``content`` (a string or a list of content blocks)."""
    if isinstance(content, str):
        return [{"type": "text", "content": content}] if content else []
    if isinstance(content, list):
        return [_block_part(block) for block in content]
    if content is None:
        return []
    return [{"type": "text", "content": str(content)}]


def message_parts(message: Any) -> list[Part]:
    """All parts of one LangChain message: content, tool calls, tool results."""
    mtype = getattr(message, "type", "")
    if mtype in ("tool", "function", "ToolMessageChunk"):
        return [
            {
                "type": "tool_call_response",
                "id": getattr(message, "tool_call_id", None),
                "response": message.content,
            }
        ]
    content = getattr(message, "content", None)
    parts = content_parts(content)
    if type(content) is list and len(parts) > 1 and mtype in _AI_TYPES:
        parts = _joined_texts(parts)
    # Only AI messages carry tool calls; probing others would run pydantic's slow __getattr__.
    tool_calls = (
        getattr(message, "tool_calls", None)
        if mtype in _AI_TYPES or not isinstance(message, BaseMessage)
        else None
    )
    if tool_calls:
        for call in tool_calls:
            parts.append(
                {
                    "type": "tool_call",
                    "id": call.get("id"),
                    "name": call.get("name"),
                    "arguments": call.get("args"),
                }
            )
    return parts


def _joined_texts(parts: list[Part]) -> list[Part]:
    """Adjacent text parts of a model reply as one: a streamed reply merges into several.

    (langchain-google-genai streams a first chunk of content blocks, then plain strings; merged,
    the answer text would read as pieces.)
    """
    out: list[Part] = []
    for part in parts:
        if (out and part.get("type") == "text" and out[-1].get("type") == "text"
                and isinstance(part.get("content"), str)
                and isinstance(out[-1].get("content"), str)):
            out[-1] = {"type": "text", "content": out[-1]["content"] + part["content"]}
        else:
            out.append(part)
    return out


def chat_input(messages: Sequence[Any]) -> tuple[list[Message], list[Part]]:
    """``(input messages, system instruction parts)`` of one chat model call."""
    out: list[Message] = []
    system: list[Part] = []
    for message in messages:
        role = role_of(message)
        if role == "system":
            system.extend(content_parts(getattr(message, "content", None)))
            continue
        entry: Message = {"role": role, "parts": message_parts(message)}
        name = getattr(message, "name", None)
        if name:
            entry["name"] = name
        out.append(entry)
    return out, system


def prompt_input(prompts: Iterable[str]) -> list[Message]:
    """Input messages of a text-completion call (each prompt string is a user message)."""
    return [{"role": "user", "parts": [{"type": "text", "content": p}]} for p in prompts]


def clean_finish_reason(reason: str) -> str:
    """The last meaningful finish reason of a streamed response.

    LangChain merges the chunks of a stream by concatenating their string values, so Gemini's
    per-chunk ``FINISH_REASON_UNSPECIFIED`` and the final ``STOP`` arrive as
    ``FINISH_REASON_UNSPECIFIEDFINISH_REASON_UNSPECIFIEDSTOP``. The placeholder is removed
    (kept only when nothing else is left) and a value repeated by several chunks
    (``STOPSTOP``) is collapsed to one.
    """
    if _UNSPECIFIED in reason and reason != _UNSPECIFIED:
        reason = reason.replace(_UNSPECIFIED, "") or _UNSPECIFIED
    if len(reason) > 1:
        # The smallest period of a string: where it first reappears in itself doubled.
        period = (reason + reason).find(reason, 1)
        if period < len(reason):
            reason = reason[:period]
    return reason


def generation_finish_reason(generation: Any) -> str | None:
    """Finish reason of one generation: message response_metadata, then generation_info.

    Streamed (concatenated) values are cleaned by ``clean_finish_reason``.
    """
    message = getattr(generation, "message", None)
    if message is not None:
        meta = getattr(message, "response_metadata", None)
        if meta:
            reason = meta.get("finish_reason") or meta.get("stop_reason")
            if reason is not None:
                return clean_finish_reason(str(reason))
    info = getattr(generation, "generation_info", None)
    if info:
        reason = info.get("finish_reason") or info.get("stop_reason")
        if reason is not None:
            return clean_finish_reason(str(reason))
    return None


def output_messages(generations: Sequence[Any]) -> list[Message]:
    """Output messages of one call: one assistant message per generation (choice)."""
    out: list[Message] = []
    for generation in generations:
        message = getattr(generation, "message", None)
        if message is not None:
            parts = message_parts(message)
        else:
            text = getattr(generation, "text", "")
            parts = [{"type": "text", "content": text}] if text else []
        entry: Message = {"role": "assistant", "parts": parts}
        reason = generation_finish_reason(generation)
        if reason is not None:
            entry["finish_reason"] = reason
        out.append(entry)
    return out


def message_dict(message: Any) -> Message:
    """One LangChain message as a parts-schema message (system messages keep role system)."""
    entry: Message = {"role": role_of(message), "parts": message_parts(message)}
    name = getattr(message, "name", None)
    if name:
        entry["name"] = name
    return entry


def to_content(value: Any) -> Any:
    """A chain/tool input or output with LangChain messages in parts schema, else unchanged.

    Converts, in this order: a message; a chat prompt value (its messages); a string prompt
    value (its text); a list of messages; a mapping whose ``"messages"`` value is a list of
    messages (LangGraph / ``create_agent`` state: a shallow copy, other keys kept). Only the
    top level is looked at, so the cost is a few type checks for everything else. Message
    objects are read, never copied or dumped whole.
    """
    if isinstance(value, BaseMessage):
        return message_dict(value)
    if isinstance(value, dict):
        messages = value.get("messages")
        if type(messages) is list and messages and isinstance(messages[0], BaseMessage):
            out = dict(value)
            out["messages"] = [
                message_dict(m) if isinstance(m, BaseMessage) else m for m in messages
            ]
            return out
        return value
    if isinstance(value, list):
        if value and isinstance(value[0], BaseMessage):
            return [message_dict(m) if isinstance(m, BaseMessage) else m for m in value]
        return value
    if isinstance(value, PromptValue):
        messages = getattr(value, "messages", None)
        if isinstance(messages, list):
            return [message_dict(m) for m in messages]
        return value.to_string()
    return value
