"""A :class:`Comparison` as a text table (for people) or JSON (for programs). Pure.

Text: one row per group, the first column the version with its LoggedModel name, ``*`` after the
best value of each ranked column, ``n/a`` where no run of the group has the metric, then notes
(runs without metrics, runs still being written). JSON (``--format json``): the same figures,
unrounded, with per-column run counts ``n`` and the ``best`` column ids of each group; the shape
is documented in ``docs/experiments.md``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from otel_mlflow._record import schema as S
from otel_mlflow.compare.aggregate import Column, Comparison, GroupRow

BEST_MARK = "*"
NA = "n/a"
JSON_VERSION = 1


@dataclass(frozen=True)
class Context:
    """Where the runs came from (shown above the table, copied into the JSON)."""

    experiment: str
    experiment_id: str
    tracking_uri: str
    since: str | None = None
    skipped_running: int = 0


def fmt_value(column: Column, value: float | None) -> str:
    """One cell's text (without the best mark)."""
    if value is None:
        return NA
    if column.unit == "%":
        return f"{value * 100:.1f}%"
    if column.unit == "ms":
        return f"{value:.0f}" if abs(value) >= 10 else f"{value:.1f}"
    if column.unit == "usd":
        return f"${value:.2f}" if abs(value) >= 1 else f"${value:.6f}"
    if column.stat == "count":
        return str(int(value))
    if column.metric is not None and column.metric.startswith(S.M_FEEDBACK_PREFIX):
        return f"{value:.2f}"
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


def _cell(row: GroupRow, column: Column) -> str:
    text = fmt_value(column, row.values[column.id])
    return text + BEST_MARK if column.id in row.best else text


def first_header(comparison: Comparison) -> str:
    return "version" if comparison.by.label == "chain.version" else comparison.by.label


def table_cells(comparison: Comparison) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of strings: what the text table and the HTML table show."""
    headers = [first_header(comparison)] + [c.header for c in comparison.columns]
    rows = [[row.label] + [_cell(row, c) for c in comparison.columns] for row in comparison.rows]
    return headers, rows


def notes(comparison: Comparison, context: Context) -> list[str]:
    """The lines under the table: the legend, then anything left out or incomplete."""
    lines = [f"{BEST_MARK} best in its column (lowest latency, TTFT, error rate and cost; "
             f"highest feedback); {NA}: no run of the group has the metric"]
    for row in comparison.rows:
        if row.missing:
            lines.append(f"{row.missing} of {row.runs} run(s) in {row.label} have no "
                         f"{S.M_TRACE_DURATION} (counted in runs and errors only)")
    if context.skipped_running:
        lines.append(f"{context.skipped_running} run(s) still RUNNING (being written, or an "
                     "active run) are not counted")
    return lines


def render_text(comparison: Comparison, context: Context) -> str:
    headers, rows = table_cells(comparison)
    widths = [max(len(line[i]) for line in [headers, *rows]) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest]).rstrip()

    window = f", since {context.since}" if context.since else ""
    out = [f"experiment {context.experiment!r}: {comparison.runs} run(s) by "
           f"{comparison.by.label}{window}", "", line(headers),
           "  ".join("-" * width for width in widths)]
    out += [line(cells) for cells in rows]
    out += [""] + notes(comparison, context)
    return "\n".join(out) + "\n"


def to_json_data(comparison: Comparison, context: Context) -> dict[str, Any]:
    return {
        "format_version": JSON_VERSION,
        "experiment": context.experiment,
        "experiment_id": context.experiment_id,
        "tracking_uri": context.tracking_uri,
        "by": comparison.by.label,
        "since": context.since,
        "runs": comparison.runs,
        "skipped_running": context.skipped_running,
        "columns": [{"id": c.id, "header": c.header, "metric": c.metric, "stat": c.stat,
                     "better": c.better, "unit": c.unit} for c in comparison.columns],
        "groups": [{"key": row.key, "label": row.label, "model_id": row.model_id,
                    "model_name": row.model_name, "runs": row.runs, "errors": row.errors,
                    "missing_metrics": row.missing, "values": dict(row.values),
                    "n": dict(row.n), "best": sorted(row.best)} for row in comparison.rows],
    }


def render_json(comparison: Comparison, context: Context) -> str:
    return json.dumps(to_json_data(comparison, context), ensure_ascii=False, indent=2) + "\n"
