"""Shared fixtures: real OTel SDK pipelines, a real mlflow server, the local Gemini emulator."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests._support.mlflow_server import MlflowServer
from tests._support.postgres import PostgresServer
from tests._support.gemini import (  # noqa: F401
    gemini_emulator,
    genai_emulator,
    genai_imported,
    no_adc,
    vertexai_imported,
)

# Tests never talk to a user's tracking server or a global collector.
for _var in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "OTEL_EXPORTER_OTLP_ENDPOINT",
             "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_EXPORTER"):
    os.environ.pop(_var, None)
# Offline: MLflow prices token usage from a model catalog it first tries to download (retries,
# seconds each); an empty URI makes it use the catalog bundled with MLflow. Servers inherit it.
os.environ.setdefault("MLFLOW_MODEL_CATALOG_URI", "")


@pytest.fixture
def memory() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    """A real SDK pipeline whose finished spans stay in memory: ``(provider, exporter)``."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """One real ``mlflow server`` (sqlite, --workers 1) shared by the whole session."""
    server = MlflowServer(root=Path(tmp_path_factory.mktemp("mlflow_server"))).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL cluster (initdb in a temp dir, free port), started on first use."""
    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mlflow_pg_server(
    postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MlflowServer]:
    """``mlflow server`` on the PostgreSQL backend with ``--workers 2``, shared by the session."""
    server = MlflowServer(
        root=Path(tmp_path_factory.mktemp("mlflow_pg_server")),
        backend_store_uri=postgres.uri,
        workers=2,
    ).start()
    yield server
    server.stop()


@pytest.fixture
def embedded_tracking_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The embedded default (``sqlite:///mlflow.db`` in the working directory), in a temp dir."""
    monkeypatch.chdir(tmp_path)
    return "sqlite:///mlflow.db"
