"""A real ``mlflow server`` subprocess for tests (sqlite backend, one worker, no job runner).

``backend_store_uri`` (e.g. a ``postgresql+psycopg2://`` URI from ``tests/_support/postgres.py``)
and ``workers`` override the sqlite file and the single worker.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class MlflowServer:
    """Handle on one server process; ``kill``/``start`` keep its port, store and artifacts."""

    root: Path
    port: int = field(default_factory=free_port)
    extra_args: tuple[str, ...] = ()
    backend_store_uri: str | None = None
    workers: int = 1
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.root / "server.log"

    def start(self, timeout: float = 120.0) -> MlflowServer:
        self.root.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.update(
            {
                "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
                "OTEL_SDK_DISABLED": "true",
                "PYTHONUNBUFFERED": "1",
            }
        )
        for var in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "OTEL_TRACES_EXPORTER"):
            env.pop(var, None)
        env.update(self.env)
        cmd = [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
            "--backend-store-uri",
            self.backend_store_uri or f"sqlite:///{self.root / 'mlflow.db'}",
            "--artifacts-destination",
            str(self.root / "artifacts"),
            *self.extra_args,
        ]
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"mlflow server exited ({self.proc.returncode}):\n"
                    + self.log_path.read_text(errors="replace")[-4000:]
                )
            try:
                if requests.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.25)
        self.kill()
        raise RuntimeError("mlflow server did not come up:\n" + self.log_path.read_text()[-4000:])

    def pids(self) -> list[int]:
        """The server's processes (the launcher and its uvicorn workers), for CPU accounting."""
        if self.proc is None:
            return []
        import psutil

        try:
            parent = psutil.Process(self.proc.pid)
            return [parent.pid, *(c.pid for c in parent.children(recursive=True))]
        except psutil.NoSuchProcess:
            return []

    def kill(self) -> None:
        """SIGKILL the whole process group (uvicorn workers included)."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)
        self.proc = None

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        self.kill()
