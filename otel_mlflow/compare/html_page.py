"""A :class:`Comparison` as one self-contained HTML page: the table, then latency and cost
distributions per group drawn with plotly (box plots with every run as a point).

plotly.js is embedded inline once (``include_plotlyjs=True`` on the first figure), so the page
opens from disk with no network. plotly is the optional extra ``report``
(``pip install 'otel-mlflow[report]'``); :func:`render_html` raises :class:`CompareError` with
that hint when it is missing. Pure: returns the page's text; the command writes the file.
(Named ``html_page`` so it never shadows the standard library's ``html``.)
"""

from __future__ import annotations

import html
from typing import Any

from otel_mlflow._record import schema as S
from otel_mlflow.compare.aggregate import CompareError, Comparison
from otel_mlflow.compare.render import Context, notes, table_cells

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { padding: .3rem .6rem; border-bottom: 1px solid #ddd; text-align: right; }
th:first-child, td:first-child { text-align: left; }
td.best { font-weight: bold; background: #e6f4ea; }
.notes { color: #555; font-size: .9rem; }
"""


def _plotly() -> Any:
    try:
        import plotly.graph_objects as go
        import plotly.io as pio
    except ImportError as exc:
        raise CompareError("--html needs plotly: pip install 'otel-mlflow[report]'") from exc
    return go, pio


def _figure(comparison: Comparison, metric: str, title: str, axis: str,
            first: bool) -> str | None:
    go, pio = _plotly()
    traces = [go.Box(y=list(row.samples.get(metric, ())), name=row.label, boxpoints="all",
                     jitter=0.3, pointpos=0)
              for row in comparison.rows if row.samples.get(metric)]
    if not traces:
        return None
    figure = go.Figure(traces)
    figure.update_layout(title=title, yaxis_title=axis, showlegend=False, height=420,
                         margin={"l": 60, "r": 20, "t": 50, "b": 80})
    return str(pio.to_html(figure, full_html=False, include_plotlyjs=first,
                           config={"displaylogo": False, "responsive": True},
                           div_id=f"plot-{metric.replace('.', '-')}"))


def render_html(comparison: Comparison, context: Context) -> str:
    """The whole page (plotly.js inline)."""
    headers, rows = table_cells(comparison)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = []
    for row, cells in zip(comparison.rows, rows, strict=True):
        tds = [f'<td class="version">{html.escape(cells[0])}</td>']
        for column, cell in zip(comparison.columns, cells[1:], strict=True):
            css = ' class="best"' if column.id in row.best else ""
            tds.append(f"<td{css}>{html.escape(cell)}</td>")
        body.append(f"<tr>{''.join(tds)}</tr>")
    window = f", since {context.since}" if context.since else ""
    title = f"otel-mlflow compare: {context.experiment}"
    plots = []
    first = True
    for metric, name, axis in ((S.M_TRACE_DURATION, "Latency per run", "trace.duration_ms"),
                               (S.M_COST_USD, "Cost per run", "cost.usd (USD)")):
        figure = _figure(comparison, metric, name, axis, first)
        if figure is None:
            plots.append(f'<p class="notes">{html.escape(name)}: no run has {metric}.</p>')
        else:
            plots.append(figure)
            first = False
    notes_html = "".join(f"<li>{html.escape(line)}</li>" for line in notes(comparison, context))
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>"
        f"<p>{comparison.runs} run(s) grouped by {html.escape(comparison.by.label)}{window}; "
        f"tracking URI {html.escape(context.tracking_uri)}, experiment id "
        f"{html.escape(context.experiment_id)}.</p>"
        f'<table id="comparison"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}'
        f'</tbody></table><ul class="notes">{notes_html}</ul>{"".join(plots)}'
        "</body></html>\n"
    )
