"""The comparison as a text table and as JSON: marks, n/a, notes, and a JSON that round-trips."""

from __future__ import annotations

import json

import pytest

from otel_mlflow._record import schema as S
from otel_mlflow.compare.aggregate import BASE_COLUMNS, RunFacts, aggregate, parse_by
from otel_mlflow.compare.render import Context, fmt_value, render_json, render_text

CONTEXT = Context("shop-bot", "7", "http://127.0.0.1:5000", since="24h", skipped_running=1)
COLUMNS = {c.id: c for c in BASE_COLUMNS}


def facts(version: str, **metrics: float) -> RunFacts:
    return RunFacts("r", "FINISHED", {S.TAG_CHAIN_VERSION: version, S.TAG_STATUS: "OK",
                                      S.TAG_MODEL_ID: f"m-{version}"}, {},
                    {k.replace("__", "."): v for k, v in metrics.items()})


@pytest.fixture
def comparison():  # type: ignore[no-untyped-def]
    runs = [facts("aaaaaaaaaaaa", trace__duration_ms=1200, cost__usd=0.0005, feedback__ok=1),
            facts("aaaaaaaaaaaa", trace__duration_ms=800, cost__usd=0.0007, feedback__ok=0),
            facts("bbbbbbbbbbbb", trace__duration_ms=400),
            facts("bbbbbbbbbbbb")]
    return aggregate(runs, parse_by("chain.version"), {"m-aaaaaaaaaaaa": "bot-v1"})


@pytest.mark.parametrize("column, value, text", [
    ("error_rate", 0.125, "12.5%"), ("latency_p50_ms", 1234.4, "1234"),
    ("latency_p50_ms", 7.25, "7.2"), ("cost_usd_mean", 0.000123, "$0.000123"),
    ("cost_usd_total", 12.345, "$12.35"), ("tokens_input_mean", 20.0, "20"),
    ("tokens_input_mean", 3.333, "3.3"), ("runs", 4.0, "4"), ("ttft_p95_ms", None, "n/a"),
])
def test_cells_are_formatted_by_unit(column: str, value: float | None, text: str) -> None:
    assert fmt_value(COLUMNS[column], value) == text


def test_text_table_one_line_per_version_with_marks_and_notes(comparison) -> None:  # type: ignore[no-untyped-def]
    text = render_text(comparison, CONTEXT)
    lines = text.splitlines()
    assert lines[0] == "experiment 'shop-bot': 4 run(s) by chain.version, since 24h"
    header = lines[2].split()
    assert header[0] == "version" and header[-1] == "feedback.ok"
    first = next(line for line in lines if line.startswith("aaaaaaaaaaaa (bot-v1)"))
    second = next(line for line in lines if line.startswith("bbbbbbbbbbbb"))
    assert "1000" in first and "400*" in second  # p50 latency; b is faster
    assert "$0.000600" in first and "$0.001200" in first  # mean and total
    assert "n/a" in second  # b has no cost and no feedback
    # all columns line up: every data line as long as the rule under the header
    assert len(first.rstrip()) <= len(lines[3]) and len(lines[2]) == len(lines[3])
    assert "1 of 2 run(s) in bbbbbbbbbbbb (m-bbbbbbbbbbbb) have no trace.duration_ms" in text
    assert "1 run(s) still RUNNING" in text
    assert text.count("* best in its column") == 1


def test_json_has_every_figure_unrounded_with_counts_and_best(comparison) -> None:  # type: ignore[no-untyped-def]
    data = json.loads(render_json(comparison, CONTEXT))
    assert (data["experiment"], data["by"], data["runs"], data["since"]) == ("shop-bot",
                                                                             "chain.version", 4,
                                                                             "24h")
    assert [c["id"] for c in data["columns"]][-1] == "feedback.ok"
    a, b = data["groups"]
    assert (a["key"], a["label"], a["model_name"]) == ("aaaaaaaaaaaa", "aaaaaaaaaaaa (bot-v1)",
                                                       "bot-v1")
    assert a["values"]["cost_usd_total"] == pytest.approx(0.0012)
    assert a["values"]["feedback.ok"] == 0.5 and a["n"]["feedback.ok"] == 2
    assert b["values"]["cost_usd_mean"] is None and b["missing_metrics"] == 1
    assert "latency_p50_ms" in b["best"] and "latency_p50_ms" not in a["best"]
