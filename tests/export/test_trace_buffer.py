"""TraceBuffer's completion rules, caps and back-pressure as tables: situation -> decision.

The buffer is pure (no clock, no threads), so each row drives it with explicit times. The spans
are real SDK ``ReadableSpan``s (built directly, as the SDK builds them when a span ends).
"""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanContext, TraceFlags

from otel_mlflow._common import semconv as A
from otel_mlflow._export.trace_buffer import MAX_TICK_SECONDS, Relief, TraceBuffer

GRACE = 1.0
PARENT_WAIT = 10.0
TIMEOUT = 300.0


def _ctx(trace_id: int, span_id: int, remote: bool = False) -> SpanContext:
    return SpanContext(trace_id, span_id, is_remote=remote, trace_flags=TraceFlags(1))


def span(trace_id: int, kind: str, span_id: int = 2) -> ReadableSpan:
    """kind: ``root`` (no parent), ``remote`` (remote parent: a local root), ``lc_root``
    (a LangChain root under a local parent), ``child``."""
    parent = None
    attributes: dict[str, Any] = {}
    if kind == "remote":
        parent = _ctx(trace_id, 99, remote=True)
    elif kind == "lc_root":
        parent = _ctx(trace_id, 1)
        attributes[A.ROOT] = True
    elif kind == "child":
        parent = _ctx(trace_id, 1)
    return ReadableSpan(name=kind, context=_ctx(trace_id, span_id), parent=parent,
                        attributes=attributes)


def buffer(**kwargs: Any) -> TraceBuffer:
    kwargs = {"grace_seconds": GRACE, "parent_wait_seconds": PARENT_WAIT,
              "trace_timeout_seconds": TIMEOUT, "max_buffered_traces": 100,
              "max_spans_per_trace": 100, **kwargs}
    return TraceBuffer(**kwargs)


# (situation, spans of trace 1 arriving at t=0, take at, include_open) -> (taken?, partial?)
COMPLETION = [
    ("only a child: open", ["child"], 5.0, False, None),
    ("root ended, grace not over", ["child", "root"], 0.5, False, None),
    ("root ended, grace over", ["child", "root"], GRACE, False, False),
    ("remote parent counts as local root", ["remote"], GRACE, False, False),
    ("flush ignores the grace", ["root"], None, False, False),
    ("LangChain root waits for its parent", ["lc_root"], GRACE, False, None),
    ("LangChain root: parent wait over", ["lc_root"], PARENT_WAIT, False, False),
    ("LangChain root, then local root: grace only", ["lc_root", "root"], GRACE, False, False),
    ("root never ended: timeout -> partial", ["child"], TIMEOUT, False, True),
    ("shutdown takes open traces as partial", ["child"], None, True, True),
    ("shutdown takes complete traces whole", ["root"], None, True, False),
]


@pytest.mark.parametrize(("situation", "kinds", "take_at", "include_open", "expected"),
                         COMPLETION, ids=[row[0] for row in COMPLETION])
def test_completion_rules(situation: str, kinds: list[str], take_at: float | None,
                          include_open: bool, expected: bool | None) -> None:
    buf = buffer()
    spans = [span(1, kind, span_id=i + 2) for i, kind in enumerate(kinds)]
    assert buf.add(spans, 0, now=0.0).index == len(spans)
    taken = buf.take(take_at, include_open=include_open)
    if expected is None:
        assert taken == [] and len(buf) == 1
    else:
        assert [t.trace_id for t in taken] == [1] and taken[0].partial is expected
        assert len(taken[0].spans) == len(spans) and len(buf) == 0 and buf.held() == 1


# (situation, traces already buffered: [complete?], cap) -> (relief kind, trace ids handed back)
BACKPRESSURE = [
    ("under the cap: nothing handed back", [True, False], 3, None, []),
    ("cap reached, one complete: it goes early", [False, True], 2, Relief.EARLY, [2]),
    ("cap reached, none complete: oldest open as partial", [False, False], 2, Relief.OVERFLOW,
     [1]),
    ("early takes at most cap // 8", [True] * 16, 16, Relief.EARLY, [1, 2]),
]


@pytest.mark.parametrize(("situation", "complete", "cap", "kind", "ids"), BACKPRESSURE,
                         ids=[row[0] for row in BACKPRESSURE])
def test_back_pressure_decisions(situation: str, complete: list[bool], cap: int,
                                 kind: Relief | None, ids: list[int]) -> None:
    buf = buffer(max_buffered_traces=cap)
    for trace_id, done in enumerate(complete, start=1):
        buf.add([span(trace_id, "root" if done else "child")], 0, now=0.0)
    new = [span(1000, "child")]
    added = buf.add(new, 0, now=0.1)
    assert added.relief_kind is kind
    assert [r.trace_id for r in added.relief] == ids
    assert all(r.partial is (kind is Relief.OVERFLOW) for r in added.relief)
    if kind is None:
        assert added.index == 1 and buf.held() == len(complete) + 1
    else:
        # Nothing of the new trace buffered yet; the relieved traces still count as held.
        assert added.index == 0 and buf.held() == len(complete)
        buf.release(len(added.relief))
        assert buf.add(new, 0, now=0.1).index == 1


