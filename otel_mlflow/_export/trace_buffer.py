"""``TraceBuffer``: pure per-trace span buffers and the rules that say when a trace is complete.

No I/O, no threads, no locks, no clock of its own: every call that needs the time takes ``now``
(monotonic seconds, or None for "ignore the grace"), and the caller (``MlflowSpanExporter``)
holds its lock around every call. The decisions it returns are carried out by the caller
(converting, logging, counting); ``tests/export/test_trace_buffer.py`` tables them.

When a trace is complete, in priority order:

1. a span without a parent or with a remote parent (the trace's local root) has ended: the trace
   is due ``grace_seconds`` later. With ``remote_parent_is_root=False`` (the OTLP receiver,
   which sees every process of a trace) only a span without any parent counts here; a span with
   a remote parent waits for that parent by rule 2;
2. a span carrying ``otel_mlflow.root=True`` (a LangChain root run) with a local parent (or,
   with ``remote_parent_is_root=False``, any span with a remote parent) has ended: the trace is due ``max(grace_seconds, parent_wait_seconds)`` after the last such root,
   or ``grace_seconds`` after the local root arrives, whichever comes first;
3. ``take(now=None)`` (flush / shutdown) takes complete traces without the grace;
4. a trace whose root has not ended ``trace_timeout_seconds`` after its first span is taken as
   partial (so are open traces with ``include_open``, at shutdown).

Bounds: ``max_buffered_traces`` caps the traces held (buffered + taken but not yet
``release``d). A new trace over the cap makes ``add`` stop and hand back traces to convert
first: up to cap // 8 of the oldest complete ones (``Relief.EARLY``), else the oldest open one
as partial (``Relief.OVERFLOW``). Spans beyond ``max_spans_per_trace`` are counted as dropped.
Ids of taken traces are remembered (at most ``max_done_ids``) so their late spans are counted,
not buffered as a new trace.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

from opentelemetry.sdk.trace import ReadableSpan

from otel_mlflow._record import is_langchain_root, is_trace_root

MAX_DONE_IDS = 50_000
MAX_TICK_SECONDS = 0.25  # the assembler wakes at least this often
RELIEF_SHARE = 8  # an exporting thread over the cap converts up to cap // 8 complete traces


@dataclass
class _Pending:
    first_seen: float
    spans: list[ReadableSpan] = field(default_factory=list)
    due: float | None = None  # monotonic time the trace is complete (rules 1-2), None: open
    has_local_root: bool = False
    dropped: int = 0


@dataclass(frozen=True)
class Ready:
    """A trace taken out of the buffer, to be converted into a record."""

    trace_id: int
    spans: tuple[ReadableSpan, ...]
    partial: bool
    dropped: int


class Relief(enum.Enum):
    """Why ``add`` handed traces back before buffering more (back-pressure)."""

    EARLY = "early"  # complete traces, taken without their grace
    OVERFLOW = "overflow"  # the oldest open trace, taken as partial


@dataclass(frozen=True)
class Added:
    """What ``add`` did: spans up to ``index`` are handled; ``relief`` must be converted (and
    then ``release``d) before ``add`` is called again with the rest."""

    index: int
    late: int = 0
    late_id: int = 0
    wake: bool = False  # a trace became due now (grace 0): wake the assembler
    relief: tuple[Ready, ...] = ()
    relief_kind: Relief | None = None


class TraceBuffer:
    """Spans buffered per trace id, oldest trace first; see the module doc for the rules."""

    def __init__(
        self,
        *,
        grace_seconds: float,
        parent_wait_seconds: float,
        trace_timeout_seconds: float,
        max_buffered_traces: int,
        max_spans_per_trace: int,
        max_done_ids: int = MAX_DONE_IDS,
        remote_parent_is_root: bool = True,
    ) -> None:
        self.grace_seconds = grace_seconds
        self.parent_wait_seconds = parent_wait_seconds
        self.trace_timeout_seconds = trace_timeout_seconds
        self.max_buffered_traces = max_buffered_traces
        self.max_spans_per_trace = max_spans_per_trace
        self._max_done = max_done_ids
        self.remote_parent_is_root = remote_parent_is_root
        self._pending: OrderedDict[int, _Pending] = OrderedDict()
        self._done: OrderedDict[int, None] = OrderedDict()
        self._taken = 0  # traces taken out and not yet released

    def __len__(self) -> int:
        return len(self._pending)

    def held(self) -> int:
        """Traces buffered plus traces taken and not yet released (the capped number)."""
        return len(self._pending) + self._taken

    def is_done(self, trace_id: int) -> bool:
        return trace_id in self._done

    def add(self, spans: Sequence[ReadableSpan], index: int, now: float) -> Added:
        """Buffer ``spans[index:]``; stops early (``relief`` set) when the cap is reached."""
        late = 0
        late_id = 0
        wake = False
        grace = self.grace_seconds
        remote_roots = self.remote_parent_is_root
        while index < len(spans):
            span = spans[index]
            trace_id = span.context.trace_id
            if trace_id in self._done:
                late += 1
                late_id = trace_id
                index += 1
                continue
            pending = self._pending.get(trace_id)
            if pending is None:
                if len(self._pending) + self._taken >= self.max_buffered_traces:
                    relief, kind = self._relieve()
                    if relief:
                        return Added(index, late, late_id, wake, relief, kind)
                pending = self._pending[trace_id] = _Pending(first_seen=now)
            # A root cut by the span cap still completes its trace.
            if is_trace_root(span) and (remote_roots or span.parent is None):
                pending.has_local_root = True
                pending.due = now + grace
                wake = wake or grace == 0
            elif (is_langchain_root(span) or is_trace_root(span)) and not pending.has_local_root:
                pending.due = now + max(grace, self.parent_wait_seconds)
            index += 1
            if len(pending.spans) >= self.max_spans_per_trace:
                pending.dropped += 1
                continue
            pending.spans.append(span)
        return Added(index, late, late_id, wake)

    def take(
        self, now: float | None, *, include_open: bool = False, limit: int | None = None
    ) -> list[Ready]:
        """Remove and return the traces due (at most ``limit``, oldest first); they count as
        held until ``release``. ``now=None`` ignores the grace; ``include_open`` also takes
        traces whose root has not ended (as partial)."""
        ready: list[Ready] = []
        for trace_id, pending in list(self._pending.items()):
            if limit is not None and len(ready) >= limit:
                break
            if pending.due is not None and (now is None or now >= pending.due):
                partial = False
            elif include_open or (
                now is not None and now - pending.first_seen >= self.trace_timeout_seconds
            ):
                partial = True
            else:
                continue
            del self._pending[trace_id]
            ready.append(self._taken_out(trace_id, pending, partial))
        return ready

    def release(self, count: int) -> None:
        """``count`` taken traces were submitted (or failed): they no longer count as held."""
        self._taken = max(0, self._taken - count)

    def next_due(self, now: float) -> float:
        """Seconds until the earliest complete trace is due, at most ``MAX_TICK_SECONDS``."""
        wait = MAX_TICK_SECONDS
        for pending in self._pending.values():
            if pending.due is not None:
                wait = min(wait, pending.due - now)
        return max(wait, 0.0)

    def forget_all(self) -> None:
        """Drop every buffered trace, remembering its id as written (a forked child: the
        parent writes them); nothing counts as held any more."""
        for trace_id in self._pending:
            self._mark_done(trace_id)
        self._pending = OrderedDict()
        self._taken = 0

    def _relieve(self) -> tuple[tuple[Ready, ...], Relief | None]:
        """The cap is reached: the oldest complete traces first (up to cap // 8, so the scan is
        amortised), without their grace; only when none is complete, the oldest open one."""
        if not self._pending:
            return (), None  # everything held is being converted by other threads already
        chunk = max(1, self.max_buffered_traces // RELIEF_SHARE)
        complete: list[int] = []
        for trace_id, pending in self._pending.items():
            if pending.due is not None:
                complete.append(trace_id)
                if len(complete) >= chunk:
                    break
        if complete:
            taken = tuple(
                self._taken_out(trace_id, self._pending.pop(trace_id), False)
                for trace_id in complete
            )
            return taken, Relief.EARLY
        trace_id, pending = self._pending.popitem(last=False)
        return (self._taken_out(trace_id, pending, True),), Relief.OVERFLOW

    def _taken_out(self, trace_id: int, pending: _Pending, partial: bool) -> Ready:
        self._mark_done(trace_id)
        self._taken += 1
        return Ready(trace_id, tuple(pending.spans), partial, pending.dropped)

    def _mark_done(self, trace_id: int) -> None:
        self._done[trace_id] = None
        while len(self._done) > self._max_done:
            self._done.popitem(last=False)
