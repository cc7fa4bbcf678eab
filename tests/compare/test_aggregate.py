"""Grouping and statistics of ``otel-mlflow compare``: table tests over plain run facts.

Pure: ``RunFacts`` in, ``Comparison`` out, no MLflow. The figures are checked against values worked
out by hand (and percentiles against NumPy's default method, which the docs promise).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from otel_mlflow._record import schema as S
from otel_mlflow.compare.aggregate import (
    NONE_GROUP,
    CompareError,
    GroupBy,
    RunFacts,
    aggregate,
    parse_by,
    parse_since,
    percentile,
)

BY_VERSION = parse_by("chain.version")


def run(version: str | None = None, *, status: str = "FINISHED", otel_status: str | None = "OK",
        model_id: str | None = None, params: dict[str, str] | None = None,
        **metrics: float) -> RunFacts:
    tags: dict[str, str] = {}
    if version is not None:
        tags[S.TAG_CHAIN_VERSION] = version
    if otel_status is not None:
        tags[S.TAG_STATUS] = otel_status
    if model_id is not None:
        tags[S.TAG_MODEL_ID] = model_id
    named = {key.replace("__", "."): value for key, value in metrics.items()}
    return RunFacts(f"r{id(tags)}", status, tags, params or {}, named)


def row_of(comparison: Any, key: str) -> Any:
    return next(row for row in comparison.rows if row.key == key)


@pytest.mark.parametrize("text, expected", [
    ("chain.version", GroupBy("tag", S.TAG_CHAIN_VERSION)),
    ("tag:langchain.metadata.variant", GroupBy("tag", "langchain.metadata.variant")),
    ("param:temperature", GroupBy("param", "temperature")),
    (" param: top_k ", GroupBy("param", "top_k")),
])
def test_by_accepts_the_three_forms(text: str, expected: GroupBy) -> None:
    assert parse_by(text) == expected


@pytest.mark.parametrize("text", ["version", "tag:", "metric:cost.usd", "param", ""])
def test_by_rejects_anything_else_with_the_forms_it_takes(text: str) -> None:
    with pytest.raises(CompareError, match="chain.version, tag:KEY or param:KEY"):
        parse_by(text)


@pytest.mark.parametrize("text, seconds", [
    ("90s", 90), ("30m", 1800), ("24h", 86400), ("7d", 604800), ("2w", 1209600), ("1.5h", 5400),
    ("24H", 86400),
])
def test_since_reads_durations(text: str, seconds: float) -> None:
    assert parse_since(text) == seconds


@pytest.mark.parametrize("text", ["24", "h", "-1h", "0m", "xh", "3y", "infh", "nanh"])
def test_since_rejects_bad_durations(text: str) -> None:
    with pytest.raises(CompareError, match="--since"):
        parse_since(text)


@pytest.mark.parametrize("values", [[5.0], [1.0, 2.0], [3.0, 1.0, 2.0], list(range(1, 101)),
                                    [10.0, 10.0, 10.0, 400.0], [0.1, 7.5, 2.25, 9.0, 3.0]])
@pytest.mark.parametrize("q", [0.5, 0.95, 0.99])
def test_percentiles_match_numpy_default(values: list[float], q: float) -> None:
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q * 100)))


def test_one_row_per_version_with_every_figure() -> None:
    runs = [
        run("aaaaaaaaaaaa", model_id="m-1", trace__duration_ms=100, llm__ttft_ms=40,
            tokens__input=10, tokens__output=4, tokens__reasoning=2, cost__usd=0.002,
            feedback__helpful=1.0),
        run("aaaaaaaaaaaa", model_id="m-1", trace__duration_ms=300, tokens__input=20,
            tokens__output=6, tokens__reasoning=0, cost__usd=0.004, feedback__helpful=0.0),
        run("aaaaaaaaaaaa", model_id="m-1", otel_status="ERROR", status="FAILED",
            trace__duration_ms=200, llm__ttft_ms=60, tokens__input=30, tokens__output=0,
            tokens__reasoning=0),
        run("bbbbbbbbbbbb", model_id="m-2", trace__duration_ms=50, llm__ttft_ms=20,
            tokens__input=12, tokens__output=3, tokens__reasoning=5, cost__usd=0.010,
            feedback__helpful=1.0, feedback__accuracy=0.5),
    ]
    comparison = aggregate(runs, BY_VERSION, {"m-1": "bot-v1", "m-2": "bot-v2"})
    assert [row.key for row in comparison.rows] == ["aaaaaaaaaaaa", "bbbbbbbbbbbb"]
    a, b = comparison.rows
    assert a.label == "aaaaaaaaaaaa (bot-v1)" and b.label == "bbbbbbbbbbbb (bot-v2)"
    assert (a.runs, a.errors, a.missing) == (3, 1, 0)
    v = a.values
    assert v["runs"] == 3 and v["error_rate"] == pytest.approx(1 / 3)
    assert (v["latency_p50_ms"], v["latency_p95_ms"]) == (200, pytest.approx(290))
    assert v["latency_p99_ms"] == pytest.approx(298)
    assert (v["ttft_p50_ms"], v["ttft_p95_ms"]) == (50, pytest.approx(59))
    assert (v["tokens_input_mean"], v["tokens_output_mean"]) == (20, pytest.approx(10 / 3))
    assert v["tokens_reasoning_mean"] == pytest.approx(2 / 3)
    assert (v["cost_usd_mean"], v["cost_usd_total"]) == (pytest.approx(0.003), pytest.approx(0.006))
    assert a.n["cost_usd_mean"] == 2 and a.n["ttft_p50_ms"] == 2 and a.n["latency_p50_ms"] == 3
    # feedback columns: the union over all runs, sorted; a group without one has None
    assert [c.id for c in comparison.columns][-2:] == ["feedback.accuracy", "feedback.helpful"]
    assert v["feedback.helpful"] == 0.5 and v["feedback.accuracy"] is None
    assert b.values["feedback.accuracy"] == 0.5
    # best: b is faster, without errors and better rated; a is cheaper per run and in total
    assert b.best == {"error_rate", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms",
                      "ttft_p50_ms", "ttft_p95_ms", "feedback.helpful"}
    assert a.best == {"cost_usd_mean", "cost_usd_total"}
    # samples for the HTML distributions
    assert sorted(a.samples[S.M_TRACE_DURATION]) == [100, 200, 300]
    assert a.samples[S.M_COST_USD] == (0.002, 0.004)


@pytest.mark.parametrize("better_values, marked", [
    ((0.1, 0.1), {"x", "y"}),  # a tie marks both
    ((0.1, 0.2), {"x"}),
    ((None, 0.2), set()),  # only one group has a value: nothing to rank
])
def test_best_marks_ties_and_needs_two_values(better_values: tuple[float | None, float | None],
                                              marked: set[str]) -> None:
    runs = []
    for key, cost in zip(("x", "y"), better_values, strict=True):
        metrics = {"trace__duration_ms": 10.0}
        if cost is not None:
            metrics["cost__usd"] = cost
        runs.append(run(key, **metrics))
    comparison = aggregate(runs, BY_VERSION)
    assert {row.key for row in comparison.rows if "cost_usd_mean" in row.best} == marked


def test_tokens_and_runs_are_not_ranked() -> None:
    comparison = aggregate([run("x", tokens__input=1), run("y", tokens__input=9),
                            run("y", tokens__input=9)], BY_VERSION)
    for row in comparison.rows:
        assert not row.best & {"runs", "tokens_input_mean", "tokens_output_mean"}


def test_a_run_missing_metrics_is_counted_and_shown_as_none() -> None:
    runs = [run("x", trace__duration_ms=100, tokens__input=5), run("x"),
            run("y", trace__duration_ms=80)]
    comparison = aggregate(runs, BY_VERSION)
    x, y = row_of(comparison, "x"), row_of(comparison, "y")
    assert (x.runs, x.missing, x.n["latency_p50_ms"]) == (2, 1, 1)
    assert x.values["latency_p50_ms"] == 100 and x.values["cost_usd_mean"] is None
    assert y.values["tokens_input_mean"] is None and y.missing == 0


def test_non_finite_metric_values_are_left_out() -> None:
    comparison = aggregate([run("x", cost__usd=math.nan), run("x", cost__usd=0.5),
                            run("x", trace__duration_ms=math.inf)], BY_VERSION)
    assert comparison.rows[0].values["cost_usd_total"] == 0.5
    assert comparison.rows[0].values["latency_p50_ms"] is None


@pytest.mark.parametrize("otel_status, mlflow_status, is_error", [
    ("ERROR", "FAILED", True), ("OK", "FINISHED", False),
    ("OK", "FAILED", False),  # otel_mlflow's own status wins
    (None, "FAILED", True), (None, "FINISHED", False), (None, "KILLED", False),
])
def test_errors_come_from_the_status_tag_else_the_run_status(
        otel_status: str | None, mlflow_status: str, is_error: bool) -> None:
    assert run("x", otel_status=otel_status, status=mlflow_status).is_error is is_error


def test_groups_in_order_of_their_first_run_and_the_none_group_last() -> None:
    def at(version: str | None, start: int) -> RunFacts:
        base = run(version)
        return RunFacts(base.run_id, base.status, base.tags, base.params, base.metrics, start)

    runs = [at(None, 1), at("new", 50), at("old", 10), at("old", 90), at("", 2), at("mid", 30)]
    comparison = aggregate(runs, BY_VERSION)
    assert [(row.key, row.runs) for row in comparison.rows] == [("old", 2), ("mid", 1),
                                                                ("new", 1), (NONE_GROUP, 2)]
    assert comparison.runs == 6


def test_grouping_by_a_param_or_any_tag() -> None:
    runs = [run(params={"temperature": "0.2"}, trace__duration_ms=1),
            run(params={"temperature": "0.7"}, trace__duration_ms=2),
            run(params={"temperature": "0.7"}, trace__duration_ms=4)]
    comparison = aggregate(runs, parse_by("param:temperature"))
    assert {row.key: row.values["latency_p50_ms"] for row in comparison.rows} == {"0.7": 3,
                                                                                  "0.2": 1}
    assert comparison.by.label == "param:temperature"


def test_the_model_name_shows_only_when_the_group_shares_one_model() -> None:
    comparison = aggregate([run("x", model_id="m-1"), run("x", model_id="m-2"),
                            run("y", model_id="m-3"), run("z", model_id="m-4")],
                           BY_VERSION, {"m-1": "one", "m-3": "three"})
    labels = {row.key: row.label for row in comparison.rows}
    assert labels == {"x": "x", "y": "y (three)", "z": "z (m-4)"}  # unknown name: the id


def test_no_runs_is_an_error() -> None:
    with pytest.raises(CompareError, match="no runs"):
        aggregate([], BY_VERSION)


def test_no_run_with_the_key_is_an_error_naming_it() -> None:
    with pytest.raises(CompareError, match=r"none of the 2 run\(s\) has the param 'seed'"):
        aggregate([run("x"), run("y")], parse_by("param:seed"))
