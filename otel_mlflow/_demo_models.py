"""The demo's chat models: which one ``otel-mlflow demo`` uses, and the scripted fake one.

``resolve("auto")``, by priority: ``genai`` (the real ``ChatGoogleGenerativeAI`` on the Vertex
AI backend, against the built-in Gemini emulator) when ``langchain-google-genai`` is installed,
``vertexai`` (the real ``ChatVertexAI`` over REST to the same emulator) when
``langchain-google-vertexai`` is, else ``fake`` (``DemoFakeChatModel``, ``langchain_core`` only).
``Script`` queues the demo's replies on whichever is used.
"""

from __future__ import annotations

import re
import warnings
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from langchain_core.language_models.base import LangSmithParams
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import PrivateAttr

MODEL_NAME = "gemini-2.5-flash"
MODEL_CHOICES = ("auto", "genai", "vertexai", "fake")
FAIL_STATUS = 500
FAIL_MESSAGE = "The demo backend failed on purpose (HTTP 500)."
_PARAMS: dict[str, Any] = {"temperature": 0.2, "top_p": 0.9, "top_k": 20, "max_tokens": 256}


class DemoFakeChatModel(BaseChatModel):
    """A scripted chat model for machines without ``langchain-google-vertexai``.

    Replies are queued (text, a tool call, or a failure) and consumed one per call; each reply
    carries ``usage_metadata`` and ``response_metadata`` like a real provider's. Streaming yields
    the text word by word with usage on the last chunk. ``bind_tools`` accepts any tools (the
    script decides when a tool is called).
    """

    model_name: str = MODEL_NAME
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    max_tokens: int | None = None
    _replies: deque[tuple[str, Any, tuple[int, int, int]]] = PrivateAttr(default_factory=deque)

    @property
    def _llm_type(self) -> str:
        return "otel-mlflow-demo-fake"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "temperature": self.temperature,
                "top_p": self.top_p, "top_k": self.top_k, "max_tokens": self.max_tokens}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "otel-mlflow-demo"
        params["ls_model_name"] = self.model_name
        if self.temperature is not None:
            params["ls_temperature"] = self.temperature
        if self.max_tokens is not None:
            params["ls_max_tokens"] = self.max_tokens
        return params

    def queue_text(self, text: str, usage: tuple[int, int, int]) -> None:
        self._replies.append(("text", text, usage))

    def queue_tool_call(self, name: str, args: dict[str, Any], usage: tuple[int, int, int]) -> None:
        self._replies.append(("tool", (name, args), usage))

    def queue_error(self, message: str) -> None:
        self._replies.append(("error", message, (0, 0, 0)))

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Any:
        return self

    def _next_message(self) -> AIMessage:
        kind, payload, (prompt, completion, total) = (
            self._replies.popleft() if self._replies else ("text", "(no scripted reply)", (1, 1, 2))
        )
        if kind == "error":
            raise RuntimeError(payload)
        usage: dict[str, Any] = {"input_tokens": prompt, "output_tokens": completion,
                                 "total_tokens": total}
        if total > prompt + completion:
            usage["output_token_details"] = {"reasoning": total - prompt - completion}
        metadata = {"model_name": self.model_name, "finish_reason": "STOP"}
        if kind == "tool":
            name, args = payload
            return AIMessage(
                content="",
                tool_calls=[{"name": name, "args": args, "id": f"call_{name}_1", "type": "tool_call"}],
                usage_metadata=usage,  # type: ignore[arg-type]
                response_metadata=metadata,
            )
        return AIMessage(content=payload, usage_metadata=usage,  # type: ignore[arg-type]
                         response_metadata=metadata)

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: Any = None, **kwargs: Any) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=self._next_message())])

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: Any = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        message = self._next_message()
        text = str(message.content)
        # Words with their trailing spaces; text without spaces (Japanese) streams per character.
        pieces = re.findall(r"\S+\s*", text) if " " in text else list(text)
        for index, piece in enumerate(pieces or [""]):
            last = index == len(pieces or [""]) - 1
            chunk = AIMessageChunk(
                content=piece,
                usage_metadata=message.usage_metadata if last else None,
                response_metadata=message.response_metadata if last else {},
            )
            if run_manager is not None:
                run_manager.on_llm_new_token(piece, chunk=ChatGenerationChunk(message=chunk))
            yield ChatGenerationChunk(message=chunk)


