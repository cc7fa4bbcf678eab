"""The ``otel-mlflow`` console script: ``demo`` writes what the demo did, ``replay`` drains a spool.

Every test runs the installed console script in a subprocess with a temporary working directory
(the embedded default store ``sqlite:///mlflow.db`` lands there) and reads the runs back with
``MlflowClient``. The demo's model replies are scripted (see ``otel_mlflow._demo``), so token
counts and texts are known exactly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from otel_mlflow import _demo
from otel_mlflow._common import semconv as attrs
from otel_mlflow._delivery import spool as _spool

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _cli() -> list[str]:
    """The console script installed next to this interpreter (``pip install -e``)."""
    script = Path(sys.executable).with_name("otel-mlflow")
    assert script.exists(), "the otel-mlflow console script is not installed (pip install -e .)"
    return [str(script)]


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "OTEL_TRACES_EXPORTER",
                "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "OTEL_MLFLOW_SPOOL_DIR", "GOOGLE_CLOUD_PROJECT"):
        env.pop(var, None)
    env["PYTHONWARNINGS"] = "ignore::DeprecationWarning"
    env.update(extra)
    return env


def _run(args: list[str], cwd: Path, timeout: float = 240.0,
         **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_cli() + args, cwd=cwd, env=_env(**env), capture_output=True,
                          text=True, timeout=timeout, check=False)


def iter_spans(tree: Any) -> Iterator[dict[str, Any]]:
    """Every span dict of a ``span_tree.json`` document, depth first."""
    if isinstance(tree, list):
        for item in tree:
            yield from iter_spans(item)
    elif isinstance(tree, dict):
        if "span_id" in tree:
            yield tree
        for key in ("children", "spans", "roots", "root"):
            if key in tree:
                yield from iter_spans(tree[key])


def load_artifact(client: MlflowClient, run_id: str, path: str, dst: Path) -> Any:
    local = client.download_artifacts(run_id, path, str(dst))
    return json.loads(Path(local).read_text(encoding="utf-8"))


def table_rows(table: dict[str, Any]) -> list[dict[str, Any]]:
    return [dict(zip(table["columns"], row, strict=True)) for row in table["data"]]


def root_of(tree: Any) -> dict[str, Any]:
    spans = list(iter_spans(tree))
    roots = [s for s in spans if s.get("attributes", {}).get(attrs.ROOT)]
    assert len(roots) == 1, [s.get("name") for s in spans]
    return roots[0]


def children_names(span: dict[str, Any]) -> list[str]:
    return [child["name"] for child in span.get("children", [])]


# The genai demo runs exactly as the README says (embedded default store, default experiment;
# auto picks ChatGoogleGenerativeAI, installed here); the others also exercise --model,
# --tracking-uri and --experiment.
DEMO_ARGS: dict[str, tuple[list[str], str, str]] = {
    "genai": (["demo"], "mlflow.db", _demo.DEFAULT_EXPERIMENT),
    "vertexai": (["demo", "--model", "vertexai", "--experiment", "vx-demo"], "mlflow.db",
                 "vx-demo"),
    "fake": (["demo", "--model", "fake", "--tracking-uri", "sqlite:///{cwd}/elsewhere.db",
              "--experiment", "my-demo"], "elsewhere.db", "my-demo"),
}


@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Run ``otel-mlflow demo`` once per model kind; map model kind -> what it produced."""
    results: dict[str, dict[str, Any]] = {}
    for kind, (args, db_name, experiment_name) in DEMO_ARGS.items():
        cwd = tmp_path_factory.mktemp(f"demo_{kind}")
        proc = _run([arg.format(cwd=cwd) for arg in args], cwd)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        client = MlflowClient(tracking_uri=f"sqlite:///{cwd / db_name}")
        experiment = client.get_experiment_by_name(experiment_name)
        assert experiment is not None, proc.stdout
        runs = client.search_runs([experiment.experiment_id])
        by_step: dict[str, Any] = {}
        for run in runs:
            tree = load_artifact(client, run.info.run_id, "span_tree.json", cwd / run.info.run_id)
            step = root_of(tree)["attributes"][attrs.LC_NAME]
            by_step[step] = {"run": run, "tree": tree,
                             "table": load_artifact(client, run.info.run_id, "llm_calls.json",
                                                    cwd / run.info.run_id)}
        results[kind] = {"cwd": cwd, "stdout": proc.stdout, "runs": runs, "by_step": by_step,
                         "client": client}
    return results


MODEL_KINDS = pytest.mark.parametrize("kind", ["genai", "vertexai", "fake"])
# What the failing step raises (and its span's error.type) with each client.
EXPECTED_ERRORS = {"genai": "GoogleAPIError", "vertexai": "InternalServerError",
                   "fake": "RuntimeError"}


