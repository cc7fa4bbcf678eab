"""``otel_mlflow.log_feedback`` on a real ``mlflow server``: before and after the trace is written,
after a restart (a new process that never saw the trace), in active-run mode, and bad input.

Chains are real LangChain runnables (prompt | fake chat model | parser) traced by ``OtelTracer``
into a real SDK pipeline and ``MlflowSpanExporter``; the LangChain root run id is the one the app
passes in ``config["run_id"]``.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import pytest
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from mlflow import MlflowClient
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

import otel_mlflow
import otel_mlflow._record as R
from otel_mlflow._delivery import feedback as _delivery
from otel_mlflow._export.exporter import MlflowSpanExporter
from otel_mlflow._tracing.handler import OtelTracer
from tests._support.fake_models import FakeChatModel
from tests._support.mlflow_server import MlflowServer

ROOT = Path(__file__).resolve().parents[2]


class App:
    def __init__(self, server: MlflowServer, tmp_path: Path, *, grace: float = 0.05,
                 link_traces: bool = True) -> None:
        self.experiment = f"feedback-{uuid.uuid4().hex[:8]}"
        self.exporter = MlflowSpanExporter(server.url, self.experiment, grace_seconds=grace,
                                           spool_dir=str(tmp_path / "spool"),
                                           link_traces=link_traces)
        self.provider = TracerProvider()
        self.provider.add_span_processor(BatchSpanProcessor(self.exporter,
                                                            schedule_delay_millis=50))
        self.tracer = OtelTracer(self.provider)
        self.client = MlflowClient(server.url)

    def ask(self, question: str = "あなたは誰?") -> uuid.UUID:
        run_id = uuid.uuid4()
        chain = (ChatPromptTemplate.from_messages([("human", "{question}")])
                 | FakeChatModel(responses=["アシスタントです"]) | StrOutputParser())
        chain.invoke({"question": question},
                     config={"callbacks": [self.tracer], "run_id": run_id})
        return run_id

    def run_of(self, lc_run_id: uuid.UUID) -> Any:
        exp = self.client.get_experiment_by_name(self.experiment)
        (run,) = self.client.search_runs(
            [exp.experiment_id], f"tags.`{R.TAG_LC_RUN_ID}` = '{lc_run_id}'")
        return run

    def feedback_on(self, run: Any) -> list[Any]:
        trace_id = "tr-" + run.data.tags[R.TAG_TRACE_ID]
        info = self.client.get_trace(trace_id).info
        return [a for a in info.assessments if a.feedback is not None]

    def close(self) -> None:
        self.provider.shutdown()


@pytest.fixture
def app(mlflow_server: MlflowServer, tmp_path: Path) -> Iterator[App]:
    application = App(mlflow_server, tmp_path, grace=3.0)
    yield application
    application.close()


def test_feedback_before_the_write_is_held_then_applied_and_after_it_averaged(app: App) -> None:
    lc_run_id = app.ask()
    assert app.provider.force_flush()  # the spans reach the exporter, which only buffers them
    # The trace is still in the exporter's buffer (3 s grace): nothing can be written yet.
    assert app.exporter.buffered_traces() == 1
    first = otel_mlflow.log_feedback(lc_run_id, "helpful", True, rationale="clear answer",
                                     source="user-42")
    assert not first.done()
    assert otel_mlflow.flush(60)
    assessment_id = first.result(timeout=30)
    assert assessment_id

    run = app.run_of(lc_run_id)
    assert run.data.metrics["feedback.helpful"] == 1.0
    (fb,) = app.feedback_on(run)
    assert (fb.name, fb.feedback.value, fb.rationale) == ("helpful", True, "clear answer")
    assert fb.source.source_type == "HUMAN" and fb.source.source_id == "user-42"

    # After the write: a second value; the metric is the mean, at step = the count.
    otel_mlflow.log_feedback(str(lc_run_id), "helpful", 0).result(timeout=30)
    history = app.client.get_metric_history(run.info.run_id, "feedback.helpful")
    assert [(h.step, h.value) for h in history] == [(1, 1.0), (2, 0.5)]
    assert len(app.feedback_on(run)) == 2


def test_non_numeric_value_is_an_assessment_without_metric(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    lc_run_id = app.ask()
    assert otel_mlflow.flush(60)
    with caplog.at_level(logging.WARNING, logger="otel_mlflow._sink.feedback"):
        otel_mlflow.log_feedback(lc_run_id, "tone", "friendly").result(timeout=30)
    run = app.run_of(lc_run_id)
    assert "feedback.tone" not in run.data.metrics
    (fb,) = app.feedback_on(run)
    assert fb.feedback.value == "friendly"
    assert any("not numeric" in r.getMessage() and "tone" in r.getMessage()
               for r in caplog.records)


def test_unknown_run_id_fails_the_future_after_the_hold_with_one_log_line(
    app: App, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OTEL_MLFLOW_FEEDBACK_HOLD_SECONDS", "1")
    unknown = uuid.uuid4()
    with caplog.at_level(logging.WARNING, logger="otel_mlflow._delivery.feedback"):
        future = otel_mlflow.log_feedback(unknown, "helpful", 1)
        # flush() is not held up by feedback for a run this process never traced.
        assert otel_mlflow.flush(30)
        with pytest.raises(LookupError, match=str(unknown)):
            future.result(timeout=30)
    lines = [r.getMessage() for r in caplog.records if str(unknown) in r.getMessage()]
    assert len(lines) == 1 and "helpful" in lines[0] and "=1" in lines[0]


@pytest.mark.parametrize(("args", "error"), [
    (("not-a-uuid", "helpful", 1), ValueError),
    ((12345, "helpful", 1), TypeError),
    ((uuid.uuid4(), "", 1), ValueError),
    ((uuid.uuid4(), "bad\nname", 1), ValueError),
    ((uuid.uuid4(), "score", float("nan")), ValueError),
    ((uuid.uuid4(), "score", object()), TypeError),
    ((uuid.uuid4(), "score", None), TypeError),
])
def test_bad_arguments_raise_at_once_and_queue_nothing(args: tuple[Any, ...],
                                                       error: type[Exception]) -> None:
    before = _delivery.queue().pending_count()
    with pytest.raises(error):
        otel_mlflow.log_feedback(*args)
    assert _delivery.queue().pending_count() == before


def test_feedback_after_a_restart_finds_the_run_by_tags(
    mlflow_server: MlflowServer, tmp_path: Path
) -> None:
    first = App(mlflow_server, tmp_path / "first")
    try:
        lc_run_id = first.ask()
        assert otel_mlflow.flush(60)
    finally:
        first.close()
    # A new process: no exporter state, no hint; only what MLflow holds.
    script = textwrap.dedent(f"""
        import otel_mlflow
        from otel_mlflow._export.exporter import MlflowSpanExporter
        exporter = MlflowSpanExporter({mlflow_server.url!r}, {first.experiment!r},
                                      spool_dir={str(tmp_path / "second")!r})
        print(otel_mlflow.log_feedback({str(lc_run_id)!r}, "stars", 4).result(timeout=60))
        exporter.shutdown()
    """)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip()
    run = first.run_of(lc_run_id)
    assert run.data.metrics["feedback.stars"] == 4.0
    assert [a.feedback.value for a in first.feedback_on(run)] == [4]


def test_active_run_feedback_goes_to_the_users_run(
    mlflow_server: MlflowServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    application = App(mlflow_server, tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    try:
        exp_id = application.client.create_experiment(application.experiment)
        with mlflow.start_run(experiment_id=exp_id) as active:
            asked = [application.ask(q) for q in ("一つ目", "二つ目")]
        assert otel_mlflow.flush(60)
        # The first through this process's hint, the second as after a restart (trace tag).
        otel_mlflow.log_feedback(asked[0], "correct", 1.0).result(timeout=30)
        _delivery.forget_hints()
        otel_mlflow.log_feedback(asked[1], "correct", 0.0).result(timeout=30)
    finally:
        application.close()
    history = application.client.get_metric_history(active.info.run_id, "feedback.correct")
    # The mean over the run's traces.
    assert history[-1].value == 0.5 and history[-1].step == 2


def test_without_a_traces_view_link_only_the_metric_is_kept(
    mlflow_server: MlflowServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    application = App(mlflow_server, tmp_path, link_traces=False)
    try:
        lc_run_id = application.ask()
        assert otel_mlflow.flush(60)
        with caplog.at_level(logging.WARNING, logger="otel_mlflow._sink.feedback"):
            assert otel_mlflow.log_feedback(lc_run_id, "stars", 5).result(timeout=30) == ""
            otel_mlflow.log_feedback(lc_run_id, "stars", 2).result(timeout=30)
    finally:
        application.close()
    run = application.run_of(lc_run_id)
    history = application.client.get_metric_history(run.info.run_id, "feedback.stars")
    assert [(h.step, h.value) for h in sorted(history, key=lambda h: h.step)] == [
        (1, 5.0), (2, 3.5)]
    assert sum("link_traces off" in r.getMessage() for r in caplog.records) == 2