# --- the model ---------------------------------------------------------------------------------


def genai_available() -> bool:
    try:
        import langchain_google_genai  # noqa: F401
    except ImportError:
        return False
    return True


def vertexai_available() -> bool:
    try:
        import langchain_google_vertexai  # noqa: F401
    except ImportError:
        return False
    return True


def resolve(model: str) -> str:
    """The model kind for a ``--model`` choice: ``auto`` -> genai, else vertexai, else fake."""
    if model not in MODEL_CHOICES:
        raise ValueError(f"model must be one of {MODEL_CHOICES}, not {model!r}")
    if model != "auto":
        return model
    if genai_available():
        return "genai"
    return "vertexai" if vertexai_available() else "fake"


@contextmanager
def chat_model(kind: str) -> Iterator[tuple[Any, Any, str]]:
    """``(model, emulator or None, description)`` for a resolved kind; the emulator runs inside."""
    if kind == "fake":
        yield (DemoFakeChatModel(model_name=MODEL_NAME, **_PARAMS), None,
               f"fake chat model ({MODEL_NAME}, langchain_core)")
        return
    from otel_mlflow.testing.gemini_emulator import GeminiEmulator

    with GeminiEmulator() as emulator:
        if kind == "genai":
            # Vertex AI backend; thought summaries asked for, so the reasoning column fills.
            model = emulator.genai_chat_model(
                MODEL_NAME, vertexai=True, temperature=0.2, top_p=0.9, top_k=20,
                max_output_tokens=256, thinking_budget=512, include_thoughts=True)
            name = f"ChatGoogleGenerativeAI({MODEL_NAME}, vertexai=True)"
        else:
            # langchain-google-vertexai 3.2 flags ChatVertexAI as deprecated; the demo is about
            # tracing that client, so the notice is only noise.
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*ChatVertexAI.*deprecated")
                model = emulator.chat_model(model=MODEL_NAME, **_PARAMS)
            name = f"ChatVertexAI({MODEL_NAME})"
        yield model, emulator, f"{name} -> local Gemini emulator at {emulator.url}"


class Script:
    """Queues the next replies on whichever backend the demo uses."""

    def __init__(self, model: Any, emulator: Any | None) -> None:
        self._model = model
        self._emulator = emulator

    def text(self, text: str, usage: tuple[int, int, int], thoughts: str | None = None) -> None:
        if self._emulator is not None:
            self._emulator.queue_text(text, usage=_usage(usage), thoughts=thoughts)
        else:
            self._model.queue_text(text, usage)

    def tool_call(self, name: str, args: dict[str, Any], usage: tuple[int, int, int]) -> None:
        if self._emulator is not None:
            self._emulator.queue_function_call(name, args, usage=_usage(usage))
        else:
            self._model.queue_tool_call(name, args, usage)

    def failure(self) -> None:
        if self._emulator is not None:
            self._emulator.queue_error(FAIL_STATUS, FAIL_MESSAGE)
        else:
            self._model.queue_error(FAIL_MESSAGE)


def _usage(usage: tuple[int, int, int]) -> Any:
    """An emulator ``Usage``; a total above input + output is reported as thinking tokens."""
    from otel_mlflow.testing.gemini_emulator import Usage

    prompt, candidates, total = usage
    thoughts = total - prompt - candidates
    return Usage(prompt=prompt, candidates=candidates, total=total,
                 thoughts=thoughts if thoughts > 0 else None)
