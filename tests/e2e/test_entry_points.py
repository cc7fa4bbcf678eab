"""Zero code: ``OTEL_TRACES_EXPORTER=mlflow[,otlp] opentelemetry-instrument python app.py``.

The app below has no tracing code at all. The OTel SDK builds ``MlflowSpanExporter`` with no
arguments from the ``opentelemetry_traces_exporter`` entry point ``mlflow`` (everything from env
vars), the ``opentelemetry_instrumentor`` entry point ``otel_mlflow_langchain`` turns LangChain
tracing on, and the provider's shutdown at interpreter exit drains the exporter: the run must be
in MLflow after the process has exited, without any flush call in the app.
"""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests._support.mlflow_server import MlflowServer
from tests._support.otlp_receiver import OtlpReceiver

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

APP = """
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from tests._support.fake_models import FakeChatModel

chain = ChatPromptTemplate.from_messages([("human", "Say hi to {name}")]) | FakeChatModel() | StrOutputParser()
print(chain.invoke({"name": "zero code"}))
"""

# The same app, also calling configure(): it must find the SDK-built exporter and add none.
APP_WITH_CONFIGURE = """
import otel_mlflow
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from tests._support.fake_models import FakeChatModel

tracer = otel_mlflow.configure(instrument=True)
chain = ChatPromptTemplate.from_messages([("human", "Say hi to {name}")]) | FakeChatModel() | StrOutputParser()
print(chain.invoke({"name": "zero code"}, config={"callbacks": [tracer]}))
"""


# The app's own HTTP call proves requests IS instrumented in the process (one span expected).
APP_WITH_OWN_HTTP = (
    "import os, requests\n"
    "requests.get(os.environ['MLFLOW_TRACKING_URI'] + '/health', timeout=10).raise_for_status()\n"
    + APP
)


def run_instrumented(tmp_path: Path, app: str, env: dict[str, str]) -> str:
    script = tmp_path / "app.py"
    script.write_text(app)
    full_env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OTEL_", "MLFLOW_TRACKING", "MLFLOW_EXPERIMENT"))
    }
    full_env.update(
        {
            "PYTHONPATH": str(ROOT),
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none",
            # opentelemetry-distro defaults OTLP to gRPC; the receivers here speak OTLP/HTTP.
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_SERVICE_NAME": "zero-code-app",
            "OTEL_MLFLOW_GRACE_SECONDS": "0.1",
            "OTEL_MLFLOW_SPOOL_DIR": str(tmp_path / "spool"),
            # Offline: MLflow's span cost lookup would otherwise try to download its model
            # catalog (with retries) before the first trace is stored.
            "MLFLOW_MODEL_CATALOG_URI": "",
            **env,
        }
    )
    proc = subprocess.run(
        [str(BIN / "opentelemetry-instrument"), sys.executable, str(script)],
        cwd=tmp_path,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "echo: Say hi to zero code" in proc.stdout
    return proc.stderr


def test_entry_points_are_declared() -> None:
    exporters = {e.name: e.value for e in entry_points(group="opentelemetry_traces_exporter")}
    assert exporters["mlflow"] == "otel_mlflow:MlflowSpanExporter"
    instrumentors = {e.name: e for e in entry_points(group="opentelemetry_instrumentor")}
    assert instrumentors["otel_mlflow_langchain"].value == (
        "otel_mlflow.instrumentation:LangChainInstrumentor"
    )
    assert instrumentors["otel_mlflow_langchain"].load().__name__ == "LangChainInstrumentor"


@pytest.mark.parametrize("app", [APP, APP_WITH_CONFIGURE], ids=["no-code", "with-configure"])
def test_mlflow_exporter_on_embedded_sqlite(tmp_path: Path, app: str) -> None:
    uri = f"sqlite:///{tmp_path / 'runs.db'}"
    run_instrumented(
        tmp_path,
        app,
        {"OTEL_TRACES_EXPORTER": "mlflow", "MLFLOW_TRACKING_URI": uri,
         "MLFLOW_EXPERIMENT_NAME": "zero-code"},
    )
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("zero-code")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1  # one trace, one run: no second exporter, no double tracing
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.info.run_name.startswith("invoke_workflow")
    assert run.data.metrics["llm.calls"] == 1
    assert run.data.tags["otel.service.name"] == "zero-code-app"
    traces = client.search_traces(locations=[experiment.experiment_id], run_id=run.info.run_id)
    assert [t.info.trace_id for t in traces] == ["tr-" + run.data.tags["otel.trace_id"]]


def test_mlflow_and_otlp_exporters_against_a_server(
    tmp_path: Path, mlflow_server: MlflowServer
) -> None:
    with OtlpReceiver() as receiver:
        run_instrumented(
            tmp_path,
            APP_WITH_OWN_HTTP,
            {
                "OTEL_TRACES_EXPORTER": "mlflow,otlp",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.endpoint,
                "MLFLOW_TRACKING_URI": mlflow_server.url,
                "MLFLOW_EXPERIMENT_NAME": "zero-code-server",
            },
        )
        spans = receiver.spans
    client = MlflowClient(mlflow_server.url)
    experiment = client.get_experiment_by_name("zero-code-server")
    assert experiment is not None
    # (the app's own GET is a trace of its own; whether it becomes a run is the exporter's rule)
    (run,) = [
        r for r in client.search_runs([experiment.experiment_id])
        if r.info.run_name.startswith("invoke_workflow")
    ]
    trace_id = run.data.tags["otel.trace_id"]
    langchain_spans = [s for s in spans if s.trace_id == trace_id]
    assert any(s.name.startswith("chat ") for s in langchain_spans)
    assert all(s.attributes.get("otel_mlflow.langchain.run_id") for s in langchain_spans)
    # opentelemetry-instrument also instrumented requests: the app's own call is traced, and
    # otel_mlflow's own MLflow traffic (create run, log batch, artifacts, /v1/traces) is not.
    http = [s for s in spans if s.trace_id != trace_id]
    assert len(http) == 1, [(s.name, s.attributes) for s in http]
    assert http[0].name == "GET"
    assert "/health" in str(http[0].attributes.get("url.full") or http[0].attributes.get("http.url"))
    (linked,) = client.search_traces(locations=[experiment.experiment_id], run_id=run.info.run_id)
    assert linked.info.trace_id == "tr-" + trace_id
