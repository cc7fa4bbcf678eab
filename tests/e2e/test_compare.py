"""``otel-mlflow compare`` against the REAL ``mlflow server`` fixture.

Two sources of runs:

- the real pipeline (``MlflowSpanExporter`` + ``OtelTracer`` + a real ``ChatVertexAI`` over REST to
  the local Gemini emulator): two chains, prompt v1 at temperature 0.2 and prompt v2 at 0.7, told
  apart by LangChain metadata ``variant`` (the tag ``langchain.metadata.variant``) and by the param
  ``temperature``. The emulator's usage is scripted, so token means are known exactly; latency
  and TTFT are checked against the runs' own metrics read back with ``MlflowClient``.
- runs logged with ``MlflowClient`` carrying what the version / cost / feedback features write
  (``otel_mlflow.chain.version``, ``otel_mlflow.model_id`` of a real LoggedModel, ``cost.usd``,
  ``feedback.*``), plus a run without metrics and a run three days old, for the full columns and
  the bad-input cases.

The command runs in-process through ``otel_mlflow.cli.main`` (stdout/stderr captured), and once as
the installed console script for the exit code and the one-line error.
"""

from __future__ import annotations

import re
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from mlflow.entities import Metric, RunTag
from mlflow.tracking import MlflowClient
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from otel_mlflow import cli
from otel_mlflow._export.exporter import MlflowSpanExporter
from otel_mlflow._record import schema as S
from otel_mlflow._tracing.handler import OtelTracer
from otel_mlflow.compare.aggregate import percentile
from otel_mlflow.testing import GeminiEmulator, Reply, Usage
from tests._support.browser import load_page

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

VARIANTS = {  # variant -> (system prompt, human template, temperature, scripted usage)
    "v1": ("Answer briefly.", "{question}", 0.2, Usage(prompt=10, candidates=4, thoughts=2)),
    "v2": ("You are a careful assistant. Think first, then answer in one sentence.",
           "Question: {question}", 0.7, Usage(prompt=30, candidates=9, thoughts=12)),
}
QUESTIONS = ["あなたは誰?", "What is OpenTelemetry?", "Why trace LLM calls?"]


