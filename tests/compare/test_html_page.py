"""The HTML page as text: plotly.js embedded once, labels escaped, a note where a plot has no data.

(The page in a real browser is checked in ``tests/e2e/test_compare.py``.)
"""

from __future__ import annotations

from otel_mlflow._record import schema as S
from otel_mlflow.compare.aggregate import RunFacts, aggregate, parse_by
from otel_mlflow.compare.html_page import render_html
from otel_mlflow.compare.render import Context

HOSTILE = "</script><script>alert(1)</script>"


def facts(version: str, **metrics: float) -> RunFacts:
    return RunFacts("r", "FINISHED", {S.TAG_CHAIN_VERSION: version}, {},
                    {k.replace("__", "."): v for k, v in metrics.items()})


def test_a_tag_value_cannot_inject_markup_into_the_page() -> None:
    comparison = aggregate([facts(HOSTILE, trace__duration_ms=5), facts("ok", trace__duration_ms=7)],
                           parse_by("chain.version"))
    page = render_html(comparison, Context("e<b>", "1", "sqlite:///mlflow.db"))
    assert "<script>alert" not in page
    assert "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in page  # the table cell
    assert "<title>otel-mlflow compare: e&lt;b&gt;</title>" in page


def test_plotly_js_is_inline_once_and_a_plot_without_data_becomes_a_note() -> None:
    comparison = aggregate([facts("a", trace__duration_ms=5), facts("b", trace__duration_ms=7)],
                           parse_by("chain.version"))
    page = render_html(comparison, Context("e", "1", "u"))
    assert page.count("Plotly.newPlot") == 1  # latency only: no run has cost.usd
    assert "Cost per run: no run has cost.usd." in page
    assert "<script src=" not in page  # nothing loaded from anywhere
    with_cost = aggregate([facts("a", trace__duration_ms=5, cost__usd=0.1),
                           facts("b", trace__duration_ms=7, cost__usd=0.2)],
                          parse_by("chain.version"))
    page = render_html(with_cost, Context("e", "1", "u"))
    assert page.count("Plotly.newPlot") == 2
    assert page.count("plotly.js v") == 1 and len(page) > 1_000_000  # the library, embedded once
