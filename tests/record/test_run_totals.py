"""Run totals (active-run mode): the bounded running summary, as tables of per-trace metrics.

Pure: the per-trace metric mappings are what ``build_record`` produces (the last case builds them
from real spans of a real LangChain chain); no MLflow, no I/O.
"""

from __future__ import annotations

import math
import random

import pytest

import otel_mlflow._record as R
from otel_mlflow._record import run_totals as T


def _trace(duration: float, calls: int = 1, tin: int = 10, tout: int = 2, total: int | None = None,
           errors: int = 0, ttft: float | None = None, cost: float | None = None,
           reasoning: int = 0, cache: int = 0) -> dict[str, float]:
    metrics = {
        R.M_TRACE_DURATION: duration, R.M_LLM_CALLS: calls, R.M_TOKENS_INPUT: tin,
        R.M_TOKENS_OUTPUT: tout, R.M_TOKENS_TOTAL: total if total is not None else tin + tout,
        R.M_TOKENS_REASONING: reasoning, R.M_TOKENS_CACHE_READ: cache, R.M_ERRORS: errors,
        R.M_SPANS: 3, R.M_LLM_DURATION: duration / 2,
    }
    if ttft is not None:
        metrics[R.M_LLM_TTFT] = ttft
    if cost is not None:
        metrics[R.M_COST_USD] = cost
    return {k: float(v) for k, v in metrics.items()}


# The seed's scenario: 4 calls in one run, one failing (3 error spans, no tokens), 115 tokens.
SEED = [
    _trace(400.0, tin=20, tout=15, total=35),
    _trace(300.0, tin=18, tout=12, total=30, ttft=80.0),
    _trace(900.0, tin=25, tout=25, total=50, reasoning=4),
    _trace(120.0, tin=0, tout=0, total=0, errors=3),
]


@pytest.mark.parametrize(
    ("traces", "expected"),
    [
        ([], {R.M_RUN_TRACES: 0.0, R.M_RUN_LLM_CALLS: 0.0, R.M_RUN_TOKENS_TOTAL: 0.0,
              R.M_RUN_ERRORS: 0.0}),
        (SEED, {R.M_RUN_TRACES: 4.0, R.M_RUN_LLM_CALLS: 4.0, R.M_RUN_TOKENS_INPUT: 63.0,
                R.M_RUN_TOKENS_OUTPUT: 52.0, R.M_RUN_TOKENS_TOTAL: 115.0,
                R.M_RUN_TOKENS_REASONING: 4.0, R.M_RUN_TOKENS_CACHE_READ: 0.0,
                R.M_RUN_ERRORS: 3.0,
                # nearest rank over [120, 300, 400, 900]: rank 2 and rank 4
                R.M_RUN_LATENCY_P50: 300.0, R.M_RUN_LATENCY_P95: 900.0,
                R.M_RUN_TTFT_P50: 80.0}),
        ([_trace(10.0, cost=0.0012), _trace(20.0), _trace(30.0, cost=0.0003)],
         {R.M_RUN_TRACES: 3.0, R.M_RUN_COST_USD: 0.0015, R.M_RUN_LATENCY_P50: 20.0}),
        ([_trace(5.0, calls=2, tin=7, tout=3, total=14)],  # a reported total beats in + out
         {R.M_RUN_TOKENS_TOTAL: 14.0, R.M_RUN_LLM_CALLS: 2.0, R.M_RUN_LATENCY_P95: 5.0}),
    ],
    ids=["empty", "seed-4-calls-one-failing", "cost-summed-when-present", "reported-totals"],
)
def test_totals_table(traces: list[dict[str, float]], expected: dict[str, float]) -> None:
    got = T.RunTotals.from_steps(traces).metrics()
    for name, value in expected.items():
        assert got[name] == pytest.approx(value), name


def test_percentiles_and_cost_are_absent_until_a_trace_has_them() -> None:
    got = T.RunTotals.from_steps([{R.M_LLM_CALLS: 1.0}]).metrics()
    assert R.M_RUN_COST_USD not in got
    assert R.M_RUN_TTFT_P50 not in got and R.M_RUN_LATENCY_P50 not in got
    assert got[R.M_RUN_TRACES] == 1.0


