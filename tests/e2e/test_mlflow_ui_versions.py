"""MLflow's own UI shows each chain version as a LoggedModel with its traces and its prompt.

Real parts: LangChain runnables (``FakeChatModel``: no network), the real OTel SDK and
``MlflowSpanExporter`` writing to the real ``mlflow server`` fixture, and MLflow's bundled web UI
rendered by headless Chromium (``tests/_support/browser.py``). The checks read the pages' text as
a user sees it: the experiment's model list, each model's Traces tab and the prompt's page.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from mlflow import MlflowClient
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from otel_mlflow._export.exporter import MlflowSpanExporter
from otel_mlflow._tracing.handler import OtelTracer
from tests._support.browser import load_page
from tests._support.fake_models import FakeChatModel

QUESTIONS = ("What is a span?", "What is a trace?", "What is OpenTelemetry?")
TEXT = "document.body.innerText"


def _ui(server_url: str, fragment: str) -> str:
    """The UI page ``#/fragment`` on the server; the browser resolves only ``localhost``."""
    parts = urlsplit(server_url)
    netloc = f"localhost:{parts.port}"
    return urlunsplit((parts.scheme, netloc, "/", "", "")) + "#/" + fragment


def _page_text(url: str, *must_show: str) -> str:
    """The page's visible text once every string of ``must_show`` is on it (60 s at most)."""
    wait = " && ".join(f"{TEXT}.includes({s!r})" for s in must_show)
    report = load_page(url, wait_for=wait, evaluate={"text": TEXT}, timeout=60, settle=0.5)
    assert report.loaded, url
    text = str(report.values["text"])
    assert report.ready, f"{url} never showed {must_show}; it shows:\n{text[:2000]}"
    return text


def test_versions_are_logged_models_with_their_traces_and_prompt_in_mlflow_ui(
    mlflow_server: Any, tmp_path: Path
) -> None:
    experiment = f"ui-versions-{uuid.uuid4().hex[:8]}"
    exporter = MlflowSpanExporter(mlflow_server.url, experiment, grace_seconds=0.1,
                                  spool_dir=str(tmp_path / "spool"), register_prompts=True)
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=50))
    tracer = OtelTracer(provider)
    marker = uuid.uuid4().hex[:6]
    systems = {"v1": f"Answer in one word ({marker}).",
               "v2": f"Answer in one short sentence ({marker})."}
    try:
        for system in systems.values():
            chain = (ChatPromptTemplate.from_messages([("system", system), ("human", "{question}")])
                     | FakeChatModel() | StrOutputParser())
            for question in QUESTIONS:
                chain.invoke({"question": question}, config={"callbacks": [tracer]})
        assert provider.force_flush()
        assert exporter.force_flush(120_000), exporter.delivery.stats
    finally:
        provider.shutdown()

    client = MlflowClient(mlflow_server.url)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 2 * len(QUESTIONS)
    by_model: dict[str, list[Any]] = {}
    for run in runs:
        by_model.setdefault(run.data.tags["otel_mlflow.model_id"], []).append(run)
    models = {m.model_id: m for m in client.search_logged_models([exp.experiment_id])}
    assert set(models) == set(by_model) and len(models) == 2

    # The experiment's model list names both versions.
    names = [m.name for m in models.values()]
    _page_text(_ui(mlflow_server.url, f"experiments/{exp.experiment_id}/models"), *names)

    # Each model's Traces tab lists exactly the traces of its version, with their requests.
    for model_id, model_runs in by_model.items():
        mine = {"tr-" + r.data.tags["otel.trace_id"] for r in model_runs}
        others = {"tr-" + r.data.tags["otel.trace_id"] for r in runs} - mine
        text = _page_text(
            _ui(mlflow_server.url, f"experiments/{exp.experiment_id}/models/{model_id}/traces"),
            models[model_id].name, *mine)
        assert not [t for t in others if t in text], "a trace of the other version is listed"
        for question in QUESTIONS:
            assert question in text  # the request column: the chain's input

    # The templates were registered (register_prompts=True): one prompt version per chain
    # version, holding its template; the registry's page lists the versions (and shows the
    # latest one's text).
    linked = {run.data.tags["mlflow.linkedPrompts"] for run in runs}
    assert len(linked) == 2  # one prompt version per chain version
    for tag in linked:
        (entry,) = json.loads(tag)
        version = client.get_prompt_version(entry["name"], entry["version"])
        assert marker in json.dumps(version.template)
        _page_text(_ui(mlflow_server.url, f"prompts/{entry['name']}"), entry["name"],
                   f"Version {entry['version']}", marker)
