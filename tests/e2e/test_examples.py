"""Every script in ``examples/`` runs offline as written and writes the runs it promises.

Each example runs in a subprocess with a temporary working directory, so its runs land in the
embedded default store ``sqlite:///mlflow.db`` there; the test reads them back with
``MlflowClient``. ``GOOGLE_CLOUD_PROJECT`` and the OTLP endpoint variables are removed, so the
examples take their offline paths (the local Gemini emulator, a local OTLP receiver).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient


EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run_example(name: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "OTEL_TRACES_EXPORTER",
                "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "GOOGLE_CLOUD_PROJECT", "GOOGLE_API_KEY", "GEMINI_API_KEY",
                "GOOGLE_GENAI_USE_VERTEXAI", "OTEL_MLFLOW_SPOOL_DIR"):
        env.pop(var, None)
    env["PYTHONWARNINGS"] = "ignore::DeprecationWarning"
    proc = subprocess.run([sys.executable, str(EXAMPLES / name)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=240, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def runs_of(cwd: Path, experiment_name: str) -> tuple[MlflowClient, list[Any]]:
    client = MlflowClient(tracking_uri=f"sqlite:///{cwd / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(experiment_name)
    assert experiment is not None
    return client, client.search_runs([experiment.experiment_id])


def artifact(client: MlflowClient, run_id: str, path: str, dst: Path) -> Any:
    return json.loads(Path(client.download_artifacts(run_id, path, str(dst))).read_text("utf-8"))


def rows(table: dict[str, Any]) -> list[dict[str, Any]]:
    return [dict(zip(table["columns"], row, strict=True)) for row in table["data"]]


def iter_spans(tree: Any) -> Iterator[dict[str, Any]]:
    if isinstance(tree, list):
        for item in tree:
            yield from iter_spans(item)
    elif isinstance(tree, dict):
        if "span_id" in tree:
            yield tree
        for key in ("children", "spans", "roots", "root"):
            if key in tree:
                yield from iter_spans(tree[key])


def test_gemini_vertexai(tmp_path: Path) -> None:
    proc = run_example("gemini_vertexai.py", tmp_path)
    assert "local Gemini emulator" in proc.stdout
    client, runs = runs_of(tmp_path, "gemini-vertexai-example")
    assert len(runs) == 2
    streamed = [r for r in runs if "llm.ttft_ms" in r.data.metrics]
    assert len(streamed) == 1  # the stream() call, and only it
    for run in runs:
        assert run.data.tags["otel_mlflow.status"] == "OK"
        assert run.data.metrics["llm.calls"] == 1
        assert run.data.metrics["tokens.input"] > 0
        # The seed's generation settings, as run params.
        assert run.data.params["model"] == "gemini-2.5-flash"
        assert run.data.params["top_k"] == "10"
        assert float(run.data.params["top_p"]) == 0.8
        assert int(run.data.params["max_tokens"]) == 1024
        table = rows(artifact(client, run.info.run_id, "llm_calls.json", tmp_path / run.info.run_id))
        assert len(table) == 1
        # The emulator echoes the prompt it received; the table shows it, formatted by LangChain.
        assert "Answer in one sentence." in table[0]["input"]
        assert "Echo:" in table[0]["output"]
    japanese = rows(artifact(client, streamed[0].info.run_id, "llm_calls.json",
                             tmp_path / "streamed"))
    assert "大規模言語モデル" in japanese[0]["input"]


def test_gemini_genai(tmp_path: Path) -> None:
    proc = run_example("gemini_genai.py", tmp_path)
    assert "local Gemini emulator" in proc.stdout
    client, runs = runs_of(tmp_path, "gemini-genai-example")
    assert len(runs) == 3
    by_name = {r.info.run_name: r for r in runs}
    image_run = by_name["chat gemini-2.5-flash"]
    streamed = [r for r in runs if "llm.ttft_ms" in r.data.metrics]
    assert len(streamed) == 1
    for run in runs:
        assert run.data.tags["otel_mlflow.status"] == "OK"
        assert run.data.tags["otel_mlflow.providers"] == "gcp.vertex_ai"
    invoked = [r for r in runs if r is not image_run and r not in streamed]
    (row,) = rows(artifact(client, invoked[0].info.run_id, "llm_calls.json", tmp_path / "i"))
    assert row["output"].startswith("OpenTelemetry is an open standard")
    assert row["reasoning"] == "One sentence, plain words."
    (row,) = rows(artifact(client, image_run.info.run_id, "llm_calls.json", tmp_path / "m"))
    assert row["input"] == "Describe this image in five words.\n[image/png, 68 B]"


def test_agent_with_tools(tmp_path: Path) -> None:
    proc = run_example("agent_with_tools.py", tmp_path)
    assert "69.8" in proc.stdout
    client, runs = runs_of(tmp_path, "agent-with-tools-example")
    assert len(runs) == 1
    run = runs[0]
    assert run.data.metrics["llm.calls"] == 3
    assert run.data.metrics["tool.calls"] == 2
    assert run.data.metrics["tokens.input"] == 120 + 160 + 190
    spans = list(iter_spans(artifact(client, run.info.run_id, "span_tree.json", tmp_path / "t")))
    names = [s["name"] for s in spans]
    assert "invoke_agent weather_agent" in names
    assert names.count("execute_tool get_weather") == 1
    assert names.count("execute_tool celsius_to_fahrenheit") == 1
    agent = next(s for s in spans if s["name"] == "invoke_agent weather_agent")
    below = {s["name"] for s in iter_spans(agent.get("children", []))}
    assert {"execute_tool get_weather", "execute_tool celsius_to_fahrenheit"} <= below
    assert any(n.startswith("chat ") for n in below)


def test_forward_otlp(tmp_path: Path) -> None:
    proc = run_example("forward_otlp.py", tmp_path)
    received = re.findall(r"OTLP receiver got: trace=([0-9a-f]{32}) span=([0-9a-f]{16}) (.+)",
                          proc.stdout)
    assert received, proc.stdout
    client, runs = runs_of(tmp_path, "forward-otlp-example")
    assert len(runs) == 1
    run = runs[0]
    assert {trace for trace, _, _ in received} == {run.data.tags["otel.trace_id"]}
    tree = artifact(client, run.info.run_id, "span_tree.json", tmp_path / "t")
    assert {span for _, span, _ in received} == {s["span_id"] for s in iter_spans(tree)}


def test_seed_start_run(tmp_path: Path) -> None:
    proc = run_example("seed_start_run.py", tmp_path)
    client, runs = runs_of(tmp_path, "seed-start-run-example")
    assert len(runs) == 1  # everything in the user's run, no run per trace
    run = runs[0]
    assert run.info.run_name == "seed-article-flow"
    assert run.info.run_id in proc.stdout
    assert run.info.status == "FINISHED"
    table = rows(artifact(client, run.info.run_id, "llm_calls.json", tmp_path / "t"))
    assert len(table) == 2  # the chain's model call and the direct call
    assert "Write a slogan for a tea shop." in table[0]["input"]
    assert "Translate 'good morning' to Japanese." in table[1]["input"]
    history = client.get_metric_history(run.info.run_id, "llm.calls")
    assert sorted(point.step for point in history) == [0, 1]  # one step per trace
    assert run.data.tags["otel_mlflow.trace_count"] == "2"
    trace_ids = {row["trace_id"] for row in table}
    assert len(trace_ids) == 2
    trees: dict[str, Any] = {}
    for item in client.list_artifacts(run.info.run_id, "span_trees"):
        trees.update(artifact(client, run.info.run_id, item.path, tmp_path / "trees"))
    assert set(trees) == trace_ids
    linked = client.search_traces(locations=[run.info.experiment_id], run_id=run.info.run_id)
    assert len(linked) == 2
    # The runs table shows the run's totals, not the last trace's step (issue 13).
    assert run.data.metrics["run.traces"] == 2 and run.data.metrics["run.llm.calls"] == 2
    assert run.data.metrics["run.tokens.total"] == sum(r["total_tokens"] for r in table)
    page = Path(client.download_artifacts(run.info.run_id, "span_tree.html", str(tmp_path / "p")))
    assert page.read_text("utf-8").count('<section class="trace"') == 2


def test_ab_versions(tmp_path: Path) -> None:
    proc = run_example("ab_versions.py", tmp_path)
    client, runs = runs_of(tmp_path, "ab-versions-example")
    assert len(runs) == 6
    variants = [run.data.tags["langchain.metadata.variant"] for run in runs]
    assert sorted(set(variants)) == ["A", "B"]
    # the same user always gets the same version; every run streamed (TTFT)
    assert all("llm.ttft_ms" in run.data.metrics for run in runs)
    temperatures = {run.data.tags["langchain.metadata.variant"]: run.data.params["temperature"]
                    for run in runs}
    assert temperatures == {"A": "0.2", "B": "0.7"}
    # the compare table the script prints: one row per variant, with its run count
    table = proc.stdout[proc.stdout.index("experiment 'ab-versions-example': 6 run(s)"):]
    rows = {line.split()[0]: line.split() for line in table.splitlines()[4:6]}
    assert set(rows) == {"A", "B"}
    # With chain versions, the group key is followed by its LoggedModel name in parentheses.
    counts = {name: int(cells[2] if cells[1].startswith("(") else cells[1])
              for name, cells in rows.items()}
    assert counts == \
        {name: variants.count(name) for name in ("A", "B")}


# --- the README and docs stay true to the code ------------------------------------------------

ROOT = EXAMPLES.parent
DEMO_COMMAND = ('python -m venv .venv && . .venv/bin/activate && pip install -e ".[genai]" '
                "&& otel-mlflow demo")
TEST_COMMAND = ('python -m venv .venv && . .venv/bin/activate && pip install -e ".[test]" '
                "&& python -m pytest")


def test_readme_first_screen_has_the_two_commands() -> None:
    first_screen = "\n".join((ROOT / "README.md").read_text("utf-8").splitlines()[:30])
    assert DEMO_COMMAND in first_screen
    assert TEST_COMMAND in first_screen
    # CI runs the README's test command (with python3 for the venv).
    assert TEST_COMMAND.replace("python -m venv", "python3 -m venv", 1) in \
        (ROOT / ".ci" / "run").read_text("utf-8")


def test_configuration_doc_lists_every_argument_and_env_var() -> None:
    import inspect

    from otel_mlflow._common import settings as _config
    from otel_mlflow._setup import configure
    from otel_mlflow._export.exporter import MlflowSpanExporter
    from otel_mlflow._tracing.handler import OtelTracer

    doc = (ROOT / "docs" / "configuration.md").read_text("utf-8")
    for func in (configure, MlflowSpanExporter.__init__, OtelTracer.__init__):
        for name in inspect.signature(func).parameters:
            if name in ("self", "exporter_kwargs"):
                continue
            assert f"`{name}`" in doc, f"{func.__qualname__}({name}) is not documented"
    env_vars = [value for key, value in vars(_config).items()
                if key.isupper() and isinstance(value, str) and value.isupper()
                and "_" in value and not value.startswith("sqlite")]
    assert len(env_vars) >= 15
    for var in env_vars:
        assert f"`{var}`" in doc, f"{var} is not documented"


def test_run_schema_doc_names_every_tag_metric_and_column() -> None:
    import otel_mlflow._record as _records

    doc = (ROOT / "docs" / "run-schema.md").read_text("utf-8")
    names = [value for key, value in vars(_records).items()
             if key.startswith(("TAG_", "PARAM_", "M_", "ARTIFACT_")) and isinstance(value, str)]
    names += list(_records.TABLE_COLUMNS)
    assert len(names) > 30
    for name in names:
        assert f"`{name}" in doc, f"{name} is not in docs/run-schema.md"


def test_spans_doc_names_every_attribute_constant() -> None:
    from otel_mlflow._common import semconv as _attributes

    doc = (ROOT / "docs" / "spans.md").read_text("utf-8")
    # Every attribute or event name the tracer can emit (constants it references).
    source = "".join(path.read_text("utf-8")
                     for path in sorted((ROOT / "otel_mlflow" / "_tracing").rglob("*.py")))
    used = set(re.findall(r"\bA\.([A-Z_]+)\b", source))
    assert len(used) > 30
    missing = [value for key, value in vars(_attributes).items()
               if key in used and isinstance(value, str) and "." in value and value not in doc]
    assert not missing, f"not in docs/spans.md: {missing}"


def test_docs_links_resolve() -> None:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for path in files:
        for target in re.findall(r"\]\(([^)#\s]+\.(?:md|py))(?:#[^)]*)?\)", path.read_text("utf-8")):
            if target.startswith("http"):
                continue
            assert (path.parent / target).resolve().exists(), f"{path.name} links to {target}"


def test_configuration_doc_defaults_match_the_code() -> None:
    from otel_mlflow._common import settings as _exporter
    from otel_mlflow._common import settings as _delivery
    from otel_mlflow._tracing.content import serialize as _serialize
    from otel_mlflow._delivery import spool as _spool
    from otel_mlflow._tracing import handler as _tracer

    doc_lines = (ROOT / "docs" / "configuration.md").read_text("utf-8").splitlines()
    env_table = {line.split("|")[1].strip(): line for line in doc_lines
                 if line.startswith("| `OTEL_MLFLOW_") or line.startswith("| `OTEL_INST")}

    def shown(value: float) -> str:
        return f"`{value:g}`" if isinstance(value, float) else f"`{value}`"

    expected = {
        "OTEL_MLFLOW_MAX_ATTRIBUTE_CHARS": _serialize.DEFAULT_MAX_CHARS,
        "OTEL_MLFLOW_RUN_TTL_SECONDS": _tracer.DEFAULT_RUN_TTL_SECONDS,
        "OTEL_MLFLOW_MAX_OPEN_RUNS": _tracer.DEFAULT_MAX_OPEN_RUNS,
        "OTEL_MLFLOW_GRACE_SECONDS": _exporter.DEFAULT_GRACE_SECONDS,
        "OTEL_MLFLOW_TRACE_TIMEOUT_SECONDS": _exporter.DEFAULT_TRACE_TIMEOUT_SECONDS,
        "OTEL_MLFLOW_MAX_BUFFERED_TRACES": _exporter.DEFAULT_MAX_BUFFERED_TRACES,
        "OTEL_MLFLOW_MAX_SPANS_PER_TRACE": _exporter.DEFAULT_MAX_SPANS_PER_TRACE,
        "OTEL_MLFLOW_WORKERS": _exporter.DEFAULT_WORKERS,
        "OTEL_MLFLOW_SPOOL_MAX_BYTES": _spool.DEFAULT_MAX_BYTES,
        "OTEL_MLFLOW_SHUTDOWN_TIMEOUT_SECONDS": _exporter.DEFAULT_SHUTDOWN_TIMEOUT_SECONDS,
        "OTEL_MLFLOW_RETRY_MAX_SECONDS": _delivery.DEFAULT_RETRY_MAX_SECONDS,
    }
    for var, value in expected.items():
        line = env_table[f"`{var}`"]
        assert shown(value) in line or f"`{value}`" in line, (var, value, line)
    # The constructor tables repeat them: | argument | variable | default | meaning |
    checked = 0
    for line in doc_lines:
        cells = [cell.strip() for cell in line.split("|")]
        if len(cells) == 6 and cells[2].strip("`") in expected:
            value = expected[cells[2].strip("`")]
            assert cells[3].split(" ")[0] in (shown(value), f"`{value}`"), line
            checked += 1
    assert checked == len(expected)
