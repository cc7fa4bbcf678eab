"""A real ``mlflow server --app-name basic-auth``: credentials come only from MLflow's own
``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``. Right password: runs written. Wrong
password: the app sees no exception, the traces are spooled with a loud log line, and the password
appears in no log record and no spool byte; once the password is fixed the spool is replayed.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from mlflow import MlflowClient

from tests._support.mlflow_server import MlflowServer
from tests.e2e.test_outage import build_chain, runs_of

ADMIN = "admin"
PASSWORD = "Right-Canary-Pass-5521x"
WRONG = "Wrong-Canary-Pass-9912y"


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    root = Path(tmp_path_factory.mktemp("auth_server"))
    ini = root / "basic_auth.ini"
    ini.write_text(
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = sqlite:///{root / 'basic_auth.db'}\n"
        f"admin_username = {ADMIN}\n"
        f"admin_password = {PASSWORD}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    server = MlflowServer(
        root=root,
        extra_args=("--app-name", "basic-auth"),
        env={"MLFLOW_AUTH_CONFIG_PATH": str(ini), "MLFLOW_FLASK_SERVER_SECRET_KEY": "test-key"},
    ).start()
    yield server
    server.stop()


def run_chains(tracer: Any, provider: Any, n: int) -> list[str]:
    out = [
        build_chain(i).invoke({"q": f"q{i}"}, config={"callbacks": [tracer]}) for i in range(n)
    ]
    provider.force_flush()
    return out


def all_bytes(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file())


def test_credentials_from_mlflow_env_and_wrong_password_spooled_not_leaked(
    auth_server: MlflowServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    request: pytest.FixtureRequest,
) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    from otel_mlflow._export.exporter import MlflowSpanExporter
    from otel_mlflow._tracing.handler import OtelTracer

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", ADMIN)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)
    admin = MlflowClient(tracking_uri=auth_server.url)

    # 1. Right credentials, from the environment only.
    ok = MlflowSpanExporter(
        tracking_uri=auth_server.url, experiment_name="auth-ok", spool_dir=str(tmp_path / "ok"),
        grace_seconds=0.1,
    )
    request.addfinalizer(ok.shutdown)  # a failed assertion must not leave a live exporter behind
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(ok))
    tracer = OtelTracer(tracer_provider=provider)
    assert run_chains(tracer, provider, 3) == ["answer 0", "answer 1", "answer 2"]
    assert ok.force_flush(60_000)
    assert len(runs_of(admin, "auth-ok")) == 3
    ok.shutdown()

    # 2. Wrong password: nothing raised into the app, traces spooled, a loud log line.
    spool_dir = tmp_path / "bad"
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", WRONG)
    caplog.set_level(logging.DEBUG)
    bad = MlflowSpanExporter(
        tracking_uri=auth_server.url, experiment_name="auth-bad", spool_dir=str(spool_dir),
        grace_seconds=0.1,
    )
    request.addfinalizer(bad.shutdown)  # (its flush() would fail every later module-level flush)
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(bad))
    tracer = OtelTracer(tracer_provider=provider)
    assert run_chains(tracer, provider, 3) == ["answer 0", "answer 1", "answer 2"]
    assert bad.force_flush(30_000) is False  # not in MLflow
    spool = bad.delivery.spool
    assert spool is not None
    deadline = time.monotonic() + 30
    while spool.pending() < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert spool.pending() == 3
    assert any(
        r.levelno >= logging.ERROR and "credentials" in r.getMessage() for r in caplog.records
    )
    # Nothing reached MLflow (checked with the right password, outside the MLflow env vars).
    resp = requests.get(
        f"{auth_server.url}/api/2.0/mlflow/experiments/get-by-name",
        params={"experiment_name": "auth-bad"}, auth=(ADMIN, PASSWORD), timeout=30,
    )
    assert resp.status_code == 404, resp.text

    # The password is in no log record and no spool byte (plain or as a Basic header).
    secrets = [
        s.encode() for s in (WRONG, PASSWORD)
    ] + [base64.b64encode(f"{ADMIN}:{s}".encode()) for s in (WRONG, PASSWORD)]
    logged = "\n".join(
        f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records
    ).encode()
    spooled = all_bytes(spool_dir)
    assert spooled  # the spool really holds the traces
    for secret in secrets:
        assert secret not in logged
        assert secret not in spooled

    # 3. Password fixed: the next flush finds MLflow accepting writes and replays the spool.
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)
    assert bad.force_flush(60_000)
    runs = runs_of(admin, "auth-bad")
    assert len(runs) == 3 and len({r.data.tags["otel.trace_id"] for r in runs}) == 3
    bad.shutdown()
