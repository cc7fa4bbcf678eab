"""``otel-mlflow compare``: versions of an app side by side, from the runs otel_mlflow wrote.

Reads an experiment's runs from MLflow (read only, paged, progress bar), groups them (by the tag
``otel_mlflow.chain.version`` by default, or ``tag:KEY`` / ``param:KEY``) and prints one row per
group: runs and error rate, latency p50/p95/p99, TTFT p50/p95, mean input/output/reasoning
tokens, cost per run and in total, and the mean of each ``feedback.*`` metric, with the best
value of each column marked. ``--format json`` for programs, ``--html FILE`` for a page with the
distributions. See ``docs/experiments.md``.

Modules, one job each:

- ``aggregate``: pure grouping and statistics (``RunFacts`` -> ``Comparison``), table-tested;
- ``reader``: the MLflow reads (``search_runs`` paged, LoggedModel names);
- ``render``: text table and JSON; ``html_page``: the HTML page (plotly, optional extra
  ``report``);
- ``command``: the ``compare`` sub-command of ``otel-mlflow`` (``otel_mlflow.cli`` dispatches).

Outside the pipeline's layers: it reads what ``_sink`` wrote, through names in
``otel_mlflow._record.schema``, and nothing in the pipeline imports it.
"""

from __future__ import annotations
