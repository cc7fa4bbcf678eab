"""Tail sampling's decision (``otel_mlflow._record.sampling``): table tests over real SDK
``ReadableSpan``s, and agreement with the SDK's own ``TraceIdRatioBased`` sampler."""

from __future__ import annotations

import random

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased
from opentelemetry.trace import SpanContext, Status, StatusCode

import otel_mlflow._record as R
from otel_mlflow._record.sampling import in_ratio, keep_trace

HIGH = 0xFFFF_FFFF_FFFF_FFFF << 64  # the upper 64 bits never matter


def span(trace_id: int, *, ms: float = 10.0, error: bool = False, span_id: int = 1,
         start: int = 1_700_000_000_000_000_000) -> ReadableSpan:
    return ReadableSpan(
        name="s", context=SpanContext(trace_id, span_id, is_remote=False),
        status=Status(StatusCode.ERROR if error else StatusCode.OK),
        start_time=start, end_time=start + int(ms * 1e6),
    )


@pytest.mark.parametrize("trace_id, ratio, slower, spans_kw, kept", [
    (HIGH | 2**63, 1.0, None, [{}], True),                    # ratio 1 keeps everything
    (HIGH | 0, 0.5, None, [{}], True),                          # low bits 0 < bound
    (HIGH | (2**63 - 1), 0.5, None, [{}], True),                # just under the bound
    (HIGH | 2**63, 0.5, None, [{}], False),                     # at the bound: dropped
    (1, 0.0, None, [{}], False),                                # ratio 0 drops OK traces
    (1, 0.0, None, [{}, {"error": True}], True),                # any span in error: kept
    (1, 0.0, 100.0, [{"ms": 150.0}], True),                     # slower than the threshold
    (1, 0.0, 100.0, [{"ms": 50.0}, {"ms": 90.0}], False),       # fast enough: dropped
    (1, 0.0, 100.0, [{"ms": 50.0}, {"ms": 60.0, "start_ms": 70}], True),  # the trace spans 130 ms
])
def test_the_decision_follows_errors_latency_then_the_trace_id(
    trace_id: int, ratio: float, slower: float | None, spans_kw: list[dict], kept: bool
) -> None:
    base = 1_700_000_000_000_000_000
    spans = []
    for index, kw in enumerate(spans_kw):
        kw = dict(kw)
        start = base + int(kw.pop("start_ms", 0) * 1e6)
        spans.append(span(trace_id, span_id=index + 1, start=start, **kw))
    assert keep_trace(spans, ratio, slower) is kept


def test_the_ratio_rule_is_the_sdks_trace_id_ratio_sampler() -> None:
    rng = random.Random(11)
    for ratio in (0.001, 0.1, 0.25, 0.5, 0.9):
        sampler = TraceIdRatioBased(ratio)
        for _ in range(2000):
            trace_id = rng.getrandbits(128) or 1
            sdk = sampler.should_sample(None, trace_id, "x").decision.is_sampled()
            assert in_ratio(trace_id, ratio) is sdk


def test_about_ratio_of_random_trace_ids_are_kept() -> None:
    rng = random.Random(5)
    ids = [rng.getrandbits(128) for _ in range(20_000)]
    share = sum(in_ratio(t, 0.2) for t in ids) / len(ids)
    assert 0.18 < share < 0.22


def test_the_run_carries_the_ratio_it_was_kept_under() -> None:
    spans = [span(7)]
    assert R.build_record(spans, sample_ratio=0.25).tags[R.TAG_SAMPLE_RATIO] == "0.25"
    assert R.build_record(spans, sample_ratio=1).tags[R.TAG_SAMPLE_RATIO] == "1.0"
    assert R.TAG_SAMPLE_RATIO not in R.build_record(spans).tags


def test_a_parentless_root_wins_over_a_remote_parent_span_that_started_earlier() -> None:
    """Spans of two processes (a receiver): the true root even when the clocks disagree."""
    trace_id = 0xABC
    worker = ReadableSpan(name="worker", context=SpanContext(trace_id, 2, is_remote=False),
                          parent=SpanContext(trace_id, 3, is_remote=True),
                          start_time=100, end_time=200)
    front = ReadableSpan(name="front", context=SpanContext(trace_id, 1, is_remote=False),
                         start_time=150, end_time=300)
    root = R.choose_root([worker, front])
    assert root is not None and root.name == "front"
