"""Cost end to end: the run's ``cost.*`` metrics, the table's ``cost_usd`` and the Traces view's
``mlflow.llm.cost`` agree (real ``ChatVertexAI`` over REST to the local Gemini emulator, real
``mlflow server``), and no trace upload makes the server fetch its model catalog (issue 13, 5).

The catalog check needs a server whose catalog download is observable: ``MLFLOW_MODEL_CATALOG_URI``
points at a local HTTP server that counts requests and answers slowly, as an offline server's
download would (the tests' default, ``""``, would hide the path). MLflow's server prices a span
only when it has token usage, a model and no ``mlflow.llm.cost``
(``mlflow.tracing.otel.translation.translate_span_when_storing``); a control upload without our
cost attributes shows the path is live on that server.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import genai_prices
import pytest
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from mlflow import MlflowClient
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import otel_mlflow._record as R
from otel_mlflow._common import semconv as A
from otel_mlflow._export.exporter import MlflowSpanExporter
from otel_mlflow._sink.traces import log_trace
from otel_mlflow._tracing.handler import OtelTracer
from otel_mlflow.testing.gemini_emulator import GeminiEmulator, Usage
from tests._support.mlflow_server import MlflowServer

MODEL = "gemini-2.0-flash"
USAGE = Usage(prompt=12, candidates=3, total=40, cached=4, thoughts=25)
CATALOG_DELAY_SECONDS = 2.0


def _run_chain(tracking_uri: str, experiment: str, emulator: GeminiEmulator, tmp_path: Path,
               *, model: str = MODEL) -> MlflowSpanExporter:
    exporter = MlflowSpanExporter(tracking_uri, experiment, grace_seconds=0.05,
                                  spool_dir=str(tmp_path / "spool"))
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    emulator.queue_text("わたしはアシスタントです", usage=USAGE, model_version=model)
    chain = (ChatPromptTemplate.from_messages([("human", "{question}")])
             | emulator.chat_model(model) | StrOutputParser())
    try:
        chain.invoke({"question": "あなたは誰?"}, config={"callbacks": [OtelTracer(provider)]})
        assert exporter.force_flush(60_000)
    finally:
        provider.shutdown()
    return exporter


def _only_run(client: MlflowClient, experiment: str) -> Any:
    exp = client.get_experiment_by_name(experiment)
    (run,) = client.search_runs([exp.experiment_id])
    return run


def test_run_table_and_traces_view_show_the_same_cost(
    mlflow_server: MlflowServer, gemini_emulator: GeminiEmulator, tmp_path: Path
) -> None:
    experiment = f"cost-{uuid.uuid4().hex[:8]}"
    _run_chain(mlflow_server.url, experiment, gemini_emulator, tmp_path)
    client = MlflowClient(mlflow_server.url)
    run = _only_run(client, experiment)
    ref = genai_prices.extract_usage(
        {"modelVersion": MODEL, "usageMetadata": USAGE.to_json()}, provider_id="google"
    ).calc_price()
    m = run.data.metrics
    assert m[R.M_COST] == pytest.approx(float(ref.total_price))
    assert m[R.M_COST_INPUT] == pytest.approx(float(ref.input_price))
    assert m[R.M_COST_OUTPUT] == pytest.approx(float(ref.output_price))

    table = json.loads(Path(client.download_artifacts(
        run.info.run_id, R.ARTIFACT_TABLE, str(tmp_path / "a"))).read_text(encoding="utf-8"))
    assert table["columns"][0] == "request"
    (row,) = [dict(zip(table["columns"], r)) for r in table["data"]]
    assert row["cost_usd"] == pytest.approx(m[R.M_COST])
    assert json.loads(row["request"]) == {"question": "あなたは誰?"}

    (found,) = client.search_traces(locations=[run.info.experiment_id], run_id=run.info.run_id)
    trace = client.get_trace(found.info.trace_id)
    chat = next(s for s in trace.data.spans if s.name.startswith("chat "))
    assert chat.attributes["mlflow.llm.cost"] == pytest.approx({
        "input_cost": m[R.M_COST_INPUT], "output_cost": m[R.M_COST_OUTPUT],
        "total_cost": m[R.M_COST]})
    # The trace-level total MLflow shows in the Traces list.
    trace_cost = json.loads(trace.info.trace_metadata["mlflow.trace.cost"])
    assert trace_cost["total_cost"] == pytest.approx(m[R.M_COST])


class _Catalog:
    """A local stand-in for MLflow's model catalog download: counts GETs, answers 404 slowly."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        catalog = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                catalog.paths.append(self.path)
                time.sleep(CATALOG_DELAY_SECONDS)
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/catalog"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def catalog_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MlflowServer,
                                                                               _Catalog]]:
    catalog = _Catalog()
    server = MlflowServer(root=Path(tmp_path_factory.mktemp("catalog_server")),
                          env={"MLFLOW_MODEL_CATALOG_URI": catalog.url}).start()
    yield server, catalog
    server.stop()
    catalog.close()


def test_trace_upload_never_makes_the_server_fetch_its_catalog(
    catalog_server: tuple[MlflowServer, _Catalog], gemini_emulator: GeminiEmulator,
    tmp_path: Path,
) -> None:
    server, catalog = catalog_server
    client = MlflowClient(server.url)
    # A priced model (explicit cost) and a model with no price (explicitly no model for pricing).
    for model, experiment in ((MODEL, "priced"), ("house-model-7b", "unpriced")):
        started = time.monotonic()
        _run_chain(server.url, f"{experiment}-{uuid.uuid4().hex[:6]}", gemini_emulator,
                   tmp_path / experiment, model=model)
        elapsed = time.monotonic() - started
        assert catalog.paths == [], f"{model}: the server fetched {catalog.paths}"
        assert elapsed < 60
    run = _only_run(client, next(e.name for e in client.search_experiments()
                                 if e.name.startswith("unpriced-")))
    assert R.M_COST not in run.data.metrics
    (found,) = client.search_traces(locations=[run.info.experiment_id])
    chat = next(s for s in client.get_trace(found.info.trace_id).data.spans
                if s.name.startswith("chat "))
    assert "mlflow.llm.cost" not in chat.attributes
    assert chat.attributes[A.GEN_AI_REQUEST_MODEL] == "house-model-7b"

    # Control: the same kind of spans without our cost attributes do take the catalog path.
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with provider.get_tracer("t").start_as_current_span("chat " + MODEL, attributes={
        A.GEN_AI_OPERATION_NAME: A.OP_CHAT, A.GEN_AI_PROVIDER_NAME: A.PROVIDER_GCP_VERTEX_AI,
        A.GEN_AI_REQUEST_MODEL: MODEL, A.GEN_AI_USAGE_INPUT_TOKENS: 10,
        A.GEN_AI_USAGE_OUTPUT_TOKENS: 5,
    }):
        pass
    exp_id = client.create_experiment(f"control-{uuid.uuid4().hex[:6]}")
    run_id = client.create_run(exp_id).info.run_id
    started = time.monotonic()
    log_trace(client, exp_id, run_id,
              bytes(encode_spans(memory.get_finished_spans()).SerializeToString()))
    assert catalog.paths, "the control upload did not reach the catalog: the check is void"
    assert time.monotonic() - started >= CATALOG_DELAY_SECONDS
