"""Bounded state of open LangChain runs for ``OtelTracer`` (no OTel calls, no I/O).

``RunMap`` keys ``RunState`` by LangChain run id under a lock. Limits:

- at most ``max_open`` entries: adding one more evicts the oldest open run;
- runs open longer than ``ttl_seconds`` are removed by a sweep that ``add`` runs at most every
  ``min(5 s, ttl / 4)`` (no thread of its own).

``add`` returns what it removed, with the reason (``otel_mlflow.run_evicted`` /
``otel_mlflow.run_timeout``), and the tracer ends those spans. Reads (``get``) take no lock: a
dict lookup is atomic in CPython and the hot callbacks (tokens, child starts) only read.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from opentelemetry.context import Context
from opentelemetry.trace import Span

from otel_mlflow._common import semconv as A

SWEEP_INTERVAL_NS = 5_000_000_000


class RunState:
    """State of one open LangChain run (``span`` is None for a skipped run)."""

    __slots__ = (
        "span", "anchor", "ctx", "start_ns", "first_token_ns", "run_type", "meta", "parent",
        "compose", "in_obj", "in_json", "out_obj", "out_json", "rid", "memo", "attrs",
        "late_in",
    )

    def __init__(
        self,
        span: Span | None,
        anchor: Span | None,
        ctx: Context | None,
        start_ns: int,
        run_type: str,
        meta: dict[str, Any] | None,
        parent: RunState | None,
    ) -> None:
        self.span = span
        # The span children attach to: this run's own, or the nearest kept ancestor's.
        self.anchor = anchor
        self.ctx = ctx
        self.start_ns = start_ns
        self.first_token_ns = 0
        self.run_type = run_type
        self.meta = meta
        self.parent = parent
        # LangChain's own compositions hand their input to the first step and return the last
        # step's output untouched: the same objects, serialized once (see ``_reuse``).
        self.compose = False
        self.in_obj: Any = None
        self.in_json: str | None = None
        self.out_obj: Any = None
        self.out_json: str | None = None
        # The run id as text, reused as the children's parent run id attribute.
        self.rid: str | None = None
        # Content JSON memo shared by the runs of one trace (``_content.Content``), or None.
        self.memo: dict[int, Any] | None = None
        # The span's own attribute dict when the tracer may write its end values straight into
        # it (``_span_ops.SpanOps.start``), else None.
        self.attrs: dict[str, Any] | None = None
        # A streamed chain starts with LangChain's placeholder input (``{"input": ""}``) and gets
        # its real input at end (``on_chain_end(..., inputs=...)``): the placeholder is kept
        # here and the input attribute written at end, else None.
        self.late_in: Any = None


class RunMap:
    """Open runs by run id, capped and swept (see the module docstring)."""

    __slots__ = ("_runs", "_lock", "max_open", "ttl_seconds", "_ttl_ns", "_sweep_every_ns",
                 "_next_sweep_ns", "get")

    def __init__(self, max_open: int, ttl_seconds: float) -> None:
        self._runs: dict[UUID, RunState] = {}
        self._lock = threading.Lock()
        self.max_open = max(int(max_open), 1)
        self.ttl_seconds = float(ttl_seconds)
        self._ttl_ns = int(self.ttl_seconds * 1e9)
        self._sweep_every_ns = min(SWEEP_INTERVAL_NS, max(self._ttl_ns // 4, 1))
        self._next_sweep_ns = 0
        self.get = self._runs.get

    def __len__(self) -> int:
        return len(self._runs)

    def __contains__(self, run_id: object) -> bool:
        return run_id in self._runs

    def add(self, run_id: UUID, run: RunState, now: int) -> Sequence[tuple[RunState, str]]:
        """Store ``run``; return the runs removed to keep the limits, with the reason."""
        with self._lock:
            runs = self._runs
            runs[run_id] = run
            if len(runs) <= self.max_open and now < self._next_sweep_ns:
                return ()  # the common case: nothing to remove, nothing allocated
            removed: list[tuple[RunState, str]] = []
            if len(runs) > self.max_open:
                # Dicts keep insertion order: the first key is the oldest open run.
                removed.append((runs.pop(next(iter(runs))), A.RUN_EVICTED_ERROR))
            if now >= self._next_sweep_ns:
                self._next_sweep_ns = now + self._sweep_every_ns
                limit = now - self._ttl_ns
                expired = []
                for key, open_run in runs.items():
                    if open_run.start_ns > limit:
                        break
                    expired.append(key)
                removed.extend((runs.pop(key), A.RUN_TIMEOUT_ERROR) for key in expired)
        return removed

    def pop(self, run_id: UUID) -> RunState | None:
        with self._lock:
            return self._runs.pop(run_id, None)
