"""The ``otel-mlflow`` console script.

Commands::

    otel-mlflow demo [--tracking-uri URI] [--experiment NAME]
    otel-mlflow replay [--spool-dir DIR] [--tracking-uri URI] [--include-rejected]
    otel-mlflow compare --experiment NAME [--by chain.version | tag:KEY | param:KEY]
                        [--since 24h] [--html FILE] [--format table|json] [--tracking-uri URI]
    otel-mlflow receive [--host 127.0.0.1] [--port 4318] [--token T] [--spool-dir DIR] ...
    otel-mlflow --version

``demo`` runs a small LangChain app offline (see ``otel_mlflow._demo``) and prints the MLflow runs
it wrote. ``replay`` writes the traces waiting in the on-disk spool to MLflow, with a progress bar
(tqdm when it is installed, a plain stderr bar otherwise) and a summary; it stops at the first
connection failure (the rest stays spooled) and makes MLflow's HTTP client retry only briefly
(``MLFLOW_HTTP_REQUEST_MAX_RETRIES=2``, ``MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR=1``,
``MLFLOW_HTTP_REQUEST_TIMEOUT=30`` unless set; in this command's own process only). Entries in
the spool's ``rejected/`` folder (traces MLflow refused as invalid, or that failed repeatedly with
an unexpected error) are never retried automatically; ``--include-rejected`` puts them back in
line first, and those MLflow refuses again return to ``rejected/``. ``compare`` prints versions
side by side (``otel_mlflow.compare``; its exit code 2 also covers bad input such as an unknown
experiment, with one line on stderr).
line first, and those MLflow refuses again return to ``rejected/``. ``receive`` runs the OTLP/HTTP
trace receiver until SIGTERM/SIGINT, then drains (``otel_mlflow._receive.app``; docs/fleet.md).

Exit codes: 0 success; 1 the command ran but something is left undone (demo runs missing,
traces left in the spool); 2 bad usage (argparse).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

_BAR_WIDTH = 30


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="otel-mlflow",
        description="LangChain runs as OpenTelemetry GenAI spans, written to MLflow.",
    )
    from otel_mlflow._common.settings import package_version

    parser.add_argument("--version", action="version", version=f"otel-mlflow {package_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        help="run a small LangChain app offline and print the MLflow runs it wrote",
        description=(
            "Runs offline a prompt | chat model | parser chain, a tool-calling step and one "
            "failing call, traced into MLflow. Uses the real ChatGoogleGenerativeAI client "
            "(langchain-google-genai) against the built-in Gemini emulator when installed, else "
            "the real ChatVertexAI client (langchain-google-vertexai), else a fake chat model."
        ),
    )
    demo.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here)",
    )
    demo.add_argument(
        "--experiment",
        default=None,
        help="experiment name (default: $MLFLOW_EXPERIMENT_NAME, else otel-mlflow-demo)",
    )
    demo.add_argument(
        "--model",
        choices=("auto", "genai", "vertexai", "fake"),
        default="auto",
        help=(
            "chat model: auto (ChatGoogleGenerativeAI + the Gemini emulator when "
            "langchain-google-genai is installed, else ChatVertexAI when "
            "langchain-google-vertexai is, else the fake model), genai, vertexai, or fake"
        ),
    )

    replay = sub.add_parser(
        "replay",
        help="write the traces waiting in the on-disk spool to MLflow",
        description="Replays spooled traces (written while MLflow was unreachable) into MLflow.",
    )
    replay.add_argument(
        "--spool-dir",
        default=None,
        help="spool directory (default: $OTEL_MLFLOW_SPOOL_DIR, else the per-tracking-URI cache dir)",
    )
    replay.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here)",
    )
    replay.add_argument(
        "--include-rejected",
        action="store_true",
        help="also retry the traces set aside in the spool's rejected/ folder (never retried "
        "automatically); those MLflow refuses again go back there",
    )
    from otel_mlflow.compare import command as _compare

    _compare.add_parser(sub)
    _add_receive(sub)
    return parser


def _add_receive(sub: Any) -> None:
    receive = sub.add_parser(
        "receive",
        help="run an OTLP/HTTP trace receiver that writes each trace as an MLflow run",
        description=(
            "Receives OTLP/HTTP traces (protobuf or JSON, gzip) on /v1/traces from OTel SDKs or "
            "a Collector, keeps them on disk (fsynced before the answer) and writes one MLflow "
            "run per trace with the spans of every process. Drains on SIGTERM."
        ),
    )
    receive.add_argument("--host", default=None,
                         help="address to bind (default: $OTEL_MLFLOW_RECEIVER_HOST, else 127.0.0.1)")
    receive.add_argument("--port", type=int, default=None,
                         help="port (default: $OTEL_MLFLOW_RECEIVER_PORT, else 4318)")
    receive.add_argument("--token", default=None,
                         help="bearer token senders must send (default: "
                         "$OTEL_MLFLOW_RECEIVER_TOKEN, else none)")
    receive.add_argument("--spool-dir", default=None,
                         help="spool directory; the span log is its receiver/ folder (default: "
                         "$OTEL_MLFLOW_SPOOL_DIR, else the per-tracking-URI cache dir)")
    receive.add_argument("--tracking-uri", default=None,
                         help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else "
                         "sqlite:///mlflow.db here)")
    receive.add_argument("--experiment", default=None,
                         help="experiment name (default: $MLFLOW_EXPERIMENT_NAME, else Default)")
    receive.add_argument("--grace-seconds", type=float, default=None,
                         help="wait after a trace's root arrives (default: "
                         "$OTEL_MLFLOW_GRACE_SECONDS, else 6)")
    receive.add_argument("--sample-ratio", type=float, default=None,
                         help="share of OK traces written (default: $OTEL_MLFLOW_SAMPLE_RATIO, "
                         "else 1)")
    receive.add_argument("--keep-slower-than-ms", type=float, default=None,
                         help="always write traces slower than this (default: "
                         "$OTEL_MLFLOW_KEEP_SLOWER_THAN_MS, else off)")


# --- demo --------------------------------------------------------------------------------------


def _fmt_number(value: float) -> str:
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.1f}" if abs(value) >= 0.1 else f"{value:.3g}"


def _cmd_demo(args: argparse.Namespace, out: TextIO) -> int:
    from otel_mlflow import _demo

    out.write("otel-mlflow demo: running a small LangChain app offline...\n")
    report = _demo.run_demo(
        tracking_uri=args.tracking_uri, experiment_name=args.experiment, model=args.model
    )
    out.write(f"model: {report.model_description}\n")
    out.write(f"tracking URI: {report.tracking_uri}   experiment: {report.experiment_name}\n\n")
    for step in report.steps:
        outcome = "ok" if step.error is None else f"raised {step.error}"
        out.write(f"  step {step.name}: {outcome}\n")
    out.write(f"\n{len(report.runs)} MLflow run(s) written:\n")
    for run in report.runs:
        out.write(f"\n  {run.name}  [{run.status}]  run_id={run.run_id}\n")
        shown = [(key, run.metrics[key]) for key in _demo.KEY_METRICS if key in run.metrics]
        if shown:
            out.write("    metrics:   " + ", ".join(f"{k}={_fmt_number(v)}" for k, v in shown) + "\n")
        if run.chain_version:
            model = f"  (LoggedModel {run.model_id})" if run.model_id else ""
            out.write(f"    version:   {run.chain_version}{model}\n")
        if run.error_type:
            out.write(f"    error:     {run.error_type}\n")
        if run.artifacts:
            out.write("    artifacts: " + ", ".join(run.artifacts) + "\n")
    out.write("\n")
    if not report.flushed:
        out.write("WARNING: some MLflow writes were still pending when the demo stopped waiting.\n")
    if report.missing:
        out.write(
            f"WARNING: {report.missing} trace(s) of the demo were not found as runs "
            "(see the log above).\n"
        )
    if report.ui_command:
        out.write(f"View them:  {report.ui_command}\n")
        out.write("then open http://127.0.0.1:5000 (Experiments -> "
                  f"{report.experiment_name}; the Traces tab shows the same spans).\n")
    else:
        out.write(f"View them in the MLflow UI at {report.tracking_uri}\n")
    return 1 if report.missing or not report.runs else 0


# --- replay ------------------------------------------------------------------------------------


class _Progress:
    """A progress bar on stderr: tqdm when installed, a one-line stdlib bar otherwise."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._bar: Any = None
        self._drawn = False
        self._started = time.monotonic()
        self._tqdm: Callable[..., Any] | None
        try:
            from tqdm import tqdm
        except ImportError:
            self._tqdm = None
        else:
            self._tqdm = tqdm

    def __call__(self, done: int, total: int | None) -> None:
        """``replay``'s ``on_progress(done, total)``: entries handled so far, of how many."""
        if self._tqdm is not None:
            if self._bar is None:
                self._bar = self._tqdm(total=total, unit="trace", file=self._stream, desc="replay")
            if total is not None and self._bar.total != total:
                self._bar.total = total
            self._bar.n = done
            self._bar.refresh()
            return
        self._drawn = True
        elapsed = max(time.monotonic() - self._started, 1e-9)
        rate = done / elapsed
        if total:
            filled = int(_BAR_WIDTH * min(done, total) / total)
            bar = "#" * filled + "-" * (_BAR_WIDTH - filled)
            line = f"\rreplay [{bar}] {done}/{total} traces ({rate:.1f}/s)"
        else:
            line = f"\rreplay {done} traces ({rate:.1f}/s)"
        self._stream.write(line)
        self._stream.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self._drawn:
            self._stream.write("\n")
            self._stream.flush()


