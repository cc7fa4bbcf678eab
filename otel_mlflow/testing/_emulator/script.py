"""What a test scripts and what the emulator logs: replies, usage, grounding, requests (data only)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# Vertex AI (ChatVertexAI's REST transport and google-genai with ``vertexai=True``).
VERTEX_PATH = re.compile(
    r"^/(?P<version>v1(?:beta1)?)/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)"
    r"/publishers/(?P<publisher>[^/]+)/models/(?P<model>[^/:]+):(?P<method>[A-Za-z]+)$"
)
# The Gemini Developer API (google-genai without ``vertexai``); the key is in ``x-goog-api-key``.
GEMINI_API_PATH = re.compile(
    r"^/(?P<version>v1(?:beta|alpha)?)/models/(?P<model>[^/:]+):(?P<method>[A-Za-z]+)$"
)
GENERATE_METHODS = frozenset({"generateContent", "streamGenerateContent"})
BACKEND_VERTEX = "vertex"
BACKEND_GEMINI_API = "gemini_api"


@dataclass(frozen=True)
class Usage:
    """``usageMetadata`` of a reply. ``total`` is sent as given (Gemini's includes thoughts)."""

    prompt: int = 0
    candidates: int = 0
    total: int | None = None
    cached: int | None = None
    thoughts: int | None = None

    def to_json(self) -> dict[str, int]:
        total = self.total
        if total is None:
            total = self.prompt + self.candidates + (self.thoughts or 0)
        data = {
            "promptTokenCount": self.prompt,
            "candidatesTokenCount": self.candidates,
            "totalTokenCount": total,
        }
        if self.cached is not None:
            data["cachedContentTokenCount"] = self.cached
        if self.thoughts is not None:
            data["thoughtsTokenCount"] = self.thoughts
        return data


@dataclass(frozen=True)
class FunctionCall:
    """One ``functionCall`` part: the model asks the app to call a tool."""

    name: str
    args: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Grounding:
    """``groundingMetadata`` of a grounded (Google Search) answer: queries and web sources."""

    queries: tuple[str, ...] = ()
    sources: tuple[tuple[str, str], ...] = ()  # (uri, title)

    def to_json(self) -> dict[str, Any]:
        return {
            "webSearchQueries": list(self.queries),
            "groundingChunks": [{"web": {"uri": uri, "title": title}}
                                for uri, title in self.sources],
            "searchEntryPoint": {"renderedContent": "<div>search suggestions</div>"},
        }


@dataclass(frozen=True)
class Reply:
    """One scripted answer.

    ``status`` other than 200 answers with Google error JSON carrying ``error_message``.
    ``delay_seconds`` is waited before the response starts; ``chunk_delay_seconds`` between
    streamed chunks. ``stream_chunks`` splits the text into that many streamed pieces (at least
    one; function calls go in the last piece). ``usage`` None derives counts from word counts.

    Gemini extras: ``thoughts`` is a thought summary, sent as a ``thought: true`` part first
    when the request asks for it (``thinkingConfig.includeThoughts``); ``grounding`` and
    ``safety_ratings`` (category -> probability) go on every candidate; ``block_reason`` answers
    with ``promptFeedback.blockReason`` and no candidates (a blocked prompt);
    ``break_after_chunks`` ends a stream by closing the connection after that many chunks.
    ``finish_reasons`` gives one finish reason per candidate (else ``finish_reason`` for all;
    the request's ``candidateCount`` decides how many candidates there are).
    """

    text: str | None = None
    function_calls: tuple[FunctionCall, ...] = ()
    status: int = 200
    error_message: str | None = None
    delay_seconds: float = 0.0
    chunk_delay_seconds: float = 0.0
    stream_chunks: int = 3
    usage: Usage | None = None
    finish_reason: str = "STOP"
    model_version: str | None = None
    response_id: str | None = None
    thoughts: str | None = None
    grounding: Grounding | None = None
    safety_ratings: Mapping[str, str] = field(default_factory=dict)
    block_reason: str | None = None
    break_after_chunks: int | None = None
    finish_reasons: tuple[str, ...] = ()


def _texts(content: Mapping[str, Any]) -> list[str]:
    parts = content.get("parts")
    if not isinstance(parts, list):
        return []
    return [part["text"] for part in parts if isinstance(part, dict) and "text" in part]


@dataclass(frozen=True)
class ReceivedRequest:
    """One request as the emulator received it (body parsed as JSON when possible)."""

    method: str
    path: str
    query: Mapping[str, Sequence[str]]
    headers: Mapping[str, str]
    body: Any
    model: str | None
    api_method: str | None
    received_at: float
    backend: str | None = None  # BACKEND_VERTEX, BACKEND_GEMINI_API, or None (unknown path)

    @property
    def stream(self) -> bool:
        return self.api_method == "streamGenerateContent"

    @property
    def sse(self) -> bool:
        """A stream asked for as server-sent events (google-genai), not a JSON array."""
        return self.stream and "sse" in self.query.get("alt", ())

    @property
    def api_key(self) -> str | None:
        """The Gemini API key sent (``x-goog-api-key`` header, else ``?key=``)."""
        key = self.headers.get("x-goog-api-key")
        if key:
            return key
        keys = self.query.get("key")
        return keys[0] if keys else None

    @property
    def _body(self) -> dict[str, Any]:
        return self.body if isinstance(self.body, dict) else {}

    @property
    def contents(self) -> list[dict[str, Any]]:
        contents = self._body.get("contents")
        return contents if isinstance(contents, list) else []

    @property
    def parts(self) -> list[dict[str, Any]]:
        """Every part of ``contents``, in order (text, inlineData, fileData, ...)."""
        return [part for content in self.contents for part in content.get("parts") or []
                if isinstance(part, dict)]

    @property
    def texts(self) -> list[str]:
        """Every text part of ``contents``, in order (system instruction excluded)."""
        return [text for content in self.contents for text in _texts(content)]

    @property
    def prompt_text(self) -> str:
        """The text parts of the last ``user`` content, joined by newlines."""
        for content in reversed(self.contents):
            if content.get("role", "user") == "user":
                return "\n".join(_texts(content))
        return ""

    @property
    def system_instruction(self) -> str | None:
        instruction = self._body.get("systemInstruction") or self._body.get("system_instruction")
        if not isinstance(instruction, dict):
            return None
        return "\n".join(_texts(instruction))

    @property
    def generation_config(self) -> dict[str, Any]:
        config = self._body.get("generationConfig") or self._body.get("generation_config") or {}
        return config if isinstance(config, dict) else {}

    @property
    def thinking_config(self) -> dict[str, Any]:
        config = self.generation_config.get("thinkingConfig") or {}
        return config if isinstance(config, dict) else {}

    @property
    def tool_names(self) -> list[str]:
        names: list[str] = []
        for tool in self._body.get("tools") or []:
            for decl in tool.get("functionDeclarations") or tool.get("function_declarations") or []:
                names.append(str(decl.get("name")))
        return names
