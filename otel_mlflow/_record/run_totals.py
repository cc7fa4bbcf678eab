"""Pure: a bounded running summary of the traces written into one MLflow run (active-run mode).

Each trace in an active run logs its metrics as one step, and MLflow's runs table shows only a
metric's last step. ``RunTotals`` keeps what the run holds so far, so the writer can log run-level
totals next to each batch (``run.*`` in ``docs/run-schema.md``)::

    totals = RunTotals()
    totals.add(trace_metrics)            # one call per trace, its per-trace metrics
    totals.metrics()                     # {"run.traces": 1.0, "run.tokens.total": 115.0, ...}

Exact: ``run.traces`` (traces added), and the sums of the per-trace ``llm.calls``,
``tokens.input/output/total/reasoning/cache_read``, ``errors`` and, when any trace carried it,
``cost.usd``.

Percentiles (``run.latency_ms.p50`` / ``.p95`` of the per-trace ``trace.duration_ms``,
``run.ttft_ms.p50`` of the per-trace ``llm.ttft_ms``; absent until a trace had a value) use the
nearest-rank definition: the value at rank ``ceil(q * n)`` of the sorted values. They are exact
while a series holds at most ``EXACT_VALUES`` values. Past that, the values move into a
logarithmic bucket sketch (DDSketch's layout): bucket ``i`` holds the values in
``(gamma**(i-1), gamma**i]`` with ``gamma = (1 + a) / (1 - a)``, ``a = RELATIVE_ACCURACY``, and a
quantile is its bucket's midpoint ``2 * gamma**i / (gamma + 1)``, so it is within ``a`` (1 %)
relative error of the exact nearest-rank value. Values <= ``MIN_POSITIVE`` (1 microsecond, in
ms) count as zero. The sketch keeps at most ``MAX_BUCKETS`` buckets; past that the lowest two
merge (the bound then holds for quantiles above the merged range, as in DDSketch). Memory per run
is therefore bounded whatever the number of traces.

After a restart the writer rebuilds the summary from the run's metric history: ``add`` each
step's per-trace metrics (``from_steps``). No I/O, no MLflow import.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from otel_mlflow._record.schema import (
    M_COST_USD,
    M_ERRORS,
    M_LLM_CALLS,
    M_LLM_TTFT,
    M_RUN_COST_USD,
    M_RUN_ERRORS,
    M_RUN_LATENCY_P50,
    M_RUN_LATENCY_P95,
    M_RUN_LLM_CALLS,
    M_RUN_TOKENS_CACHE_READ,
    M_RUN_TOKENS_INPUT,
    M_RUN_TOKENS_OUTPUT,
    M_RUN_TOKENS_REASONING,
    M_RUN_TOKENS_TOTAL,
    M_RUN_TRACES,
    M_RUN_TTFT_P50,
    M_TOKENS_CACHE_READ,
    M_TOKENS_INPUT,
    M_TOKENS_OUTPUT,
    M_TOKENS_REASONING,
    M_TOKENS_TOTAL,
    M_TRACE_DURATION,
)

EXACT_VALUES = 512
RELATIVE_ACCURACY = 0.01
MAX_BUCKETS = 2048
MIN_POSITIVE = 1e-3

# run-level sum <- per-trace metric (always logged, 0 included)
SUMS: tuple[tuple[str, str], ...] = (
    (M_RUN_LLM_CALLS, M_LLM_CALLS),
    (M_RUN_TOKENS_INPUT, M_TOKENS_INPUT),
    (M_RUN_TOKENS_OUTPUT, M_TOKENS_OUTPUT),
    (M_RUN_TOKENS_TOTAL, M_TOKENS_TOTAL),
    (M_RUN_TOKENS_REASONING, M_TOKENS_REASONING),
    (M_RUN_TOKENS_CACHE_READ, M_TOKENS_CACHE_READ),
    (M_RUN_ERRORS, M_ERRORS),
)
# The per-trace metrics the summary reads: what a rebuild needs from the run's history.
SOURCE_METRICS: tuple[str, ...] = (
    M_TRACE_DURATION, *(src for _, src in SUMS), M_LLM_TTFT, M_COST_USD,
)

_GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
_LOG_GAMMA = math.log(_GAMMA)


@dataclass
class QuantileSeries:
    """Values of one series: exact up to ``EXACT_VALUES``, then a bounded log-bucket sketch."""

    exact: list[float] | None = field(default_factory=list)
    buckets: dict[int, int] = field(default_factory=dict)
    zeros: int = 0
    count: int = 0

    def add(self, value: float) -> None:
        if not math.isfinite(value):
            return
        self.count += 1
        if self.exact is not None:
            self.exact.append(value)
            if len(self.exact) > EXACT_VALUES:
                values, self.exact = self.exact, None
                for v in values:
                    self._bucket(v)
            return
        self._bucket(value)

    def _bucket(self, value: float) -> None:
        if value <= MIN_POSITIVE:
            self.zeros += 1
            return
        index = math.ceil(math.log(value) / _LOG_GAMMA)
        self.buckets[index] = self.buckets.get(index, 0) + 1
        if len(self.buckets) > MAX_BUCKETS:
            low, second = sorted(self.buckets)[:2]
            self.buckets[second] += self.buckets.pop(low)

    def quantile(self, q: float) -> float | None:
        """The nearest-rank ``q`` quantile (exact, or within the sketch's relative error)."""
        if self.count == 0:
            return None
        rank = max(1, math.ceil(q * self.count))
        if self.exact is not None:
            return sorted(self.exact)[rank - 1]
        seen = self.zeros
        if rank <= seen:
            return 0.0
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            if rank <= seen:
                return 2 * _GAMMA**index / (_GAMMA + 1)
        return 2 * _GAMMA ** max(self.buckets) / (_GAMMA + 1)  # pragma: no cover - counts agree


@dataclass
class RunTotals:
    """The running summary of one run; see the module docstring."""

    traces: int = 0
    sums: dict[str, float] = field(default_factory=lambda: {name: 0.0 for name, _ in SUMS})
    cost: float | None = None
    latency: QuantileSeries = field(default_factory=QuantileSeries)
    ttft: QuantileSeries = field(default_factory=QuantileSeries)

    def add(self, metrics: Mapping[str, float]) -> None:
        """Count one trace, given its per-trace metrics (names from ``_record.schema``)."""
        self.traces += 1
        for name, source in SUMS:
            self.sums[name] += _finite(metrics.get(source)) or 0.0
        cost = _finite(metrics.get(M_COST_USD))
        if cost is not None:
            self.cost = (self.cost or 0.0) + cost
        duration = _finite(metrics.get(M_TRACE_DURATION))
        if duration is not None:
            self.latency.add(duration)
        ttft = _finite(metrics.get(M_LLM_TTFT))
        if ttft is not None:
            self.ttft.add(ttft)

    def metrics(self) -> dict[str, float]:
        """The ``run.*`` metrics as they stand (percentiles and cost only once they exist)."""
        out: dict[str, float] = {M_RUN_TRACES: float(self.traces)}
        out.update((name, round(value, 6)) for name, value in self.sums.items())
        if self.cost is not None:
            out[M_RUN_COST_USD] = round(self.cost, 9)
        for name, series, q in (
            (M_RUN_LATENCY_P50, self.latency, 0.5),
            (M_RUN_LATENCY_P95, self.latency, 0.95),
            (M_RUN_TTFT_P50, self.ttft, 0.5),
        ):
            value = series.quantile(q)
            if value is not None:
                out[name] = round(value, 3)
        return out

    @classmethod
    def from_steps(cls, steps: Iterable[Mapping[str, float]]) -> RunTotals:
        """A summary rebuilt from per-trace metrics, one mapping per trace (step)."""
        totals = cls()
        for metrics in steps:
            totals.add(metrics)
        return totals


def steps_from_history(history: Mapping[str, Iterable[tuple[int, float]]]) -> list[dict[str, float]]:
    """Per-step metric mappings from ``{metric: [(step, value), ...]}`` (a run's history).

    A trace is a step that has ``trace.duration_ms`` (every trace logs it); a step logged twice
    keeps its last value.
    """
    by_step: dict[int, dict[str, float]] = {}
    for name, points in history.items():
        for step, value in points:
            by_step.setdefault(int(step), {})[name] = float(value)
    return [by_step[s] for s in sorted(by_step) if M_TRACE_DURATION in by_step[s]]


def _finite(value: float | None) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
