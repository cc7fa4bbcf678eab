"""A real ``otel-mlflow receive`` subprocess for tests: start, wait for ``/healthz``, SIGTERM or
``kill -9``, restart on the same port and spool directory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from otel_mlflow._receive import metrics as _metrics
from tests._support.mlflow_server import free_port

REPO = Path(__file__).resolve().parents[2]


@dataclass
class ReceiverProcess:
    root: Path
    tracking_uri: str
    experiment: str
    port: int = field(default_factory=free_port)
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def traces_url(self) -> str:
        return self.url + "/v1/traces"

    @property
    def spool_dir(self) -> Path:
        return self.root / "spool"

    @property
    def log_path(self) -> Path:
        return self.root / "receiver.log"

    def start(self, timeout: float = 60.0) -> ReceiverProcess:
        self.root.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        env["OTEL_SDK_DISABLED"] = "false"
        env.update(self.env)
        cmd = [sys.executable, "-m", "otel_mlflow.cli", "receive", "--port", str(self.port),
               "--spool-dir", str(self.spool_dir), "--tracking-uri", self.tracking_uri,
               "--experiment", self.experiment, *self.args]
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                     cwd=self.root)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"receiver exited ({self.proc.returncode}):\n{self.output()}")
            try:
                if requests.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError("receiver did not come up:\n" + self.output())

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:] if self.log_path.exists() else ""

    def metrics(self, token: str | None = None) -> dict[str, float]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return _metrics.parse(requests.get(self.url + "/metrics", headers=headers, timeout=5).text)

    def kill(self) -> None:
        """SIGKILL: no drain, no flush; what was acknowledged must be on disk."""
        if self.proc is None:
            return
        try:
            self.proc.send_signal(signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)
        self.proc = None

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM and wait: the exit code of the graceful drain."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=timeout)
        self.proc = None
        return code

    def stop(self) -> None:
        if self.proc is not None:
            try:
                self.terminate(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
