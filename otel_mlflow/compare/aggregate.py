"""Pure aggregation: runs (plain facts) -> one row per group with the comparison's columns.

No MLflow import, no I/O: ``reader.py`` turns MLflow runs into :class:`RunFacts`, this module
groups and summarises them, ``render.py`` / ``html.py`` draw the result.

Rules, in the order they apply:

1. **Group key.** ``--by chain.version`` reads the tag ``otel_mlflow.chain.version``;
   ``tag:KEY`` / ``param:KEY`` read that tag or param. A run without the key (or with an empty
   value) goes to the group ``(none)``: it is shown, not dropped.
2. **Errors.** A run is an error when its tag ``otel_mlflow.status`` is ``ERROR``; a run without
   that tag (not written by otel_mlflow) when its MLflow status is ``FAILED``.
3. **Missing metrics.** Every figure uses the runs that have its metric; ``n`` says how many.
   A column with no such run is ``None`` (shown as ``n/a``). ``missing`` counts the runs of a group
   without the core metric ``trace.duration_ms`` (not written by otel_mlflow, or half-written).
4. **Percentiles** interpolate linearly between the two nearest ranks (NumPy's default):
   position ``q * (n - 1)`` in the sorted values.
5. **Best value** per column, among groups that have one, only when at least two groups do:
   lowest latency, TTFT, error rate and cost; highest feedback. Ties are all marked. Runs and
   token columns are not ranked (fewer tokens is not better by itself).
6. **Order.** Groups by their first run's start time (the oldest version first, so a new
   version reads below the one it replaces), then by key; ``(none)`` last.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from otel_mlflow._record import schema as S

NONE_GROUP = "(none)"
BY_CHAIN_VERSION = "chain.version"

Better = Literal["lower", "higher", "none"]


class CompareError(ValueError):
    """Bad input for ``compare``: the message is one line for the user (exit code 2)."""


@dataclass(frozen=True)
class GroupBy:
    """What groups runs: a tag or a param, by name."""

    kind: Literal["tag", "param"]
    key: str

    @property
    def label(self) -> str:
        if self.kind == "tag" and self.key == S.TAG_CHAIN_VERSION:
            return BY_CHAIN_VERSION
        return f"{self.kind}:{self.key}"


def parse_by(text: str) -> GroupBy:
    """``chain.version`` | ``tag:KEY`` | ``param:KEY`` -> :class:`GroupBy`."""
    text = text.strip()
    if text == BY_CHAIN_VERSION:
        return GroupBy("tag", S.TAG_CHAIN_VERSION)
    kind, sep, key = text.partition(":")
    if sep and kind in ("tag", "param") and key.strip():
        return GroupBy(kind, key.strip())  # type: ignore[arg-type]
    raise CompareError(f"--by {text!r}: expected chain.version, tag:KEY or param:KEY")


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(text: str) -> float:
    """``90s`` / ``30m`` / ``24h`` / ``7d`` / ``2w`` -> seconds (> 0)."""
    value, unit = text.strip()[:-1], text.strip()[-1:].lower()
    try:
        seconds = float(value) * _UNITS[unit]
    except (KeyError, ValueError):
        seconds = math.nan
    if not seconds > 0 or math.isinf(seconds):
        raise CompareError(f"--since {text!r}: expected a duration such as 90s, 30m, 24h, 7d or 2w")
    return seconds


@dataclass(frozen=True)
class RunFacts:
    """The part of one MLflow run the comparison reads."""

    run_id: str
    status: str  # MLflow run status: FINISHED, FAILED, ...
    tags: Mapping[str, str]
    params: Mapping[str, str]
    metrics: Mapping[str, float]
    start_time: int = 0  # ms since the epoch (MLflow's run start)

    def group_key(self, by: GroupBy) -> str:
        value = (self.tags if by.kind == "tag" else self.params).get(by.key)
        return value if value else NONE_GROUP

    @property
    def is_error(self) -> bool:
        status = self.tags.get(S.TAG_STATUS)
        if status is not None:
            return status == S.STATUS_ERROR
        return self.status == "FAILED"


@dataclass(frozen=True)
class Column:
    """One figure of a row: ``stat`` of ``metric`` over the group's runs."""

    id: str
    header: str
    metric: str | None  # None: computed from the runs themselves (runs, error rate)
    stat: str  # "count" | "rate" | "mean" | "sum" | "p50" | "p95" | "p99"
    better: Better
    unit: str = ""  # "ms" | "usd" | "%" | "" (how render formats it)


BASE_COLUMNS: tuple[Column, ...] = (
    Column("runs", "runs", None, "count", "none"),
    Column("error_rate", "errors", None, "rate", "lower", "%"),
    Column("latency_p50_ms", "p50 ms", S.M_TRACE_DURATION, "p50", "lower", "ms"),
    Column("latency_p95_ms", "p95 ms", S.M_TRACE_DURATION, "p95", "lower", "ms"),
    Column("latency_p99_ms", "p99 ms", S.M_TRACE_DURATION, "p99", "lower", "ms"),
    Column("ttft_p50_ms", "ttft p50", S.M_LLM_TTFT, "p50", "lower", "ms"),
    Column("ttft_p95_ms", "ttft p95", S.M_LLM_TTFT, "p95", "lower", "ms"),
    Column("tokens_input_mean", "in tok", S.M_TOKENS_INPUT, "mean", "none"),
    Column("tokens_output_mean", "out tok", S.M_TOKENS_OUTPUT, "mean", "none"),
    Column("tokens_reasoning_mean", "think tok", S.M_TOKENS_REASONING, "mean", "none"),
    Column("cost_usd_mean", "$/run", S.M_COST_USD, "mean", "lower", "usd"),
    Column("cost_usd_total", "$ total", S.M_COST_USD, "sum", "lower", "usd"),
)

