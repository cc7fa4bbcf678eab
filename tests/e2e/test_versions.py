"""Chain versions in MLflow: LoggedModels, trace metadata, prompts, sessions/users, source tags.

Real parts: LangChain runnables, the real OTel SDK, ``MlflowSpanExporter`` writing to the real
``mlflow server`` fixture (and the embedded sqlite store); the chat model is
``tests/_support/fake_models.FakeChatModel`` (no network).
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
from mlflow import MlflowClient
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from otel_mlflow._export.exporter import MlflowSpanExporter
from otel_mlflow._record import schema as R
from otel_mlflow._tracing.handler import OtelTracer
from tests._support.fake_models import FakeChatModel

SYSTEM_V1 = "You answer in one word."
SYSTEM_V2 = "You answer in one short sentence."


def make_chain(system: str, temperature: float) -> Any:
    prompt = ChatPromptTemplate.from_messages([("system", system), ("human", "{question}")])
    return prompt | FakeChatModel(temperature=temperature) | StrOutputParser()


@pytest.fixture(params=["server", "embedded"])
def tracking_uri(request: pytest.FixtureRequest) -> str:
    if request.param == "server":
        return str(request.getfixturevalue("mlflow_server").url)
    return str(request.getfixturevalue("embedded_tracking_uri"))


class Pipeline:
    def __init__(self, tracking_uri: str, tmp: Path, experiment: str | None = None,
                 **exporter_args: Any) -> None:
        self.experiment = experiment or f"versions-{uuid.uuid4().hex[:8]}"
        self.exporter = MlflowSpanExporter(tracking_uri, self.experiment, grace_seconds=0.1,
                                           spool_dir=str(tmp / "spool"), **exporter_args)
        self.provider = TracerProvider(resource=Resource.create(
            {"service.name": "qa-svc", "service.version": "2.1.0"}))
        self.provider.add_span_processor(
            BatchSpanProcessor(self.exporter, schedule_delay_millis=50))
        self.tracer = OtelTracer(self.provider)
        self.client = MlflowClient(tracking_uri)

    def drain(self) -> None:
        assert self.provider.force_flush()
        assert self.exporter.force_flush(120_000), self.exporter.delivery.stats

    def runs(self) -> list[Any]:
        exp = self.client.get_experiment_by_name(self.experiment)
        assert exp is not None
        self.experiment_id = exp.experiment_id
        return self.client.search_runs([exp.experiment_id],
                                       order_by=["attributes.start_time ASC"])


@pytest.fixture
def pipeline(tracking_uri: str, tmp_path: Path) -> Iterator[Pipeline]:
    pipe = Pipeline(tracking_uri, tmp_path)
    yield pipe
    pipe.provider.shutdown()


def test_each_version_is_one_logged_model_whose_traces_carry_its_id(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    v1, v2 = make_chain(SYSTEM_V1, 0.1), make_chain(SYSTEM_V2, 0.1)
    meta = {"session_id": "sess-7", "user_id": "user-3"}
    for chain in (v1, v1, v2):
        chain.invoke({"question": "誰?"}, config={"callbacks": [pipeline.tracer],
                                                  "metadata": meta})
    pipeline.drain()
    runs = pipeline.runs()
    assert len(runs) == 3
    versions = [r.data.tags[R.TAG_CHAIN_VERSION] for r in runs]
    assert versions[0] == versions[1] != versions[2]
    model_ids = [r.data.tags[R.TAG_MODEL_ID] for r in runs]
    assert model_ids[0] == model_ids[1] != model_ids[2]
    for run in runs:
        tags = run.data.tags
        assert tags[R.TAG_APP_VERSION] == "2.1.0"
        assert tags[R.TAG_SESSION_ID] == "sess-7" and tags[R.TAG_USER_ID] == "user-3"
        assert tags[R.TAG_MLFLOW_SOURCE_NAME] and tags[R.TAG_MLFLOW_USER]
        assert run.data.params["prompt.prompt"]  # the template's hash
    assert runs[0].data.params["prompt.prompt"] != runs[2].data.params["prompt.prompt"]

    client = pipeline.client
    for version, model_id in zip(versions, model_ids):
        found = client.search_logged_models(
            experiment_ids=[pipeline.experiment_id],
            filter_string=f"tags.`{R.TAG_CHAIN_VERSION}` = '{version}'")
        assert [m.model_id for m in found] == [model_id]
        model = found[0]
        assert model.name == f"RunnableSequence-{version}"
        assert model.params["temperature"] == "0.1"
        assert model.params["model"] == "fake-gemini-2.5-flash"
        assert model.tags["mlflow.model.isExternal"] == "true"

    traces = client.search_traces(locations=[pipeline.experiment_id])
    assert len(traces) == 3
    by_model: dict[str, int] = {}
    for trace in traces:
        meta_ = trace.info.trace_metadata
        by_model[meta_["mlflow.modelId"]] = by_model.get(meta_["mlflow.modelId"], 0) + 1
        assert meta_["mlflow.trace.user"] == "user-3"
        assert meta_["mlflow.trace.session"] == "sess-7"
    assert by_model == {model_ids[0]: 2, model_ids[2]: 1}
    # MLflow's own model view query finds the version's traces.
    assert len(client.search_traces(locations=[pipeline.experiment_id],
                                    model_id=model_ids[0])) == 2

    local = client.download_artifacts(runs[0].info.run_id, R.ARTIFACT_PROMPTS, str(tmp_path))
    payload = json.loads(Path(local).read_text(encoding="utf-8"))
    (prompt,) = payload["prompts"]
    assert payload["chain_version"] == versions[0]
    assert prompt["name"] == "prompt" and prompt["hash"] == runs[0].data.params["prompt.prompt"]
    assert prompt["input_variables"] == ["question"]
    assert prompt["messages"] == [{"role": "system", "template": SYSTEM_V1},
                                  {"role": "user", "template": "{question}"}]


def test_a_new_writer_finds_the_logged_model_again(tracking_uri: str, tmp_path: Path) -> None:
    first = Pipeline(tracking_uri, tmp_path / "a")
    make_chain(SYSTEM_V1, 0.3).invoke({"question": "q"}, config={"callbacks": [first.tracer]})
    first.drain()
    first.provider.shutdown()
    second = Pipeline(tracking_uri, tmp_path / "b", first.experiment)  # a restart: no caches
    make_chain(SYSTEM_V1, 0.3).invoke({"question": "q"}, config={"callbacks": [second.tracer]})
    second.drain()
    second.provider.shutdown()
    runs = second.runs()
    assert len(runs) == 2
    assert runs[0].data.tags[R.TAG_MODEL_ID] == runs[1].data.tags[R.TAG_MODEL_ID]
    assert len(second.client.search_logged_models(experiment_ids=[second.experiment_id])) == 1


def test_the_users_active_model_wins(pipeline: Pipeline, tracking_uri: str,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    experiment_id = pipeline.client.create_experiment(pipeline.experiment)
    model = pipeline.client.create_logged_model(experiment_id, name="my-agent")
    # set_active_model looks the model up through the fluent API (env var: restored after).
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    try:
        mlflow.set_active_model(model_id=model.model_id)
        make_chain(SYSTEM_V1, 0.1).invoke({"question": "q"},
                                          config={"callbacks": [pipeline.tracer]})
    finally:
        mlflow.clear_active_model()
    pipeline.drain()
    (run,) = pipeline.runs()
    assert run.data.tags[R.TAG_MODEL_ID] == model.model_id
    (trace,) = pipeline.client.search_traces(locations=[pipeline.experiment_id])
    assert trace.info.trace_metadata["mlflow.modelId"] == model.model_id
    # No model of our own was created for the version.
    assert [m.model_id for m in pipeline.client.search_logged_models(
        experiment_ids=[pipeline.experiment_id])] == [model.model_id]


def test_registry_prompts_are_linked_and_unknown_ones_registered_on_request(
    mlflow_server: Any, tmp_path: Path
) -> None:
    client = MlflowClient(mlflow_server.url)
    name = f"qa-{uuid.uuid4().hex[:6]}"
    registered = client.register_prompt(name=name, template="Answer {{style}} about {{topic}}.")
    loaded = client.load_prompt(f"prompts:/{name}/{registered.version}")
    pipe = Pipeline(mlflow_server.url, tmp_path, register_prompts=True)
    try:
        known = ChatPromptTemplate.from_messages(
            [("system", loaded.to_single_brace_format()), ("human", "{question}")])
        unknown_text = f"Unregistered {uuid.uuid4().hex[:6]}: {{question}}"
        unknown = ChatPromptTemplate.from_template(unknown_text)
        for prompt in (known, unknown):
            (prompt | FakeChatModel() | StrOutputParser()).invoke(
                {"question": "q", "style": "briefly", "topic": "tea"},
                config={"callbacks": [pipe.tracer]})
        pipe.drain()
        known_run, unknown_run = pipe.runs()
    finally:
        pipe.provider.shutdown()

    def linked(tags: dict[str, str]) -> list[dict[str, str]]:
        return json.loads(tags.get("mlflow.linkedPrompts", "[]"))

    assert linked(known_run.data.tags) == [{"name": name, "version": str(registered.version)}]
    traces = {t.info.request_metadata.get("mlflow.sourceRun"): t for t in
              client.search_traces(locations=[pipe.experiment_id])}
    assert linked(traces[known_run.info.run_id].info.tags) == [
        {"name": name, "version": str(registered.version)}]
    # Matched, not registered again.
    assert len(client.search_prompt_versions(name)) == 1

    (new,) = linked(unknown_run.data.tags)
    version = client.get_prompt_version(new["name"], new["version"])
    assert version.template == unknown_text.replace("{question}", "{{question}}")
    assert linked(traces[unknown_run.info.run_id].info.tags) == [new]


def test_real_vertex_client_versions_by_temperature(
    mlflow_server: Any, gemini_emulator: Any, tmp_path: Path
) -> None:
    pipe = Pipeline(mlflow_server.url, tmp_path)
    prompt = ChatPromptTemplate.from_messages([("system", SYSTEM_V1), ("human", "{question}")])
    try:
        for temperature in (0.2, 0.2, 0.8):
            model = gemini_emulator.chat_model("gemini-2.5-flash", temperature=temperature,
                                               thinking_budget=64)
            (prompt | model | StrOutputParser()).invoke(
                {"question": "あなたは誰?"}, config={"callbacks": [pipe.tracer],
                                                "metadata": {"thread_id": "th-1"}})
        pipe.drain()
        runs = pipe.runs()
    finally:
        pipe.provider.shutdown()
    versions = [r.data.tags[R.TAG_CHAIN_VERSION] for r in runs]
    assert versions[0] == versions[1] != versions[2]
    models = {m.params["temperature"]: m for m in pipe.client.search_logged_models(
        experiment_ids=[pipe.experiment_id])}
    assert sorted(models) == ["0.2", "0.8"]
    assert models["0.2"].params["thinking_budget"] == "64"
    assert models["0.2"].params["model"] == "gemini-2.5-flash"
    traces = pipe.client.search_traces(locations=[pipe.experiment_id])
    assert {t.info.trace_metadata["mlflow.trace.session"] for t in traces} == {"th-1"}
    assert {t.info.trace_metadata["mlflow.modelId"] for t in traces} == {
        m.model_id for m in models.values()}


def test_concurrent_writers_settle_on_one_logged_model(mlflow_server: Any) -> None:
    """Eight writers (each its own MlflowClient and cache) meet one new version at once: they all
    end on the same LoggedModel and only that one is left (before the settle rule: eight)."""
    import threading

    from otel_mlflow._sink.models import ChainModels

    client = MlflowClient(mlflow_server.url)
    exp_id = client.create_experiment(f"race-{uuid.uuid4().hex[:8]}")
    for _ in range(3):
        version = uuid.uuid4().hex[:12]
        chain = {"version": version, "name": "RaceChain", "params": {"model": "m"}}
        writers = [ChainModels(lambda c=MlflowClient(mlflow_server.url): c) for _ in range(8)]
        barrier = threading.Barrier(len(writers))
        ids: list[str | None] = []

        def write(models: ChainModels) -> None:
            barrier.wait(30)
            ids.append(models.model_id(exp_id, chain))

        threads = [threading.Thread(target=write, args=(w,)) for w in writers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        live = client.search_logged_models(
            [exp_id], filter_string=f"tags.`{R.TAG_CHAIN_VERSION}` = '{version}'")
        assert len(ids) == len(writers)
        assert len(set(ids)) == 1, ids
        assert [m.model_id for m in live] == [ids[0]]
        # A writer that comes later (another process, a restart) finds the same one.
        assert ChainModels(lambda: client).model_id(exp_id, chain) == ids[0]


def test_concurrent_exporters_tag_every_run_with_the_one_logged_model(
    mlflow_server: Any, tmp_path: Path
) -> None:
    """Four exporters (own writers, clients, caches) trace one new chain version at once: one
    LoggedModel is left and every run's ``otel_mlflow.model_id`` and trace's modelId is it."""
    import threading

    experiment = f"race-runs-{uuid.uuid4().hex[:8]}"
    pipes = [Pipeline(mlflow_server.url, tmp_path / str(i), experiment) for i in range(4)]
    system = f"Race {uuid.uuid4().hex}"  # a version no writer has seen
    barrier = threading.Barrier(len(pipes))

    def invoke(pipe: Pipeline) -> None:
        barrier.wait(30)
        make_chain(system, 0.3).invoke({"question": "q"}, config={"callbacks": [pipe.tracer]})
        pipe.drain()

    threads = [threading.Thread(target=invoke, args=(p,)) for p in pipes]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(180)
        runs = pipes[0].runs()
        assert len(runs) == len(pipes)
        exp_id = pipes[0].experiment_id
        live = [m.model_id for m in pipes[0].client.search_logged_models([exp_id])]
        assert len(live) == 1, live
        assert {r.data.tags[R.TAG_MODEL_ID] for r in runs} == set(live)
        traces = pipes[0].client.search_traces(locations=[exp_id])
        assert {t.info.request_metadata["mlflow.modelId"] for t in traces} == set(live)
    finally:
        for pipe in pipes:
            pipe.provider.shutdown()
