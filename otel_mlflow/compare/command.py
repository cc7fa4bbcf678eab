"""``otel-mlflow compare``: the command line, gluing reader -> aggregate -> render / html.

    otel-mlflow compare --experiment NAME [--by chain.version | tag:KEY | param:KEY]
                        [--since 24h] [--html FILE] [--format table|json]
                        [--tracking-uri URI] [--progress]

Exit codes: 0 the comparison was printed; 2 bad input (unknown experiment, no runs in the window,
no run has the ``--by`` key, a bad ``--by`` / ``--since``, plotly missing for ``--html``), one
line on stderr; 1 MLflow could not be read or the page not written (MLflow's HTTP client retries briefly meanwhile: the
``replay`` defaults, set only while reading and only where unset). The command only reads MLflow; ``--html`` writes its
file atomically (a temporary file renamed over it), so a failed run leaves an older page whole.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, TextIO

from otel_mlflow._common import settings as _settings
from otel_mlflow.compare.aggregate import BY_CHAIN_VERSION, CompareError, aggregate, parse_by, parse_since

PROG = "otel-mlflow compare"


def add_parser(sub: Any) -> None:
    """The ``compare`` sub-command on the ``otel-mlflow`` parser's subparsers."""
    parser = sub.add_parser(
        "compare",
        help="compare versions side by side: latency, TTFT, tokens, cost, errors, feedback",
        description=(
            "Reads the experiment's runs (paged) and prints one row per group (by default per "
            "chain version): runs, error rate, latency p50/p95/p99, TTFT p50/p95, mean tokens, "
            "cost per run and in total, the mean of each feedback.* metric. '*' marks the best "
            "value of each column."
        ),
    )
    parser.add_argument("--experiment", default=None,
                        help="experiment name (default: $MLFLOW_EXPERIMENT_NAME)")
    parser.add_argument("--by", default=BY_CHAIN_VERSION,
                        help="group runs by chain.version (default; the tag "
                             "otel_mlflow.chain.version), tag:KEY or param:KEY")
    parser.add_argument("--since", default=None,
                        help="only runs started in this window, e.g. 30m, 24h, 7d (default: all)")
    parser.add_argument("--html", default=None, metavar="FILE",
                        help="also write a self-contained HTML page (table + latency and cost "
                             "distributions; needs the 'report' extra)")
    parser.add_argument("--format", choices=("table", "json"), default="table",
                        help="table (default) or json, on stdout")
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else "
                             "sqlite:///mlflow.db here)")
    parser.add_argument("--progress", action="store_true",
                        help="show the progress bar on stderr even when it is not a terminal")
    parser.add_argument("--page-size", type=int, default=None, help=argparse.SUPPRESS)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class _Failed(Exception):
    """MLflow could not be read, or the page not written: one line, exit code 1."""


def _one_line(what: str, exc: BaseException) -> _Failed:
    first = (str(exc).strip().splitlines() or [""])[0]
    return _Failed(f"{what}: {type(exc).__name__}: {first}".rstrip(": "))


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Run the command; the exit code (see the module doc)."""
    try:
        return _run(args, out, err)
    except CompareError as exc:
        err.write(f"{PROG}: {exc}\n")
        return 2
    except _Failed as exc:
        err.write(f"{PROG}: {exc}\n")
        return 1


def _run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from otel_mlflow.compare import reader, render

    experiment = args.experiment or _settings.env_str(_settings.MLFLOW_EXPERIMENT_NAME)
    if not experiment:
        raise CompareError("--experiment NAME is required (or set MLFLOW_EXPERIMENT_NAME)")
    by = parse_by(args.by)
    since_seconds = parse_since(args.since) if args.since else None
    if args.page_size is not None and args.page_size < 1:
        raise CompareError("--page-size must be at least 1")
    html_path = Path(args.html) if args.html else None
    if html_path is not None:
        from otel_mlflow.compare import html_page

        html_page._plotly()  # fail before reading anything when plotly is missing
        if not html_path.parent.is_dir():
            raise CompareError(f"--html {args.html}: folder {html_path.parent} does not exist")
    tracking_uri = _settings.resolve_tracking_uri(args.tracking_uri)
    show_progress = args.progress or (hasattr(err, "isatty") and err.isatty())
    try:
        # An unreachable server fails after a short retry, not minutes; the env is restored.
        with _settings.env_defaults(_settings.REPLAY_HTTP_DEFAULTS):
            read = reader.read_runs(experiment, by, tracking_uri=tracking_uri,
                                    since_seconds=since_seconds,
                                    page_size=args.page_size or reader.DEFAULT_PAGE_SIZE,
                                    progress=err if show_progress else None)
    except CompareError:
        raise
    except Exception as exc:  # MLflow unreachable or refusing
        raise _one_line("cannot read MLflow", exc) from exc
    if not read.runs:
        window = f" since {args.since}" if args.since else ""
        still = f" ({read.skipped_running} still RUNNING)" if read.skipped_running else ""
        raise CompareError(f"no finished runs in experiment {experiment!r}{window}{still}")
    comparison = aggregate(read.runs, by, read.model_names)
    context = render.Context(experiment, read.experiment_id, tracking_uri, args.since,
                             read.skipped_running)
    if html_path is not None:
        page = html_page.render_html(comparison, context)
        try:
            _write_atomic(html_path, page)
        except OSError as exc:
            raise _one_line(f"cannot write {html_path}", exc) from exc
    if args.format == "json":
        out.write(render.render_json(comparison, context))
    else:
        out.write(render.render_text(comparison, context))
    if html_path is not None:
        err.write(f"{PROG}: HTML page written to {html_path}\n")
    return 0

