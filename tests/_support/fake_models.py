"""Fake chat models for tests and benchmarks: real ``BaseChatModel`` subclasses, no network.

``FakeChatModel`` behaves like a provider integration as far as callbacks see it:
- ``AIMessage.usage_metadata`` with ``input_token_details.cache_read`` and
  ``output_token_details.reasoning``, and a ``total_tokens`` that includes the reasoning tokens
  (as Gemini reports it), so a tracer that recomputes totals is caught;
- ``response_metadata`` with ``model_name`` and ``finish_reason``;
- ``ls_provider`` / ``ls_model_name`` / ``ls_temperature`` / ``ls_max_tokens`` via
  ``_get_ls_params`` (default provider ``google_vertexai``);
- streaming: one chunk per word, each reported through ``on_llm_new_token``, usage on the last;
- tool calls: ``bind_tools`` works, and a ``responder`` callable can decide the reply from the
  messages (used to drive ``create_agent`` loops deterministically, also concurrently);
- scripted failures: an ``Exception`` instance in ``responses`` is raised by that call.

Replies: ``responder(messages)`` if given, else ``responses`` in a cycle (thread-safe), else
``"echo: <last message text>"``.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.base import LangSmithParams
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict, Field, PrivateAttr

Reply = str | AIMessage | BaseException
Responder = Callable[[Sequence[BaseMessage]], Reply]

CACHE_READ_TOKENS = 2
REASONING_TOKENS = 3


def _text_of(message: BaseMessage) -> str:
    content = message.content
    if isinstance(content, str):
        return content
    return " ".join(
        part if isinstance(part, str) else str(part.get("text", ""))
        for part in content
        if isinstance(part, (str, dict))
    )


def usage_for(messages: Sequence[BaseMessage], reply_text: str) -> dict[str, Any]:
    """Deterministic usage: words in, words out, fixed cache-read and reasoning counts."""
    input_tokens = sum(len(_text_of(m).split()) for m in messages) + 1
    output_tokens = max(1, len(reply_text.split()))
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        # Gemini's total includes thinking tokens: never equal to input + output here.
        "total_tokens": input_tokens + output_tokens + REASONING_TOKENS,
        "input_token_details": {"cache_read": CACHE_READ_TOKENS},
        "output_token_details": {"reasoning": REASONING_TOKENS},
    }


class FakeChatModel(BaseChatModel):
    """A deterministic chat model; see the module docstring for what it reports."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    model: str = "fake-gemini-2.5-flash"
    provider: str = "google_vertexai"
    temperature: float | None = 0.2
    top_p: float | None = 0.9
    top_k: int | None = 40
    max_output_tokens: int | None = 256
    responses: list[Any] = Field(default_factory=list)
    responder: Callable[..., Any] | None = None
    finish_reason: str = "STOP"

    _counter: Any = PrivateAttr(default_factory=itertools.count)
    _lock: Any = PrivateAttr(default_factory=threading.Lock)

    @property
    def _llm_type(self) -> str:
        return "fake-chat-model"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "max_output_tokens": self.max_output_tokens,
        }

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = LangSmithParams(
            ls_provider=self.provider,
            ls_model_name=kwargs.get("model", self.model),
            ls_model_type="chat",
        )
        if self.temperature is not None:
            params["ls_temperature"] = self.temperature
        if self.max_output_tokens is not None:
            params["ls_max_tokens"] = self.max_output_tokens
        if stop:
            params["ls_stop"] = stop
        return params

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        formatted = [convert_to_openai_tool(t) for t in tools]
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        return self.bind(tools=formatted, **kwargs)

    # --- replies -------------------------------------------------------------------------
    def _next_reply(self, messages: Sequence[BaseMessage]) -> AIMessage:
        if self.responder is not None:
            reply: Reply = self.responder(messages)
        elif self.responses:
            with self._lock:
                index = next(self._counter)
            reply = self.responses[index % len(self.responses)]
        else:
            reply = "echo: " + (_text_of(messages[-1]) if messages else "")
        if isinstance(reply, BaseException):
            raise reply
        if isinstance(reply, str):
            reply = AIMessage(content=reply)
        text = reply.content if isinstance(reply.content, str) else ""
        finish = "TOOL_CALLS" if reply.tool_calls else self.finish_reason
        return AIMessage(
            content=reply.content,
            tool_calls=reply.tool_calls,
            id=reply.id,
            usage_metadata=usage_for(messages, text),  # type: ignore[arg-type]
            response_metadata={"model_name": self.model + "-001", "finish_reason": finish},
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        message = self._next_reply(messages)
        return ChatResult(
            generations=[ChatGeneration(message=message)],
            llm_output={"model_name": message.response_metadata["model_name"]},
        )

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        message = self._next_reply(messages)
        text = message.content if isinstance(message.content, str) else ""
        words = text.split(" ") if text else []
        pieces = [w if i == 0 else " " + w for i, w in enumerate(words)]
        for piece in pieces:
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece))
            if run_manager is not None:
                run_manager.on_llm_new_token(piece, chunk=chunk)
            yield chunk
        last = AIMessageChunk(
            content="",
            tool_call_chunks=[
                {"name": c["name"], "args": _json_args(c["args"]), "id": c["id"], "index": i}
                for i, c in enumerate(message.tool_calls)
            ],
            usage_metadata=message.usage_metadata,
            response_metadata=message.response_metadata,
            chunk_position="last",
        )
        yield ChatGenerationChunk(message=last)


def _json_args(args: dict[str, Any]) -> str:
    import json

    return json.dumps(args)


def agent_responder(tool_name: str, args: dict[str, Any], final: str = "done") -> Responder:
    """Replies for a one-tool agent loop: call ``tool_name`` once, then answer with the result.

    Decides from the messages alone, so one model serves many concurrent agent runs.
    """

    def respond(messages: Sequence[BaseMessage]) -> Reply:
        last = messages[-1] if messages else None
        if isinstance(last, ToolMessage):
            return f"{final}: {_text_of(last)}"
        call_id = f"call_{abs(hash(_text_of(last) if last else '')) % 10**8}"
        return AIMessage(content="", tool_calls=[{"name": tool_name, "args": args, "id": call_id}])

    return respond