@MODEL_KINDS
def test_demo_writes_one_run_per_step(demo_runs: dict[str, Any], kind: str) -> None:
    result = demo_runs[kind]
    assert len(result["runs"]) == 4
    assert set(result["by_step"]) == {"explain_topic", "explain_topic_streamed", "weather_agent",
                                      "failing_call"}
    for item in result["by_step"].values():
        run = item["run"]
        assert len(run.data.tags["otel.trace_id"]) == 32
        assert run.data.tags["otel.service.name"] == _demo.SERVICE_NAME


@MODEL_KINDS
def test_demo_chain_run_matches_the_app(demo_runs: dict[str, Any], kind: str) -> None:
    item = demo_runs[kind]["by_step"]["explain_topic"]
    run, tree = item["run"], item["tree"]
    metrics = run.data.metrics
    assert run.data.tags["otel_mlflow.status"] == "OK"
    assert metrics["llm.calls"] == 1
    assert (metrics["tokens.input"], metrics["tokens.output"], metrics["tokens.total"]) == \
        _demo.USAGE_TOPIC
    assert metrics["errors"] == 0
    assert metrics["trace.duration_ms"] >= metrics["llm.duration_ms"] > 0
    assert "llm.ttft_ms" not in metrics  # not streamed
    root = root_of(tree)
    assert root["name"] == "invoke_workflow explain_topic"
    assert children_names(root) == ["ChatPromptTemplate", f"chat {_demo.MODEL_NAME}",
                                    "StrOutputParser"]
    rows = table_rows(item["table"])
    assert len(rows) == 1
    assert "Explain OpenTelemetry to a new team member." in rows[0]["input"]
    assert "You are a concise assistant." in rows[0]["input"]
    assert _demo.ANSWER_TOPIC in rows[0]["output"]
    assert not rows[0]["error"]


@MODEL_KINDS
def test_demo_streamed_run_has_ttft_and_readable_japanese(demo_runs: dict[str, Any],
                                                          kind: str) -> None:
    item = demo_runs[kind]["by_step"]["explain_topic_streamed"]
    metrics = item["run"].data.metrics
    assert metrics["llm.ttft_ms"] > 0
    assert metrics["llm.ttft_ms"] <= metrics["llm.duration_ms"]
    assert metrics["tokens.total"] == _demo.USAGE_TOPIC_JA[2]  # as reported, incl. thinking
    assert metrics["tokens.reasoning"] == 6
    rows = table_rows(item["table"])
    assert _demo.TOPIC_JA in rows[0]["input"]
    assert _demo.ANSWER_TOPIC_JA in rows[0]["output"]
    raw = Path(demo_runs[kind]["client"].download_artifacts(
        item["run"].info.run_id, "llm_calls.json", str(demo_runs[kind]["cwd"] / "raw"))
    ).read_text(encoding="utf-8")
    assert _demo.TOPIC_JA in raw  # stored as Japanese, not \\u escapes
    if kind == "genai":  # thought summaries asked for: in their own column, not the answer
        assert rows[0]["reasoning"] == _demo.THOUGHTS_TOPIC_JA
        assert _demo.THOUGHTS_TOPIC_JA not in rows[0]["output"]
        assert item["run"].data.tags["otel_mlflow.providers"] == "gcp.vertex_ai"


@MODEL_KINDS
def test_demo_tool_step_nests_tool_and_model_calls(demo_runs: dict[str, Any], kind: str) -> None:
    item = demo_runs[kind]["by_step"]["weather_agent"]
    metrics = item["run"].data.metrics
    assert metrics["llm.calls"] == 2
    assert metrics["tool.calls"] == 1
    assert metrics["tokens.input"] == _demo.USAGE_TOOL_CALL[0] + _demo.USAGE_TOOL_ANSWER[0]
    assert metrics["tokens.output"] == _demo.USAGE_TOOL_CALL[1] + _demo.USAGE_TOOL_ANSWER[1]
    root = root_of(item["tree"])
    assert root["name"] == "invoke_workflow weather_agent"
    assert children_names(root) == [f"chat {_demo.MODEL_NAME}", "execute_tool get_weather",
                                     f"chat {_demo.MODEL_NAME}"]
    tool_span = root["children"][1]
    assert tool_span["attributes"][attrs.GEN_AI_TOOL_NAME] == "get_weather"
    assert tool_span["attributes"][attrs.GEN_AI_TOOL_CALL_ARGUMENTS] == {"city": _demo.CITY}
    assert tool_span["attributes"][attrs.GEN_AI_TOOL_CALL_ID]
    assert "sunny" in json.dumps(tool_span["attributes"][attrs.GEN_AI_TOOL_CALL_RESULT])
    rows = table_rows(item["table"])
    assert len(rows) == 2
    assert _demo.ANSWER_WEATHER in rows[1]["output"]


