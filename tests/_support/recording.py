"""A callback handler that records every LangChain callback exactly as LangChain made it.

Tests use it two ways: to capture real ``serialized`` / ``kwargs`` / ``metadata`` payloads for the
pure mapping tables, and as the independent source of truth for the run tree (``parent_run_id``)
that the span tree must equal.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler


@dataclass
class Call:
    event: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]

    @property
    def run_id(self) -> UUID:
        return self.kwargs["run_id"]  # type: ignore[no-any-return]

    @property
    def parent_run_id(self) -> UUID | None:
        return self.kwargs.get("parent_run_id")

    @property
    def metadata(self) -> dict[str, Any]:
        return self.kwargs.get("metadata") or {}

    @property
    def name(self) -> str | None:
        serialized = self.args[0] if self.args else None
        return self.kwargs.get("name") or (serialized or {}).get("name")


_EVENTS = (
    "on_chain_start", "on_chain_end", "on_chain_error",
    "on_chat_model_start", "on_llm_start", "on_llm_end", "on_llm_error", "on_llm_new_token",
    "on_tool_start", "on_tool_end", "on_tool_error",
    "on_retriever_start", "on_retriever_end", "on_retriever_error",
    "on_agent_action", "on_agent_finish", "on_retry",
)


class Recorder(BaseCallbackHandler):
    """Records calls (thread-safe); ``starts()`` gives the start events, ``parents()`` the tree."""

    run_inline = True

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[Call] = []
        self._lock = threading.Lock()

    def _record(self, event: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        with self._lock:
            self.calls.append(Call(event, args, dict(kwargs)))

    def starts(self, event: str | None = None) -> list[Call]:
        return [
            c for c in self.calls
            if c.event.endswith("_start") and (event is None or c.event == event)
        ]

    def parents(self) -> dict[UUID, UUID | None]:
        """run_id -> parent_run_id of every started run."""
        return {c.run_id: c.parent_run_id for c in self.starts()}


def _make(event: str) -> Any:
    def handler(self: Recorder, *args: Any, **kwargs: Any) -> None:
        self._record(event, args, kwargs)

    handler.__name__ = event
    return handler


for _event in _EVENTS:
    setattr(Recorder, _event, _make(_event))
