"""Active-run mode (the seed's flow): traces that start under ``mlflow.start_run()`` go INTO that run.

Real LangChain chains traced by ``OtelTracer``, a real exporter, and both a real ``mlflow server``
and the embedded sqlite store; everything is read back through ``MlflowClient``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from mlflow.tracking import MlflowClient
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

import otel_mlflow._record as R
from otel_mlflow._export.exporter import MlflowSpanExporter
from otel_mlflow._tracing.handler import OtelTracer


class FakeGemini(GenericFakeChatModel):
    model: str = "gemini-2.5-flash"

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
        return {"ls_provider": "google_vertexai", "ls_model_name": self.model,
                "ls_model_type": "chat"}


def _chain(n: int) -> Any:
    replies = [AIMessage(content=f"answer {i}",
                         usage_metadata={"input_tokens": 10 + i, "output_tokens": 2,
                                         "total_tokens": 12 + i})
               for i in range(n)]
    return (ChatPromptTemplate.from_messages([("human", "{q}")])
            | FakeGemini(messages=iter(replies)) | StrOutputParser())


@pytest.fixture(params=["server", "embedded"])
def tracking_uri(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "server":
        uri = str(request.getfixturevalue("mlflow_server").url)
    else:
        uri = str(request.getfixturevalue("embedded_tracking_uri"))
    # The user's fluent mlflow.start_run() and the exporter both resolve the store from here.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


@pytest.fixture
def pipeline(tracking_uri: str, tmp_path: Path) -> Iterator[tuple[OtelTracer, TracerProvider,
                                                                MlflowSpanExporter]]:
    exporter = MlflowSpanExporter(grace_seconds=0.2, spool_dir=str(tmp_path / "spool"))
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=50))
    yield OtelTracer(provider), provider, exporter
    provider.shutdown()


def _drain(provider: TracerProvider, exporter: MlflowSpanExporter) -> None:
    assert provider.force_flush()
    assert exporter.force_flush(120_000), exporter.delivery.stats


def _default_run_count(client: MlflowClient) -> int:
    exp = client.get_experiment_by_name("Default")
    return 0 if exp is None else len(client.search_runs([exp.experiment_id], max_results=1000))


def test_two_invokes_in_a_run_land_in_that_run(pipeline, tracking_uri: str,
                                               tmp_path: Path) -> None:
    tracer, provider, exporter = pipeline
    client = MlflowClient(tracking_uri)
    exp_id = client.create_experiment(f"active-{uuid.uuid4().hex[:8]}")
    before_default = _default_run_count(client)
    chain = _chain(2)
    with mlflow.start_run(experiment_id=exp_id) as run:
        assert chain.invoke({"q": "first?"}, config={"callbacks": [tracer]}) == "answer 0"
        assert chain.invoke({"q": "second?"}, config={"callbacks": [tracer]}) == "answer 1"
    _drain(provider, exporter)

    runs = client.search_runs([exp_id])
    assert [r.info.run_id for r in runs] == [run.info.run_id]  # ONE run, no extra runs
    assert _default_run_count(client) == before_default
    data = client.get_run(run.info.run_id).data
    assert data.tags[R.TAG_TRACE_COUNT] == "2"
    assert json.loads(data.tags[R.TAG_LOGGED_ARTIFACTS]) == [{"path": "llm_calls.json",
                                                              "type": "table"}]
    history = client.get_metric_history(run.info.run_id, R.M_TOKENS_TOTAL)
    assert sorted((m.step, m.value) for m in history) == [(0, 12.0), (1, 13.0)]
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id,
                                                            R.M_LLM_CALLS)) == [0, 1]

    local = client.download_artifacts(run.info.run_id, "llm_calls.json", str(tmp_path / "t"))
    table = json.loads(Path(local).read_text(encoding="utf-8"))
    rows = [dict(zip(table["columns"], row)) for row in table["data"]]
    assert sorted(r["output"] for r in rows) == ["answer 0", "answer 1"]
    assert len({r["trace_id"] for r in rows}) == 2
    assert {r["input"] for r in rows} == {"first?", "second?"}

    tree_files = [a.path for a in client.list_artifacts(run.info.run_id, "span_trees")]
    trees: dict[str, Any] = {}
    for path in tree_files:
        local = client.download_artifacts(run.info.run_id, path, str(tmp_path / "trees"))
        trees.update(json.loads(Path(local).read_text(encoding="utf-8")))
    assert set(trees) == {r["trace_id"] for r in rows}
    for tree in trees.values():
        (root,) = tree["spans"]
        assert [c["name"] for c in root["children"]] == [
            "ChatPromptTemplate", "chat gemini-2.5-flash", "StrOutputParser"]


def test_rows_are_appended_to_the_users_own_table(pipeline, tracking_uri: str,
                                                  tmp_path: Path) -> None:
    """The seed wrote its own log_table; our rows join it (union of columns), nothing lost."""
    tracer, provider, exporter = pipeline
    client = MlflowClient(tracking_uri)
    exp_id = client.create_experiment(f"seed-{uuid.uuid4().hex[:8]}")
    chain = _chain(1)
    with mlflow.start_run(experiment_id=exp_id) as run:
        mlflow.log_table(pd.DataFrame({"input": ["hand-written"], "note": ["seed"]}),
                         artifact_file="llm_calls.json")
        chain.invoke({"q": "traced?"}, config={"callbacks": [tracer]})
    _drain(provider, exporter)
    local = client.download_artifacts(run.info.run_id, "llm_calls.json", str(tmp_path))
    table = json.loads(Path(local).read_text(encoding="utf-8"))
    assert table["columns"][:2] == ["input", "note"]
    assert set(R.TABLE_COLUMNS) <= set(table["columns"])
    rows = [dict(zip(table["columns"], row)) for row in table["data"]]
    assert [r["input"] for r in rows] == ["hand-written", "traced?"]
    assert rows[0]["note"] == "seed" and rows[1]["note"] is None
    assert rows[1]["output"] == "answer 0"
    assert len(client.search_runs([exp_id])) == 1


def test_many_traces_into_one_run_get_distinct_steps(pipeline, tracking_uri: str,
                                                     tmp_path: Path) -> None:
    tracer, provider, exporter = pipeline
    client = MlflowClient(tracking_uri)
    exp_id = client.create_experiment(f"many-{uuid.uuid4().hex[:8]}")
    n = 60
    chain = _chain(n)
    with mlflow.start_run(experiment_id=exp_id) as run:
        for i in range(n):
            chain.invoke({"q": f"q{i}"}, config={"callbacks": [tracer]})
    _drain(provider, exporter)
    steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, R.M_SPANS))
    assert steps == list(range(n))
    local = client.download_artifacts(run.info.run_id, "llm_calls.json", str(tmp_path))
    table = json.loads(Path(local).read_text(encoding="utf-8"))
    assert len(table["data"]) == n
    assert client.get_run(run.info.run_id).data.tags[R.TAG_TRACE_COUNT] == str(n)
    assert len(client.search_runs([exp_id])) == 1


def test_the_users_run_lists_the_versions_and_each_trace_has_its_logged_model(
    pipeline, tracking_uri: str
) -> None:
    """Two chain versions (two prompts) in one ``mlflow.start_run()``: the run's version tags
    list both, first seen first; each MLflow trace carries its own version's LoggedModel."""
    tracer, provider, exporter = pipeline
    client = MlflowClient(tracking_uri)
    exp_id = client.create_experiment(f"active-versions-{uuid.uuid4().hex[:8]}")
    chains = []
    for system in ("Answer in one word.", "Answer in a sentence."):
        replies = [AIMessage(content="ok", usage_metadata={"input_tokens": 3, "output_tokens": 1,
                                                            "total_tokens": 4})] * 2
        chains.append(ChatPromptTemplate.from_messages([("system", system), ("human", "{q}")])
                      | FakeGemini(messages=iter(replies)) | StrOutputParser())
    with mlflow.start_run(experiment_id=exp_id) as run:
        for chain in (chains[0], chains[1], chains[0]):
            chain.invoke({"q": "why?"}, config={"callbacks": [tracer]})
    _drain(provider, exporter)

    tags = client.get_run(run.info.run_id).data.tags
    versions = tags[R.TAG_CHAIN_VERSION].split(",")
    model_ids = tags[R.TAG_MODEL_ID].split(",")
    assert len(versions) == 2 and len(set(versions)) == 2
    assert all(len(v) == 12 for v in versions)
    models = {m.model_id: m for m in client.search_logged_models([exp_id])}
    assert set(models) == set(model_ids)
    assert [models[m].tags[R.TAG_CHAIN_VERSION] for m in model_ids] == versions  # same order
    assert not client.get_run(run.info.run_id).data.params  # the user's run: no params added

    traces = client.search_traces(locations=[exp_id])
    assert len(traces) == 3
    by_model: dict[str, int] = {}
    for trace in traces:
        assert trace.info.request_metadata["mlflow.sourceRun"] == run.info.run_id
        model_id = trace.info.request_metadata["mlflow.modelId"]
        by_model[model_id] = by_model.get(model_id, 0) + 1
    assert by_model == {model_ids[0]: 2, model_ids[1]: 1}