def compare(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main(["compare", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def by_key(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {group["key"]: group for group in data["groups"]}


# --- runs from the real pipeline ---------------------------------------------------------------


@pytest.fixture(scope="module")
def pipeline_runs(mlflow_server: Any, vertexai_imported: None,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[Any]]]:
    """Both chains, four traces each (one streamed), v2 with one failed model call."""
    experiment = f"compare-pipeline-{uuid.uuid4().hex[:6]}"
    exporter = MlflowSpanExporter(mlflow_server.url, experiment, grace_seconds=0.1,
                                  spool_dir=str(tmp_path_factory.mktemp("spool")))
    provider = TracerProvider(resource=Resource.create({"service.name": "compare-test"}))
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=50))
    tracer = OtelTracer(provider)
    with GeminiEmulator() as emulator:
        for variant, (system, human, temperature, usage) in VARIANTS.items():
            chain = (ChatPromptTemplate.from_messages([("system", system), ("human", human)])
                     | emulator.chat_model("gemini-2.5-flash", temperature=temperature)
                     | StrOutputParser())
            config: Any = {"callbacks": [tracer], "metadata": {"variant": variant}}
            for question in QUESTIONS:
                emulator.queue(Reply(text=f"{variant} answer", usage=usage))
                chain.invoke({"question": question}, config=config)
            emulator.queue(Reply(text=f"{variant} streamed answer", usage=usage, stream_chunks=3))
            assert "".join(chain.stream({"question": QUESTIONS[0]}, config=config))
            if variant == "v2":
                emulator.queue_error(500, "backend overloaded")
                with pytest.raises(Exception):
                    chain.invoke({"question": "fail"}, config=config)
    assert provider.force_flush()
    assert exporter.force_flush(120_000), exporter.delivery.stats
    provider.shutdown()
    client = MlflowClient(mlflow_server.url)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None
    runs = client.search_runs([exp.experiment_id], max_results=100)
    assert len(runs) == 9
    yield experiment, runs


def test_pipeline_runs_grouped_by_a_metadata_tag(pipeline_runs, mlflow_server,  # type: ignore[no-untyped-def]
                                                 capsys) -> None:
    experiment, runs = pipeline_runs
    code, out, err = compare("--experiment", experiment, "--by", "tag:langchain.metadata.variant",
                             "--tracking-uri", mlflow_server.url, "--format", "json",
                             capsys=capsys)
    assert code == 0, err
    data = json.loads(out)
    groups = by_key(data)
    assert list(groups) == ["v1", "v2"]  # in order of their first run
    assert data["runs"] == 9 and data["by"] == "tag:langchain.metadata.variant"
    v1, v2 = groups["v1"], groups["v2"]
    assert (v1["runs"], v1["errors"], v2["runs"], v2["errors"]) == (4, 0, 5, 1)
    assert v2["values"]["error_rate"] == pytest.approx(0.2)
    assert "error_rate" in v1["best"] and "error_rate" not in v2["best"]
    usage = VARIANTS["v1"][3]
    assert v1["values"]["tokens_input_mean"] == usage.prompt
    assert v1["values"]["tokens_output_mean"] == usage.candidates
    assert v1["values"]["tokens_reasoning_mean"] == usage.thoughts
    usage = VARIANTS["v2"][3]  # the failed call used no tokens: four calls' worth over five runs
    assert v2["values"]["tokens_input_mean"] == pytest.approx(usage.prompt * 4 / 5)
    assert v2["values"]["tokens_reasoning_mean"] == pytest.approx(usage.thoughts * 4 / 5)
    for name, group in (("v1", v1), ("v2", v2)):
        # latency and TTFT: the runs' own metrics, as MLflow holds them
        mine = [r for r in runs if r.data.tags["langchain.metadata.variant"] == name]
        assert group["n"]["tokens_input_mean"] == len(mine)
        durations = [r.data.metrics[S.M_TRACE_DURATION] for r in mine]
        for q, column in ((0.5, "latency_p50_ms"), (0.95, "latency_p95_ms"),
                          (0.99, "latency_p99_ms")):
            assert group["values"][column] == pytest.approx(percentile(durations, q))
        ttfts = [r.data.metrics[S.M_LLM_TTFT] for r in mine if S.M_LLM_TTFT in r.data.metrics]
        assert len(ttfts) == 1 and group["n"]["ttft_p50_ms"] == 1
        assert group["values"]["ttft_p50_ms"] == pytest.approx(ttfts[0])
        assert group["values"]["cost_usd_mean"] is None or group["n"]["cost_usd_mean"] > 0
        assert group["missing_metrics"] == 0


def test_pipeline_runs_grouped_by_a_param_as_a_table(pipeline_runs, mlflow_server,  # type: ignore[no-untyped-def]
                                                     capsys) -> None:
    experiment, _ = pipeline_runs
    code, out, err = compare("--experiment", experiment, "--by", "param:temperature",
                             "--tracking-uri", mlflow_server.url, capsys=capsys)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == f"experiment {experiment!r}: 9 run(s) by param:temperature"
    assert lines[2].split()[:3] == ["param:temperature", "runs", "errors"]
    # a group label may carry its runs' LoggedModel name in parentheses: not a column
    rows = {re.sub(r" \([^)]*\)", "", line).split()[0]: re.sub(r" \([^)]*\)", "", line).split()
            for line in lines[4:6]}
    assert set(rows) == {"0.2", "0.7"}
    assert (rows["0.2"][1], rows["0.7"][1]) == ("4", "5")
    assert rows["0.2"][2] == "0.0%*" and rows["0.7"][2] == "20.0%"


# --- runs logged with MlflowClient: versions, LoggedModels, cost, feedback ------------------------

NOW_MS = int(time.time() * 1000)
V1, V2 = "a1b2c3d4e5f6", "0f9e8d7c6b5a"
LOGGED = [  # (version, status, metrics)
    (V1, "OK", {"trace.duration_ms": 900, "llm.ttft_ms": 300, "tokens.input": 100,
                "tokens.output": 20, "tokens.reasoning": 50, "cost.usd": 0.002,
                "cost.input_usd": 0.0005, "cost.output_usd": 0.0015, "feedback.helpful": 1}),
    (V1, "OK", {"trace.duration_ms": 1100, "llm.ttft_ms": 500, "tokens.input": 120,
                "tokens.output": 30, "tokens.reasoning": 70, "cost.usd": 0.004,
                "feedback.helpful": 0}),
    (V2, "OK", {"trace.duration_ms": 400, "llm.ttft_ms": 100, "tokens.input": 80,
                "tokens.output": 10, "tokens.reasoning": 0, "cost.usd": 0.001,
                "feedback.helpful": 1, "feedback.correct": 1}),
    (V2, "ERROR", {"trace.duration_ms": 600, "tokens.input": 80, "tokens.output": 0,
                   "tokens.reasoning": 0, "errors": 1}),
    (V2, "OK", {}),  # a run without metrics (half a write by some other tool)
]


def _log_run(client: MlflowClient, experiment_id: str, version: str | None, status: str,
             metrics: dict[str, float], model_id: str | None, start_ms: int) -> str:
    tags = {S.TAG_STATUS: status, S.TAG_TRACE_ID: uuid.uuid4().hex}
    if version:
        tags[S.TAG_CHAIN_VERSION] = version
    if model_id:
        tags[S.TAG_MODEL_ID] = model_id
    run = client.create_run(experiment_id, start_time=start_ms, tags=tags)
    client.log_batch(run.info.run_id, metrics=[Metric(k, float(v), start_ms, 0)
                                               for k, v in metrics.items()],
                     tags=[RunTag("mlflow.runName", f"logged {version}")])
    client.set_terminated(run.info.run_id, "FAILED" if status == "ERROR" else "FINISHED",
                          end_time=start_ms + 1000)
    return run.info.run_id


@pytest.fixture(scope="module")
def logged_runs(mlflow_server: Any) -> str:
    client = MlflowClient(mlflow_server.url)
    experiment = f"compare-logged-{uuid.uuid4().hex[:6]}"
    experiment_id = client.create_experiment(experiment)
    models = {V1: client.create_logged_model(experiment_id, name="bot-v1").model_id,
              V2: client.create_logged_model(experiment_id, name="bot-v2").model_id}
    for i, (version, status, metrics) in enumerate(LOGGED):
        _log_run(client, experiment_id, version, status, metrics, models[version],
                 NOW_MS - 60_000 + i)
    # three days old: outside --since 24h
    _log_run(client, experiment_id, V1, "OK", {"trace.duration_ms": 99_999}, models[V1],
             NOW_MS - 3 * 86_400_000)
    return experiment


def test_versions_with_their_logged_model_cost_and_feedback(logged_runs, mlflow_server,  # type: ignore[no-untyped-def]
                                                            capsys) -> None:
    code, out, err = compare("--experiment", logged_runs, "--since", "24h", "--tracking-uri",
                             mlflow_server.url, "--format", "json", capsys=capsys)
    assert code == 0, err
    data = json.loads(out)
    assert data["by"] == "chain.version" and data["runs"] == 5 and data["since"] == "24h"
    groups = by_key(data)
    v1, v2 = groups[V1], groups[V2]
    assert (v1["label"], v2["label"]) == (f"{V1} (bot-v1)", f"{V2} (bot-v2)")
    assert v1["values"]["latency_p50_ms"] == 1000 and v1["values"]["ttft_p95_ms"] == 490
    assert v1["values"]["cost_usd_mean"] == pytest.approx(0.003)
    assert v1["values"]["cost_usd_total"] == pytest.approx(0.006)
    assert v1["values"]["tokens_reasoning_mean"] == 60
    assert v1["values"]["feedback.helpful"] == 0.5 and v1["values"]["feedback.correct"] is None
    assert v2["values"]["feedback.helpful"] == 1 and v2["n"]["feedback.helpful"] == 1
    assert (v2["runs"], v2["errors"], v2["missing_metrics"]) == (3, 1, 1)
    assert v2["values"]["latency_p50_ms"] == 500 and v2["n"]["latency_p50_ms"] == 2
    assert v2["values"]["cost_usd_total"] == pytest.approx(0.001)
    assert {"latency_p50_ms", "ttft_p50_ms", "cost_usd_mean", "cost_usd_total",
            "feedback.helpful"} <= set(v2["best"])
    assert "error_rate" in v1["best"] and "feedback.helpful" not in v1["best"]


def test_the_table_shows_versions_marks_and_the_run_without_metrics(  # type: ignore[no-untyped-def]
        logged_runs, mlflow_server, capsys) -> None:
    code, out, err = compare("--experiment", logged_runs, "--tracking-uri", mlflow_server.url,
                             capsys=capsys)
    assert code == 0, err
    assert f"6 run(s) by chain.version" in out  # no window: the old run too
    lines = out.splitlines()
    header = lines[2].split()
    assert header[0] == "version" and header[-2:] == ["feedback.correct", "feedback.helpful"]
    v2_line = next(line for line in lines if line.startswith(f"{V2} (bot-v2)"))
    v1_line = next(line for line in lines if line.startswith(f"{V1} (bot-v1)"))
    assert "$0.001000*" in v2_line and "1.00*" in v2_line
    assert "n/a" in v1_line  # no feedback.correct on v1
    assert "1 of 3 run(s) in 0f9e8d7c6b5a (bot-v2) have no trace.duration_ms" in out


def test_paged_reading_with_a_progress_bar_gives_the_same_figures(  # type: ignore[no-untyped-def]
        logged_runs, mlflow_server, capsys) -> None:
    base = ["--experiment", logged_runs, "--tracking-uri", mlflow_server.url, "--format", "json"]
    code, whole, _ = compare(*base, capsys=capsys)
    assert code == 0
    code, paged, err = compare(*base, "--page-size", "2", "--progress", capsys=capsys)
    assert code == 0, err
    assert json.loads(paged) == json.loads(whole)
    assert "compare: reading runs" in err and "6run" in err.replace(" ", "")
    # no --progress and stderr not a terminal: no bar
    code, _, quiet = compare(*base, "--page-size", "2", capsys=capsys)
    assert code == 0 and "reading runs" not in quiet


def test_the_html_page_shows_every_version_without_errors_offline(  # type: ignore[no-untyped-def]
        logged_runs, pipeline_runs, mlflow_server, tmp_path, capsys) -> None:
    page = tmp_path / "compare.html"
    code, _, err = compare("--experiment", logged_runs, "--tracking-uri", mlflow_server.url,
                           "--html", str(page), capsys=capsys)
    assert code == 0, err
    assert f"HTML page written to {page}" in err
    report = load_page(page, wait_for="document.querySelectorAll('.js-plotly-plot .main-svg')"
                                      ".length >= 4", evaluate={
        "rows": "[...document.querySelectorAll('#comparison tbody tr td.version')]"
                ".map(td => td.textContent)",
        "plots": "document.querySelectorAll('.js-plotly-plot').length",
        "boxes": "[...document.querySelectorAll('.js-plotly-plot')].map(p => p.data.length)",
        "best": "document.querySelectorAll('#comparison td.best').length",
        "ticks": "[...document.querySelectorAll('.xtick text')].map(t => t.textContent)",
    })
    assert report.loaded and report.ready, report.console
    assert report.errors == []
    assert report.external_requests == []
    assert sorted(report.values["rows"]) == sorted([f"{V1} (bot-v1)", f"{V2} (bot-v2)"])
    assert report.values["plots"] == 2 and report.values["boxes"] == [2, 2]
    assert report.values["best"] >= 6
    assert {f"{V1} (bot-v1)", f"{V2} (bot-v2)"} <= set(report.values["ticks"])
    # a group with no cost.usd gets a sentence instead of an empty plot (the pipeline's runs are
    # priced now, so use a fresh experiment whose runs carry no cost)
    client = MlflowClient(tracking_uri=mlflow_server.url)
    bare = client.create_experiment(f"compare-nocost-{uuid.uuid4().hex[:6]}")
    for variant in ("A", "B"):
        run = client.create_run(bare, tags={"langchain.metadata.variant": variant})
        client.log_metric(run.info.run_id, "trace.duration_ms", 100.0)
        client.set_terminated(run.info.run_id)
    page2 = tmp_path / "pipeline.html"
    code, _, err = compare("--experiment", client.get_experiment(bare).name,
                           "--tracking-uri", mlflow_server.url,
                           "--by", "tag:langchain.metadata.variant", "--html", str(page2),
                           capsys=capsys)
    assert code == 0, err
    text = page2.read_text("utf-8")
    assert "Cost per run: no run has cost.usd." in text
    assert text.count("Plotly.newPlot") == 1  # the latency plot only


# --- bad input: one line, exit 2, nothing written ------------------------------------------------


@pytest.mark.parametrize("args, message", [
    (["--experiment", "no-such-experiment"], "unknown experiment 'no-such-experiment'"),
    (["--by", "tag:no.such.tag"], "has the tag 'no.such.tag'"),
    (["--by", "metric:cost.usd"], "expected chain.version, tag:KEY or param:KEY"),
    (["--since", "yesterday"], "--since 'yesterday'"),
    (["--html", "/no/such/dir/x.html"], "folder /no/such/dir does not exist"),
])
def test_bad_input_is_one_line_and_exit_code_2(logged_runs, mlflow_server, capsys,  # type: ignore[no-untyped-def]
                                               args: list[str], message: str) -> None:
    base = {"--experiment": logged_runs, "--tracking-uri": mlflow_server.url}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    code, out, err = compare(*[x for pair in base.items() for x in pair], capsys=capsys)
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1 and err.startswith("otel-mlflow compare: ")
    assert message in err
    assert MlflowClient(mlflow_server.url).get_experiment_by_name("no-such-experiment") is None


def test_a_page_that_cannot_be_written_is_one_line_exit_1_leaving_nothing(  # type: ignore[no-untyped-def]
        logged_runs, mlflow_server, tmp_path, capsys) -> None:
    target = tmp_path / "taken"
    target.mkdir()  # a folder where the page should go
    code, out, err = compare("--experiment", logged_runs, "--tracking-uri", mlflow_server.url,
                             "--html", str(target), capsys=capsys)
    assert (code, out) == (1, "")
    assert err.startswith(f"otel-mlflow compare: cannot write {target}: ")
    assert len(err.splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]  # no temporary file left


def test_an_empty_window_is_reported_not_printed_as_an_empty_table(  # type: ignore[no-untyped-def]
        mlflow_server, capsys) -> None:
    client = MlflowClient(mlflow_server.url)
    experiment = f"compare-old-{uuid.uuid4().hex[:6]}"
    experiment_id = client.create_experiment(experiment)
    _log_run(client, experiment_id, V1, "OK", {"trace.duration_ms": 5}, None,
             NOW_MS - 2 * 86_400_000)
    code, out, err = compare("--experiment", experiment, "--since", "1h", "--tracking-uri",
                             mlflow_server.url, capsys=capsys)
    assert (code, out) == (2, "")
    assert err == f"otel-mlflow compare: no finished runs in experiment {experiment!r} since 1h\n"
    code, out, _ = compare("--experiment", experiment, "--tracking-uri", mlflow_server.url,
                           capsys=capsys)
    assert code == 0 and f"{V1} " in out  # the run is still there, outside the window only


def test_an_unreachable_server_is_one_line_exit_1_and_the_env_is_left_alone(capsys) -> None:  # type: ignore[no-untyped-def]
    from tests._support.mlflow_server import free_port

    before = dict(os.environ)
    url = f"http://127.0.0.1:{free_port()}"
    code, out, err = compare("--experiment", "x", "--tracking-uri", url, capsys=capsys)
    assert (code, out) == (1, "")
    assert len(err.splitlines()) == 1 and err.startswith("otel-mlflow compare: cannot read MLflow")
    assert dict(os.environ) == before  # the short HTTP retry defaults were scoped to the read


def test_the_console_script_exits_2_with_one_line(mlflow_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    script = Path(sys.executable).with_name("otel-mlflow")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING")}
    env["PYTHONWARNINGS"] = "ignore"
    proc = subprocess.run([str(script), "compare", "--experiment", "nope", "--tracking-uri",
                           mlflow_server.url], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=120, check=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [
        f"otel-mlflow compare: unknown experiment 'nope' at {mlflow_server.url}; "
        f"experiments there: {proc.stderr.split('experiments there: ')[1].strip()}"]
    assert "Default" in proc.stderr