def test_non_finite_values_are_not_counted() -> None:
    got = T.RunTotals.from_steps([_trace(math.nan, tin=5), _trace(10.0, tin=math.inf)]).metrics()
    assert got[R.M_RUN_TRACES] == 2.0
    assert got[R.M_RUN_TOKENS_INPUT] == 5.0
    assert got[R.M_RUN_LATENCY_P50] == 10.0


def test_every_run_metric_is_a_documented_schema_name() -> None:
    got = T.RunTotals.from_steps([_trace(1.0, ttft=1.0, cost=1.0)]).metrics()
    names = {v for k, v in vars(R).items() if k.startswith("M_RUN_")}
    assert set(got) == names


def _nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def test_percentiles_stay_within_the_documented_error_past_the_exact_range() -> None:
    rng = random.Random(13)
    values = [rng.lognormvariate(6, 1.2) for _ in range(20_000)] + [0.0] * 50
    series = T.QuantileSeries()
    for v in values:
        series.add(v)
    assert series.exact is None  # past EXACT_VALUES: the sketch answers
    assert len(series.buckets) <= T.MAX_BUCKETS
    for q in (0.01, 0.5, 0.95, 0.99):
        exact = _nearest_rank(values, q)
        assert series.quantile(q) == pytest.approx(exact, rel=T.RELATIVE_ACCURACY), q


def test_the_sketch_stays_bounded_for_values_spanning_many_magnitudes() -> None:
    series = T.QuantileSeries()
    for i in range(60_000):
        series.add(1.0001 ** i)  # ~1 .. 400: many buckets, but bounded
        series.add(10.0 ** (i % 300 - 100))  # 1e-100 .. 1e199
    assert len(series.buckets) <= T.MAX_BUCKETS
    assert series.count == 120_000


def test_exact_up_to_the_exact_range() -> None:
    values = [float(v) for v in range(T.EXACT_VALUES, 0, -1)]
    series = T.QuantileSeries()
    for v in values:
        series.add(v)
    assert series.exact is not None
    assert series.quantile(0.95) == _nearest_rank(values, 0.95)


def test_history_steps_rebuild_the_same_totals_as_live_adds() -> None:
    live = T.RunTotals.from_steps(SEED)
    history: dict[str, list[tuple[int, float]]] = {}
    for step, metrics in enumerate(SEED):
        for name, value in metrics.items():
            history.setdefault(name, []).append((step, value))
    # a run-total point and a step without trace.duration_ms (the user's own metric) are ignored
    history.setdefault(R.M_RUN_TRACES, []).append((3, 4.0))
    history.setdefault(R.M_TOKENS_TOTAL, []).append((7, 999.0))
    rebuilt = T.RunTotals.from_steps(T.steps_from_history(history))
    assert rebuilt.metrics() == live.metrics()


def test_totals_from_real_trace_metrics() -> None:
    """Per-trace metrics of real chain runs (build_record) sum into the run totals."""
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage
    from langchain_core.prompts import ChatPromptTemplate
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from otel_mlflow._tracing.handler import OtelTracer

    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    replies = [AIMessage(content=f"a{i}", usage_metadata={"input_tokens": 10, "output_tokens": i,
                                                          "total_tokens": 10 + i})
               for i in range(3)]
    chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | GenericFakeChatModel(
        messages=iter(replies))
    tracer = OtelTracer(provider)
    for i in range(3):
        chain.invoke({"q": str(i)}, config={"callbacks": [tracer]})
    by_trace: dict[int, list] = {}
    for span in memory.get_finished_spans():
        by_trace.setdefault(span.context.trace_id, []).append(span)
    records = [R.build_record(spans, encode=False) for spans in by_trace.values()]
    got = T.RunTotals.from_steps(r.metrics for r in records).metrics()
    assert got[R.M_RUN_TRACES] == 3.0
    assert got[R.M_RUN_LLM_CALLS] == 3.0
    assert got[R.M_RUN_TOKENS_TOTAL] == 33.0
    assert got[R.M_RUN_LATENCY_P95] == max(r.metrics[R.M_TRACE_DURATION] for r in records)
    provider.shutdown()