@MODEL_KINDS
def test_demo_failing_call_is_recorded_as_error(demo_runs: dict[str, Any], kind: str) -> None:
    item = demo_runs[kind]["by_step"]["failing_call"]
    run = item["run"]
    assert run.data.tags["otel_mlflow.status"] == "ERROR"
    assert run.data.metrics["errors"] >= 1
    assert run.data.metrics["llm.calls"] == 1
    root = root_of(item["tree"])
    assert root["name"] == f"chat {_demo.MODEL_NAME}"
    expected_error = EXPECTED_ERRORS[kind]
    assert root["attributes"][attrs.ERROR_TYPE] == expected_error
    rows = table_rows(item["table"])
    assert expected_error in rows[0]["error"]
    assert "Summarize the incident report." in rows[0]["input"]


@MODEL_KINDS
def test_demo_prints_runs_and_ui_command(demo_runs: dict[str, Any], kind: str) -> None:
    result = demo_runs[kind]
    stdout = result["stdout"]
    assert "4 MLflow run(s) written" in stdout
    for item in result["by_step"].values():
        run = item["run"]
        assert run.info.run_id in stdout
        assert run.info.run_name in stdout
    assert "[ERROR]" in stdout and "[OK]" in stdout
    assert "llm_calls.json" in stdout and "span_tree.json" in stdout and "span_tree.html" in stdout
    for item in result["by_step"].values():  # the version each run belongs to, with its model
        tags = item["run"].data.tags
        assert (f"version:   {tags['otel_mlflow.chain.version']}  "
                f"(LoggedModel {tags['otel_mlflow.model_id']})") in stdout
    if kind != "fake":  # Gemini is priced; the cost printed is the run's metric
        cost = result["by_step"]["explain_topic"]["run"].data.metrics["cost.usd"]
        assert f"cost.usd={cost:.3g}" in stdout
    if kind == "genai":
        assert "mlflow ui --backend-store-uri sqlite:///mlflow.db" in stdout
        assert ("ChatGoogleGenerativeAI(gemini-2.5-flash, vertexai=True) -> local Gemini "
                "emulator") in stdout
    elif kind == "vertexai":
        assert "ChatVertexAI(gemini-2.5-flash) -> local Gemini emulator" in stdout
    else:
        assert "fake chat model" in stdout
    assert "step failing_call: raised" in stdout
    expected_error = EXPECTED_ERRORS[kind]
    assert f"error:     {expected_error}" in stdout


def test_demo_honours_tracking_uri_and_experiment(demo_runs: dict[str, Any]) -> None:
    cwd = demo_runs["fake"]["cwd"]
    assert not (cwd / "mlflow.db").exists()  # nothing went to the default store
    assert len(demo_runs["fake"]["runs"]) == 4  # all in experiment my-demo of elsewhere.db
    assert f"mlflow ui --backend-store-uri sqlite:///{cwd}/elsewhere.db" in \
        demo_runs["fake"]["stdout"]
    assert "experiment: my-demo" in demo_runs["fake"]["stdout"]


def test_demo_links_each_run_to_its_trace_in_the_traces_view(demo_runs: dict[str, Any]) -> None:
    result = demo_runs["genai"]
    client = result["client"]
    for item in result["by_step"].values():
        run = item["run"]
        traces = client.search_traces(locations=[run.info.experiment_id], run_id=run.info.run_id)
        assert len(traces) == 1
        span_ids = {span.span_id for span in traces[0].data.spans}
        assert span_ids == {node["span_id"] for node in iter_spans(item["tree"])}