def _cmd_replay(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from otel_mlflow._common.settings import REPLAY_HTTP_DEFAULTS
    from otel_mlflow._delivery import replay as _replay

    for name, value in REPLAY_HTTP_DEFAULTS.items():
        os.environ.setdefault(name, value)

    progress = _Progress(err)
    try:
        result = _replay.replay(
            spool_dir=args.spool_dir,
            tracking_uri=args.tracking_uri,
            on_progress=progress,
            include_rejected=args.include_rejected,
        )
    finally:
        progress.close()
    written = int(getattr(result, "written", 0))
    failed = int(getattr(result, "failed", 0))
    remaining = int(getattr(result, "remaining", 0))
    out.write(
        f"replay: {written} trace(s) written to MLflow, {failed} failed, "
        f"{remaining} left in the spool\n"
    )
    rejected = int(getattr(result, "rejected", 0))
    if rejected:
        out.write(
            f"{rejected} trace(s) set aside in the spool's rejected/ folder are not retried "
            "automatically; `otel-mlflow replay --include-rejected` retries them.\n"
        )
    if remaining or failed:
        out.write("Run `otel-mlflow replay` again once MLflow is reachable.\n")
        return 1
    return 0


# --- receive -----------------------------------------------------------------------------------


def _cmd_receive(args: argparse.Namespace) -> int:
    import logging

    from otel_mlflow._receive.app import serve

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    return serve(
        args.host, args.port, token=args.token, spool_dir=args.spool_dir,
        tracking_uri=args.tracking_uri, experiment_name=args.experiment,
        grace_seconds=args.grace_seconds, sample_ratio=args.sample_ratio,
        keep_slower_than_ms=args.keep_slower_than_ms,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``otel-mlflow`` console script; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        return _cmd_demo(args, sys.stdout)
    if args.command == "replay":
        return _cmd_replay(args, sys.stdout, sys.stderr)
    if args.command == "compare":
        from otel_mlflow.compare import command as _compare

        return _compare.run(args, sys.stdout, sys.stderr)
    if args.command == "receive":
        return _cmd_receive(args)
    parser.print_help(sys.stdout)
    return 2


if __name__ == "__main__":  # pragma: no cover - python -m otel_mlflow.cli
    sys.exit(main())
