"""Issue 13 (2, 6): run totals in active-run mode and the ``span_tree.html`` page, on a real server.

The seed's flow: one ``mlflow.start_run()``, a Japanese prompt in two prompt versions, a stream
and a failing call, all through the real ``ChatVertexAI`` client over REST to the local Gemini
emulator, traced by ``OtelTracer`` into a real ``MlflowSpanExporter`` writing to the session's
real ``mlflow server``. Everything is read back through ``MlflowClient``. The restart case builds
a second exporter (a new writer, nothing cached) that continues the same run.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import pytest
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from mlflow.tracking import MlflowClient
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

import otel_mlflow._record as R
from otel_mlflow._export.exporter import MlflowSpanExporter
from otel_mlflow._record import span_tree_html as H
from otel_mlflow._tracing.handler import OtelTracer
from otel_mlflow.testing.gemini_emulator import GeminiEmulator, Usage

MODEL = "gemini-2.5-flash"


class Pipeline:
    """A real provider + exporter; ``close()`` drains it (an app that exits)."""

    def __init__(self, spool: Path, experiment_name: str | None = None) -> None:
        self.exporter = MlflowSpanExporter(grace_seconds=0.2, spool_dir=str(spool),
                                           experiment_name=experiment_name)
        self.provider = TracerProvider()
        self.provider.add_span_processor(BatchSpanProcessor(self.exporter,
                                                            schedule_delay_millis=50))
        self.config: Any = {"callbacks": [OtelTracer(self.provider)]}

    def drain(self) -> None:
        assert self.provider.force_flush()
        assert self.exporter.force_flush(120_000), self.exporter.delivery.stats

    def close(self) -> None:
        self.drain()
        self.provider.shutdown()


@pytest.fixture
def server_uri(mlflow_server: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    uri = str(mlflow_server.url)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # the user's fluent API and the exporter
    return uri


@pytest.fixture
def pipelines(tmp_path: Path) -> Iterator[list[Pipeline]]:
    made: list[Pipeline] = []
    yield made
    for pipe in made:
        pipe.provider.shutdown()


def _prompt(version: int) -> ChatPromptTemplate:
    system = "簡潔に答えてください。" if version == 1 else "一文で、丁寧に答えてください。"
    return ChatPromptTemplate.from_messages([("system", system), ("human", "{topic}について教えて")])


def _seed_calls(emulator: GeminiEmulator, config: Any, *, fail: bool = True) -> None:
    """The seed's four calls: v1 and v2 of a prompt, a stream, a failing direct call."""
    llm = emulator.chat_model(MODEL)
    emulator.queue_text("東京は日本の首都です。", usage=Usage(prompt=20, candidates=15))
    emulator.queue_text("富士山は日本一高い山です。", usage=Usage(prompt=18, candidates=12))
    emulator.queue_text("桜は春に咲きます。とても綺麗です。", usage=Usage(
        prompt=25, candidates=21, thoughts=4), stream_chunks=3, chunk_delay_seconds=0.02)
    assert "東京" in (_prompt(1) | llm | StrOutputParser()).invoke({"topic": "東京"}, config=config)
    assert "富士山" in (_prompt(2) | llm | StrOutputParser()).invoke({"topic": "富士山"},
                                                                     config=config)
    streamed = "".join((_prompt(2) | llm | StrOutputParser()).stream({"topic": "桜"},
                                                                     config=config))
    assert streamed == "桜は春に咲きます。とても綺麗です。"
    if fail:
        emulator.queue_error(500, "the backend fell over")
        with pytest.raises(Exception):
            llm.invoke("これは失敗します", config=config)


def _history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def _page(client: MlflowClient, run_id: str, tmp_path: Path) -> str:
    local = client.download_artifacts(run_id, R.ARTIFACT_TREE_HTML, str(tmp_path / uuid.uuid4().hex))
    return Path(local).read_text(encoding="utf-8")