def test_version() -> None:
    from importlib.metadata import version

    proc = subprocess.run(_cli() + ["--version"], capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"otel-mlflow {version('otel-mlflow')}"


# --- replay ------------------------------------------------------------------------------------

SPOOLING_APP = r"""
import sys
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from opentelemetry.sdk.trace import TracerProvider

import otel_mlflow

spool_dir, count = sys.argv[1], int(sys.argv[2])
provider = TracerProvider()
# Port 9 (discard) on loopback: nothing listens, every write fails fast, records are spooled.
tracer = otel_mlflow.configure(
    tracking_uri="http://127.0.0.1:9", experiment_name="replayed", tracer_provider=provider,
    set_global=False, otlp=False, spool_dir=spool_dir, retry_max_seconds=0.5,
    shutdown_timeout_seconds=5,
)
chain = (ChatPromptTemplate.from_template("Tell me about {topic}")
         | FakeListChatModel(responses=["spooled answer"]) | StrOutputParser())
for i in range(count):
    chain.invoke({"topic": f"topic {i}"}, config={"callbacks": [tracer]})
provider.shutdown()
"""


def test_replay_keeps_the_spool_while_mlflow_is_down_then_writes_it(tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    app = tmp_path / "app.py"
    app.write_text(SPOOLING_APP, encoding="utf-8")
    # MLflow's client would retry the refused connection for minutes; the spool is the point.
    prepared = subprocess.run([sys.executable, str(app), str(spool_dir), "3"], cwd=tmp_path,
                              env=_env(MLFLOW_HTTP_REQUEST_MAX_RETRIES="0"),
                              capture_output=True, text=True, timeout=180, check=False)
    assert prepared.returncode == 0, prepared.stderr
    spool = _spool.Spool(spool_dir, tracking_uri="http://127.0.0.1:9")
    try:
        assert spool.pending() == 3, prepared.stderr
    finally:
        spool.close()

    down = _run(["replay", "--spool-dir", str(spool_dir), "--tracking-uri",
                 "http://127.0.0.1:9"], tmp_path, timeout=120)
    assert down.returncode == 1, down.stdout + down.stderr
    assert "0 trace(s) written" in down.stdout
    assert "3 left in the spool" in down.stdout
    assert "Traceback" not in down.stderr

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = _run(["replay", "--spool-dir", str(spool_dir), "--tracking-uri", store], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "replay: 3 trace(s) written to MLflow, 0 failed, 0 left in the spool" in proc.stdout
    assert "3/3" in proc.stderr  # the progress bar

    client = MlflowClient(tracking_uri=store)
    experiment = client.get_experiment_by_name("replayed")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 3
    assert len({run.data.tags["otel.trace_id"] for run in runs}) == 3
    for run in runs:
        assert run.info.status == "FINISHED"
        rows = table_rows(load_artifact(client, run.info.run_id, "llm_calls.json",
                                        tmp_path / run.info.run_id))
        assert rows[0]["output"] == "spooled answer"

    again = _run(["replay", "--spool-dir", str(spool_dir), "--tracking-uri", store], tmp_path)
    assert again.returncode == 0
    assert "replay: 0 trace(s) written" in again.stdout
    assert len(client.search_runs([experiment.experiment_id])) == 3


def test_replay_progress_bar_without_tqdm() -> None:
    import io

    from otel_mlflow.cli import _Progress

    stream = io.StringIO()
    bar = _Progress(stream)
    bar._tqdm = None  # as on a machine without tqdm (it is optional)
    for done in range(5):
        bar(done, 4)
    bar.close()
    text = stream.getvalue()
    assert "replay [" + "#" * 30 + "] 4/4 traces" in text
    assert "0/4 traces" in text
    assert text.endswith("\n")


def test_replay_include_rejected_retries_the_set_aside_traces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """rejected/ is left alone by a plain replay and retried with --include-rejected."""
    from otel_mlflow import cli
    from otel_mlflow._common.settings import REPLAY_HTTP_DEFAULTS
    from tests.delivery.test_spool import make_record

    for name, value in REPLAY_HTTP_DEFAULTS.items():
        monkeypatch.setenv(name, value)  # main() would set them in this process otherwise
    spool_dir = tmp_path / "spool"
    spool = _spool.Spool(spool_dir, experiment_name="set-aside", link_traces=False)
    spool.put(make_record(7), folder=_spool.REJECTED_DIR)
    spool.close()
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"

    assert cli.main(["replay", "--spool-dir", str(spool_dir), "--tracking-uri", store]) == 0
    out = capsys.readouterr().out
    assert "replay: 0 trace(s) written" in out
    assert "1 trace(s) set aside in the spool's rejected/ folder" in out
    assert "--include-rejected" in out

    assert cli.main(["replay", "--spool-dir", str(spool_dir), "--tracking-uri", store,
                     "--include-rejected"]) == 0
    out = capsys.readouterr().out
    assert "replay: 1 trace(s) written to MLflow, 0 failed, 0 left in the spool" in out
    assert "rejected/" not in out
    client = MlflowClient(tracking_uri=store)
    experiment = client.get_experiment_by_name("set-aside")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert [run.data.tags["otel.trace_id"] for run in runs] == [f"{7:032x}"]


def test_demo_against_a_tracking_server(mlflow_server: Any, tmp_path: Path) -> None:
    proc = _run(["demo", "--model", "fake", "--experiment", "demo-on-server"], tmp_path,
                MLFLOW_TRACKING_URI=mlflow_server.url)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not (tmp_path / "mlflow.db").exists()
    assert "mlflow ui" not in proc.stdout  # a server has its own UI
    assert f"View them in the MLflow UI at {mlflow_server.url}" in proc.stdout
    client = MlflowClient(tracking_uri=mlflow_server.url)
    experiment = client.get_experiment_by_name("demo-on-server")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 4
    statuses = sorted(run.data.tags["otel_mlflow.status"] for run in runs)
    assert statuses == ["ERROR", "OK", "OK", "OK"]
    for run in runs:
        linked = client.search_traces(locations=[experiment.experiment_id],
                                      run_id=run.info.run_id)
        assert len(linked) == 1
