"""The run schema of ``ChatGoogleGenerativeAI`` apps, read back through MlflowClient from a REAL
``mlflow server`` (the session fixture): the real client against the local Gemini emulator on
Vertex AI and on the Gemini Developer API, traced by ``OtelTracer`` into ``MlflowSpanExporter``.

The same figures as ``test_run_schema.py`` checks for ChatVertexAI (tags, params, token metrics
as reported, TTFT when streamed, the ``llm_calls.json`` row), plus what this client adds: the
provider by backend, thought summaries in the ``reasoning`` column and never in ``output``, and
a 2 MB image that reads as a placeholder in the table.
"""

from __future__ import annotations

import base64
import json
import re
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from mlflow.tracking import MlflowClient
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

import otel_mlflow._record as R
from otel_mlflow._export.exporter import MlflowSpanExporter
from otel_mlflow._tracing.handler import OtelTracer
from otel_mlflow.testing import GeminiEmulator, Usage

MODEL = "gemini-2.5-flash"
THOUGHTS = "The reader is new: one sentence."
USAGE = Usage(prompt=12, candidates=5, total=26, cached=2, thoughts=9)


@pytest.fixture
def pipeline(mlflow_server: Any, tmp_path: Path) -> Iterator[tuple[OtelTracer, TracerProvider,
                                                                  MlflowSpanExporter, str]]:
    experiment = f"genai-{uuid.uuid4().hex[:8]}"
    exporter = MlflowSpanExporter(str(mlflow_server.url), experiment, grace_seconds=0.2,
                                  spool_dir=str(tmp_path / "spool"))
    provider = TracerProvider(resource=Resource.create({"service.name": "genai-svc"}))
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=50))
    yield OtelTracer(provider), provider, exporter, experiment
    provider.shutdown()


def _runs(client: MlflowClient, experiment: str) -> list[Any]:
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None
    return client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])


def _table(client: MlflowClient, run_id: str, tmp: Path) -> list[dict[str, Any]]:
    table = json.loads(Path(client.download_artifacts(run_id, "llm_calls.json", str(tmp)))
                       .read_text(encoding="utf-8"))
    assert table["columns"] == list(R.TABLE_COLUMNS)
    return [dict(zip(table["columns"], row)) for row in table["data"]]


def test_genai_runs_on_both_backends(pipeline, mlflow_server: Any, genai_emulator: GeminiEmulator,
                                     tmp_path: Path) -> None:
    tracer, provider, exporter, experiment = pipeline
    prompt = ChatPromptTemplate.from_messages([("system", "Answer in one sentence."),
                                               ("human", "Explain {topic}")])
    vertex = genai_emulator.genai_chat_model(MODEL, vertexai=True, temperature=0.2,
                                             max_output_tokens=128, include_thoughts=True,
                                             thinking_budget=256)
    gemini_api = genai_emulator.genai_chat_model(MODEL, vertexai=False, temperature=0.2)
    config: Any = {"callbacks": [tracer]}

    genai_emulator.queue_text("Traces show where time goes.", usage=USAGE, thoughts=THOUGHTS)
    chain = (prompt | vertex | StrOutputParser()).with_config(run_name="explain")
    assert chain.invoke({"topic": "tracing"}, config) == "Traces show where time goes."

    genai_emulator.queue_text("Spans nest in a tree.", usage=USAGE, thoughts=THOUGHTS,
                              stream_chunks=3, chunk_delay_seconds=0.02)
    streamed = (prompt | vertex | StrOutputParser()).with_config(run_name="explain_streamed")
    assert "".join(streamed.stream({"topic": "spans"}, config)) == "Spans nest in a tree."

    image = base64.b64encode(os.urandom(2 * 1024 * 1024)).decode("ascii")
    genai_emulator.queue_text("A cat.", usage=Usage(prompt=1290, candidates=2))
    message = HumanMessage(content=[{"type": "text", "text": "What is this?"},
                                    {"type": "image", "base64": image, "mime_type": "image/png"}])
    assert gemini_api.invoke([message], config).content == "A cat."

    assert provider.force_flush()
    assert exporter.force_flush(120_000), exporter.delivery.stats
    client = MlflowClient(str(mlflow_server.url))
    invoked, stream_run, multimodal = _runs(client, experiment)

    for run in (invoked, stream_run):
        assert run.info.status == "FINISHED"
        assert run.data.tags[R.TAG_PROVIDERS] == "gcp.vertex_ai"
        assert run.data.tags[R.TAG_MODELS] == MODEL
        params = dict(run.data.params)
        assert re.fullmatch(r"[0-9a-f]{12}", params.pop("prompt.prompt"))  # the template's hash
        assert params == {"model": MODEL, "temperature": "0.2", "max_tokens": "128"}
        m = run.data.metrics
        # Output tokens as LangChain reports them for this client: candidates + thoughts.
        assert (m[R.M_TOKENS_INPUT], m[R.M_TOKENS_OUTPUT], m[R.M_TOKENS_TOTAL]) == (12, 14, 26)
        assert (m[R.M_TOKENS_REASONING], m[R.M_TOKENS_CACHE_READ]) == (9, 2)
        assert m[R.M_LLM_CALLS] == 1 and m[R.M_ERRORS] == 0
    assert R.M_LLM_TTFT not in invoked.data.metrics
    assert 0 < stream_run.data.metrics[R.M_LLM_TTFT] <= stream_run.data.metrics[R.M_LLM_DURATION]

    (row,) = _table(client, invoked.info.run_id, tmp_path / "a")
    assert row["output"] == "Traces show where time goes."
    assert row["reasoning"] == THOUGHTS
    assert "Explain tracing" in row["input"] and "Answer in one sentence." in row["input"]
    assert (row["input_tokens"], row["output_tokens"], row["total_tokens"]) == (12, 14, 26)
    assert row["finish_reason"] == "STOP" and row["ttft_ms"] is None
    (row,) = _table(client, stream_run.info.run_id, tmp_path / "b")
    assert (row["output"], row["reasoning"]) == ("Spans nest in a tree.", THOUGHTS)
    assert row["ttft_ms"] > 0

    assert multimodal.data.tags[R.TAG_PROVIDERS] == "gcp.gemini"
    assert multimodal.data.metrics[R.M_TOKENS_INPUT] == 1290
    (row,) = _table(client, multimodal.info.run_id, tmp_path / "c")
    assert row["input"] == "What is this?\n[image/png, 2.0 MB]"
    assert row["output"] == "A cat." and row["reasoning"] is None
    tree = json.loads(Path(client.download_artifacts(multimodal.info.run_id, "span_tree.json",
                                                     str(tmp_path / "d"))).read_text("utf-8"))
    assert image[:64] not in json.dumps(tree)
    assert len(json.dumps(tree)) < 20_000