def _nearest_rank(values: list[float], q: float) -> float:
    import math

    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def test_seed_style_run_shows_current_totals(server_uri: str, pipelines: list[Pipeline],
                                             gemini_emulator: GeminiEmulator,
                                             tmp_path: Path) -> None:
    pipe = Pipeline(tmp_path / "spool")
    pipelines.append(pipe)
    client = MlflowClient(server_uri)
    exp_id = client.create_experiment(f"seed-totals-{uuid.uuid4().hex[:8]}")
    with mlflow.start_run(experiment_id=exp_id) as run:
        _seed_calls(gemini_emulator, pipe.config)
        pipe.drain()  # as the README says: flush before the run ends
    run_id = run.info.run_id
    latest = client.get_run(run_id).data.metrics

    # The per-trace steps are still there (4 traces, 4 steps)...
    assert [v for _, v in _history(client, run_id, R.M_TOKENS_TOTAL)] and sorted(
        v for _, v in _history(client, run_id, R.M_TOKENS_TOTAL)) == [0.0, 30.0, 35.0, 50.0]
    assert [s for s, _ in _history(client, run_id, R.M_LLM_CALLS)] == [0, 1, 2, 3]
    # ...and the run's latest values are the run's totals, not the last trace's.
    assert latest[R.M_RUN_TRACES] == 4
    assert latest[R.M_RUN_LLM_CALLS] == 4
    assert latest[R.M_RUN_TOKENS_INPUT] == 63
    assert latest[R.M_RUN_TOKENS_OUTPUT] == 48
    assert latest[R.M_RUN_TOKENS_TOTAL] == 115  # Gemini's totals include the 4 thinking tokens
    assert latest[R.M_RUN_TOKENS_REASONING] == 4
    assert latest[R.M_RUN_ERRORS] == 1
    durations = [v for _, v in _history(client, run_id, R.M_TRACE_DURATION)]
    assert latest[R.M_RUN_LATENCY_P50] == pytest.approx(_nearest_rank(durations, 0.5), abs=1e-3)
    assert latest[R.M_RUN_LATENCY_P95] == pytest.approx(max(durations), abs=1e-3)
    (ttft,) = [v for _, v in _history(client, run_id, R.M_LLM_TTFT)]
    assert latest[R.M_RUN_TTFT_P50] == pytest.approx(ttft, abs=1e-3)
    # the emulator's model is priced: the run total is the sum of the per-trace costs
    costs = [v for _, v in _history(client, run_id, "cost.usd")]
    assert costs and latest[R.M_RUN_COST_USD] == pytest.approx(sum(costs))
    # The runs table compares runs on these names.
    found = client.search_runs([exp_id], filter_string=f"metrics.`{R.M_RUN_TRACES}` = 4")
    assert [r.info.run_id for r in found] == [run_id]

    # One page for the run, listing its four traces.
    page = _page(client, run_id, tmp_path)
    trees, total = H.trees_from_page(page)
    assert total == 4 and len(trees) == 4
    assert page.count('class="bar ') == sum(_spans(t) for t in trees)
    assert "簡潔に答えてください。" in page


def _spans(tree: dict[str, Any]) -> int:
    def count(nodes: list[dict[str, Any]]) -> int:
        return sum(1 + count(n.get("children") or []) for n in nodes)
    return count(tree["spans"])


def test_a_restarted_exporter_continues_the_run_totals(server_uri: str,
                                                       pipelines: list[Pipeline],
                                                       gemini_emulator: GeminiEmulator,
                                                       tmp_path: Path) -> None:
    client = MlflowClient(server_uri)
    exp_id = client.create_experiment(f"restart-{uuid.uuid4().hex[:8]}")
    first = Pipeline(tmp_path / "spool1")
    pipelines.append(first)
    with mlflow.start_run(experiment_id=exp_id) as run:
        _seed_calls(gemini_emulator, first.config)
        first.close()
    run_id = run.info.run_id
    assert client.get_run(run_id).data.metrics[R.M_RUN_TRACES] == 4

    # A new process: a new exporter and writer, nothing cached; the user resumes the run.
    second = Pipeline(tmp_path / "spool2")
    pipelines.append(second)
    with mlflow.start_run(run_id=run_id):
        _seed_calls(gemini_emulator, second.config, fail=False)
        second.close()
    latest = client.get_run(run_id).data.metrics
    assert latest[R.M_RUN_TRACES] == 7
    assert latest[R.M_RUN_LLM_CALLS] == 7
    assert latest[R.M_RUN_TOKENS_TOTAL] == 115 + 115
    assert latest[R.M_RUN_ERRORS] == 1
    durations = [v for _, v in _history(client, run_id, R.M_TRACE_DURATION)]
    assert len(durations) == 7
    assert latest[R.M_RUN_LATENCY_P95] == pytest.approx(max(durations), abs=1e-3)
    assert latest[R.M_RUN_LATENCY_P50] == pytest.approx(_nearest_rank(durations, 0.5), abs=1e-3)
    ttfts = [v for _, v in _history(client, run_id, R.M_LLM_TTFT)]
    assert latest[R.M_RUN_TTFT_P50] == pytest.approx(_nearest_rank(ttfts, 0.5), abs=1e-3)
    # The page was rebuilt from the previous page: all seven traces, the newest first.
    trees, total = H.trees_from_page(_page(client, run_id, tmp_path))
    assert total == 7 and len(trees) == 7
    assert len({t["trace_id"] for t in trees}) == 7


