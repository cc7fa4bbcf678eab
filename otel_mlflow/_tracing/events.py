"""``OtelTracer``'s span-event callbacks: agent actions and finishes, retries (not verbose text).

They add an event to the span of the run they belong to (for a skipped run, its nearest kept
ancestor's), with the event attributes ``_mapping`` builds (content-gated fields only while content
capture is on). A mixin so the tracer module stays about runs and spans.
"""

from __future__ import annotations

import time
from typing import Any
from uuid import UUID

from otel_mlflow._common import semconv as A
from otel_mlflow._tracing import genai_mapping as M
from otel_mlflow._common.faults import report
from otel_mlflow._tracing.run_map import RunMap
from otel_mlflow._tracing.content.serialize import Serializer


class SpanEventCallbacks:
    """Event callbacks for a tracer holding ``_runs`` and ``_content_ser`` (see the docstring)."""

    _runs: RunMap
    _content_ser: Serializer | None

    def _event(self, run_id: UUID, name: str, attrs: dict[str, Any]) -> None:
        run = self._runs.get(run_id)
        span = run.anchor if run is not None else None
        if span is not None:
            span.add_event(name, attrs, time.time_ns())

    def on_agent_action(self, action: Any, *, run_id: UUID, **kwargs: Any) -> None:
        try:
            ser = self._content_ser
            self._event(run_id, A.EVENT_AGENT_ACTION, M.agent_action_attributes(action, ser))
        except Exception as exc:  # noqa: BLE001
            report("tracer.on_agent_action", exc)

    def on_agent_finish(self, finish: Any, *, run_id: UUID, **kwargs: Any) -> None:
        try:
            ser = self._content_ser
            self._event(run_id, A.EVENT_AGENT_FINISH, M.agent_finish_attributes(finish, ser))
        except Exception as exc:  # noqa: BLE001
            report("tracer.on_agent_finish", exc)

    def on_retry(self, retry_state: Any, *, run_id: UUID, **kwargs: Any) -> None:
        try:
            ser = self._content_ser
            self._event(run_id, A.EVENT_RETRY, M.retry_attributes(retry_state, ser))
        except Exception as exc:  # noqa: BLE001
            report("tracer.on_retry", exc)

    def on_text(self, text: str, **kwargs: Any) -> None:
        """Ignored: verbose-mode text adds nothing the spans do not already hold."""