# Per-run samples kept for the HTML page's distributions.
SAMPLED_METRICS = (S.M_TRACE_DURATION, S.M_COST_USD)


def feedback_columns(runs: Iterable[RunFacts]) -> tuple[Column, ...]:
    """One column per ``feedback.<name>`` metric seen in any run, sorted by name."""
    names = sorted({m for run in runs for m in run.metrics if m.startswith(S.M_FEEDBACK_PREFIX)})
    return tuple(Column(name, name, name, "mean", "higher") for name in names)


@dataclass(frozen=True)
class GroupRow:
    """One group's figures: ``values[column.id]`` (None when no run has the metric)."""

    key: str
    model_id: str | None
    model_name: str | None
    runs: int
    errors: int
    missing: int  # runs without trace.duration_ms
    values: Mapping[str, float | None]
    n: Mapping[str, int]  # runs that have each column's metric
    best: frozenset[str] = frozenset()
    samples: Mapping[str, tuple[float, ...]] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """The version with its LoggedModel name, e.g. ``3f2a9c1b7d4e (rag-bot)``."""
        name = self.model_name or self.model_id
        return f"{self.key} ({name})" if name and name != self.key else self.key


@dataclass(frozen=True)
class Comparison:
    by: GroupBy
    columns: tuple[Column, ...]
    rows: tuple[GroupRow, ...]

    @property
    def runs(self) -> int:
        return sum(row.runs for row in self.rows)


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (rule 4); ``values`` not empty."""
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


_QUANTILES = {"p50": 0.50, "p95": 0.95, "p99": 0.99}


def _stat(stat: str, values: list[float]) -> float | None:
    if not values:
        return None
    if stat == "mean":
        return math.fsum(values) / len(values)
    if stat == "sum":
        return math.fsum(values)
    return percentile(values, _QUANTILES[stat])


def _model(runs: Sequence[RunFacts], names: Mapping[str, str]) -> tuple[str | None, str | None]:
    """The group's LoggedModel: the one id all its runs that have one share, else none."""
    ids = {run.tags[S.TAG_MODEL_ID] for run in runs if run.tags.get(S.TAG_MODEL_ID)}
    if len(ids) != 1:
        return None, None
    model_id = ids.pop()
    return model_id, names.get(model_id)


def _row(key: str, runs: Sequence[RunFacts], columns: Sequence[Column],
         names: Mapping[str, str]) -> GroupRow:
    errors = sum(run.is_error for run in runs)
    values: dict[str, float | None] = {}
    counts: dict[str, int] = {}
    for column in columns:
        if column.metric is None:
            counts[column.id] = len(runs)
            values[column.id] = float(len(runs)) if column.stat == "count" else errors / len(runs)
            continue
        found = [run.metrics[column.metric] for run in runs
                 if column.metric in run.metrics and math.isfinite(run.metrics[column.metric])]
        counts[column.id] = len(found)
        values[column.id] = _stat(column.stat, found)
    samples = {metric: tuple(run.metrics[metric] for run in runs if metric in run.metrics)
               for metric in SAMPLED_METRICS}
    model_id, model_name = _model(runs, names)
    missing = sum(S.M_TRACE_DURATION not in run.metrics for run in runs)
    return GroupRow(key, model_id, model_name, len(runs), errors, missing, values, counts,
                    samples=samples)


def _mark_best(rows: list[GroupRow], columns: Sequence[Column]) -> list[GroupRow]:
    best: dict[str, set[str]] = {row.key: set() for row in rows}
    for column in columns:
        if column.better == "none":
            continue
        present = [(row.key, row.values[column.id]) for row in rows
                   if row.values[column.id] is not None]
        if len(present) < 2:
            continue
        pick = min if column.better == "lower" else max
        target = pick(value for _, value in present if value is not None)
        for key, value in present:
            if value is not None and math.isclose(value, target, rel_tol=1e-12, abs_tol=1e-15):
                best[key].add(column.id)
    return [GroupRow(r.key, r.model_id, r.model_name, r.runs, r.errors, r.missing, r.values, r.n,
                     frozenset(best[r.key]), r.samples) for r in rows]


def aggregate(runs: Iterable[RunFacts], by: GroupBy,
              model_names: Mapping[str, str] | None = None) -> Comparison:
    """Group ``runs`` by ``by`` and compute every column (see the rules in the module doc).

    ``model_names`` maps LoggedModel ids to their names (the reader looks them up). Raises
    :class:`CompareError` when there is nothing to compare: no runs, or no run has the key.
    """
    runs = list(runs)
    if not runs:
        raise CompareError("no runs to compare")
    groups: dict[str, list[RunFacts]] = {}
    for run in runs:
        groups.setdefault(run.group_key(by), []).append(run)
    if set(groups) == {NONE_GROUP}:
        raise CompareError(
            f"none of the {len(runs)} run(s) has the {by.kind} {by.key!r} to group by "
            f"(try --by tag:KEY or --by param:KEY)"
        )
    columns = BASE_COLUMNS + feedback_columns(runs)
    names = model_names or {}
    first = {key: min(run.start_time for run in members) for key, members in groups.items()}
    order = sorted(groups, key=lambda key: (key == NONE_GROUP, first[key], key))
    rows = [_row(key, groups[key], columns, names) for key in order]
    return Comparison(by, columns, tuple(_mark_best(rows, columns)))


def model_ids(runs: Iterable[RunFacts]) -> set[str]:
    """Every LoggedModel id the runs name (the reader resolves them to names)."""
    return {run.tags[S.TAG_MODEL_ID] for run in runs if run.tags.get(S.TAG_MODEL_ID)}