def test_a_run_per_trace_gets_its_waterfall_page(server_uri: str, pipelines: list[Pipeline],
                                                 gemini_emulator: GeminiEmulator,
                                                 tmp_path: Path) -> None:
    client = MlflowClient(server_uri)
    name = f"page-{uuid.uuid4().hex[:8]}"
    exporter_pipe = Pipeline(tmp_path / "spool", experiment_name=name)  # run per trace
    pipelines.append(exporter_pipe)
    gemini_emulator.queue_text("東京です", usage=Usage(prompt=7, candidates=3))
    (_prompt(1) | gemini_emulator.chat_model(MODEL) | StrOutputParser()).invoke(
        {"topic": "東京"}, config=exporter_pipe.config)
    exporter_pipe.close()
    exp = client.get_experiment_by_name(name)
    assert exp is not None
    (run,) = client.search_runs([exp.experiment_id])
    paths = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {R.ARTIFACT_TREE, R.ARTIFACT_TREE_HTML} <= paths
    local = client.download_artifacts(run.info.run_id, R.ARTIFACT_TREE, str(tmp_path / "t"))
    tree = json.loads(Path(local).read_text(encoding="utf-8"))
    page = _page(client, run.info.run_id, tmp_path)
    assert page.count('class="bar ') == _spans(tree) == 4
    assert "7\u21923 tok \u00b7 10 total" in page


def test_a_page_that_cannot_be_built_is_a_counted_fault_not_a_failed_write() -> None:
    """No server needed: the page builders are guarded; the write goes on without the page."""
    from otel_mlflow._common import faults
    from otel_mlflow._sink import run_views

    broken = R.TraceRecord(
        trace_id="0" * 32, run_name="r", target_run_id="run", experiment_id=None, tags={},
        params={}, metrics={R.M_TRACE_DURATION: 1.0}, table=R.Table(),
        tree={"trace_id": "0" * 32, "spans": [{"name": "x", "children": 5}]}, otlp=b"",
        start_time_ms=0, end_time_ms=1, status=R.STATUS_OK)
    before = faults.fault_counts().get("writer.span_tree_html", 0)
    assert run_views.trace_page_text(broken) is None
    views = run_views.ActiveRunViews()
    views.add(broken)
    assert views.totals.metrics()[R.M_RUN_TRACES] == 1  # the totals are still counted
    assert not views.trees  # the tree that breaks the page is left out of it
    assert "1 traces in this run" in str(views.page("run"))
    assert faults.fault_counts()["writer.span_tree_html"] == before + 2


def test_views_with_the_page_off_keep_no_trees() -> None:
    """No server needed: with ``span_tree_html`` off an active run's views count totals only."""
    from otel_mlflow._sink import run_views

    record = R.TraceRecord(
        trace_id="1" * 32, run_name="r", target_run_id="run", experiment_id=None, tags={},
        params={}, metrics={R.M_TRACE_DURATION: 1.0}, table=R.Table(),
        tree={"trace_id": "1" * 32, "spans": [{"name": "x", "children": []}]}, otlp=b"",
        start_time_ms=0, end_time_ms=1, status=R.STATUS_OK)
    off = run_views.load(None, None, 0, page=False, repo=None)
    on = run_views.load(None, None, 0, page=True, repo=None)
    for views in (off, on):
        views.add(record)
        assert views.totals.metrics()[R.M_RUN_TRACES] == 1
    assert not off.trees
    assert len(on.trees) == 1 and on.trees[0]["span_count"] == 1