def test_taken_traces_count_until_released_and_held_is_the_cap() -> None:
    buf = buffer(max_buffered_traces=1)
    buf.add([span(1, "root")], 0, now=0.0)
    assert len(buf.take(None)) == 1 and buf.held() == 1
    # A new trace while the taken one is not yet submitted: nothing left to relieve here.
    added = buf.add([span(2, "child")], 0, now=0.0)
    assert added.relief == () and added.index == 1 and buf.held() == 2
    buf.release(1)
    assert buf.held() == 1


# (situation, spans) -> (spans kept, dropped count, late count)
CAPS = [
    ("span cap: extra spans are dropped", ["child"] * 5, 3, 2),
    ("a root beyond the span cap still completes", ["child"] * 3 + ["root"], 3, 1),
]


@pytest.mark.parametrize(("situation", "kinds", "kept", "dropped"), CAPS,
                         ids=[row[0] for row in CAPS])
def test_span_cap(situation: str, kinds: list[str], kept: int, dropped: int) -> None:
    buf = buffer(max_spans_per_trace=3)
    buf.add([span(1, kind, span_id=i + 2) for i, kind in enumerate(kinds)], 0, now=0.0)
    (taken,) = buf.take(None, include_open=True)
    assert len(taken.spans) == kept and taken.dropped == dropped
    assert taken.partial is ("root" not in kinds)


def test_late_spans_of_a_taken_trace_are_counted_not_buffered() -> None:
    buf = buffer()
    buf.add([span(7, "root")], 0, now=0.0)
    buf.take(None)
    added = buf.add([span(7, "child", 3), span(7, "child", 4)], 0, now=5.0)
    assert (added.late, added.late_id, len(buf)) == (2, 7, 0)


def test_done_ids_are_bounded() -> None:
    buf = buffer(max_done_ids=2)
    for trace_id in (1, 2, 3):
        buf.add([span(trace_id, "root")], 0, now=0.0)
    buf.take(None)
    assert not buf.is_done(1) and buf.is_done(2) and buf.is_done(3)


# (situation, spans at t=0, now) -> seconds the assembler may sleep
NEXT_DUE = [
    ("nothing due: the tick", [], 0.0, MAX_TICK_SECONDS),
    ("open trace: the tick", ["child"], 0.0, MAX_TICK_SECONDS),
    ("due soon", ["root"], GRACE - 0.1, pytest.approx(0.1)),
    ("overdue: zero", ["root"], GRACE + 5, 0.0),
]


@pytest.mark.parametrize(("situation", "kinds", "now", "wait"), NEXT_DUE,
                         ids=[row[0] for row in NEXT_DUE])
def test_next_due(situation: str, kinds: list[str], now: float, wait: Any) -> None:
    buf = buffer()
    buf.add([span(1, kind) for kind in kinds], 0, now=0.0)
    assert buf.next_due(now) == wait


def test_zero_grace_asks_to_wake_the_assembler() -> None:
    assert buffer(grace_seconds=0.0).add([span(1, "root")], 0, now=0.0).wake is True
    assert buffer().add([span(1, "root")], 0, now=0.0).wake is False


def test_forget_all_drops_traces_and_remembers_them_as_written() -> None:
    buf = buffer()
    buf.add([span(1, "child"), span(2, "root")], 0, now=0.0)
    buf.take(None)
    buf.forget_all()
    assert len(buf) == 0 and buf.held() == 0 and buf.is_done(1) and buf.is_done(2)


# The receiver (remote_parent_is_root=False): spans of every process of a trace arrive there.
RECEIVER_COMPLETION = [
    ("remote parent waits for its parent", ["remote"], GRACE, None),
    ("remote parent: parent wait over", ["remote"], PARENT_WAIT, False),
    ("remote parent, then the parentless root: grace only", ["remote", "root"], GRACE, False),
    ("parentless root first, the other process later", ["root", "remote"], GRACE, False),
    ("children only: open", ["child", "child"], PARENT_WAIT, None),
    ("LangChain root rule unchanged", ["lc_root"], PARENT_WAIT, False),
]


@pytest.mark.parametrize(("situation", "kinds", "take_at", "expected"), RECEIVER_COMPLETION,
                         ids=[row[0] for row in RECEIVER_COMPLETION])
def test_receiver_completion_rules(situation: str, kinds: list[str], take_at: float,
                                   expected: bool | None) -> None:
    buf = buffer(remote_parent_is_root=False)
    spans = [span(1, kind, span_id=i + 2) for i, kind in enumerate(kinds)]
    assert buf.add(spans, 0, now=0.0).index == len(spans)
    taken = buf.take(take_at)
    if expected is None:
        assert taken == [] and len(buf) == 1
    else:
        assert [t.trace_id for t in taken] == [1] and taken[0].partial is expected


def test_in_receiver_mode_the_last_remote_parent_span_restarts_the_wait() -> None:
    buf = buffer(remote_parent_is_root=False)
    buf.add([span(1, "remote", span_id=2)], 0, now=0.0)
    buf.add([span(1, "remote", span_id=3)], 0, now=8.0)  # a second call to the worker
    assert buf.take(PARENT_WAIT) == []
    assert [t.trace_id for t in buf.take(8.0 + PARENT_WAIT)] == [1]
