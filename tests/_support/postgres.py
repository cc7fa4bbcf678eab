"""A real PostgreSQL server for tests: ``initdb`` into a temp dir, a free port, ``pg_ctl``.

``PostgresServer().start()`` finds the server binaries (``OTEL_MLFLOW_TEST_PG_BIN``, else
``pg_config --bindir``, else Debian's ``/usr/lib/postgresql/<version>/bin``), initialises a cluster
in a fresh temp dir (trust auth on 127.0.0.1 only, superuser ``mlflow``), listens on an
unprivileged free port with its unix socket in the same temp dir, and creates the database
``mlflow``. ``stop()`` shuts it down and removes the dir.

``initdb`` and ``postgres`` refuse to run as root: as root the binaries run as the unprivileged
``postgres`` user (Debian's package creates it) through ``runuser``, with the temp dir (made
directly under the system temp dir, so that user can reach it) chowned to that user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests._support.mlflow_server import free_port

_USER = "mlflow"
_DATABASE = "mlflow"


def find_bindir() -> Path | None:
    """Where ``initdb`` / ``pg_ctl`` live, or None when PostgreSQL is not installed."""
    env = os.environ.get("OTEL_MLFLOW_TEST_PG_BIN")
    candidates = [env] if env else []
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True,
                                 timeout=10, check=True).stdout.strip()
            candidates.append(out)
        except (OSError, subprocess.SubprocessError):
            pass
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for candidate in candidates:
        if candidate and (Path(candidate) / "initdb").exists():
            return Path(candidate)
    return None


@dataclass
class PostgresServer:
    """Handle on one PostgreSQL cluster started for the test session."""

    port: int = field(default_factory=free_port)
    bindir: Path | None = None
    root: Path | None = None

    @property
    def uri(self) -> str:
        """The SQLAlchemy URI ``mlflow server --backend-store-uri`` takes."""
        return f"postgresql+psycopg2://{_USER}@127.0.0.1:{self.port}/{_DATABASE}"

    def _run_as(self) -> list[str]:
        if os.geteuid() != 0:
            return []
        return ["runuser", "-u", "postgres", "--"]

    def _cmd(self, *args: str, timeout: float = 120.0) -> None:
        assert self.bindir is not None
        proc = subprocess.run([*self._run_as(), str(self.bindir / args[0]), *args[1:]],
                              capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")

    def start(self) -> PostgresServer:
        self.bindir = self.bindir or find_bindir()
        if self.bindir is None:
            raise RuntimeError("PostgreSQL server binaries not found (install `postgresql`)")
        self.root = Path(tempfile.mkdtemp(prefix="otel_mlflow-pg-", dir=tempfile.gettempdir()))
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        data = self.root / "data"
        self._cmd("initdb", "-D", str(data), "-U", _USER, "--auth=trust", "-E", "UTF8",
                  "--no-sync", "--locale=C")
        # Test cluster: durability off (fsync) for speed; TCP on loopback only.
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                   "-c max_connections=200")
        self._cmd("pg_ctl", "-D", str(data), "-l", str(self.root / "postgres.log"), "-w",
                  "-t", "60", "-o", options, "start")
        self._create_database()
        return self

    def _create_database(self) -> None:
        import psycopg2

        deadline = time.monotonic() + 30
        while True:
            try:
                conn = psycopg2.connect(host="127.0.0.1", port=self.port, user=_USER,
                                        dbname="postgres")
                break
            except psycopg2.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f"CREATE DATABASE {_DATABASE}")
        finally:
            conn.close()

    def pids(self) -> list[int]:
        """The postmaster and its backends (for CPU accounting; empty when not running)."""
        if self.root is None:
            return []
        try:
            first = (self.root / "data" / "postmaster.pid").read_text().split("\n", 1)[0]
            import psutil

            main = psutil.Process(int(first))
            return [main.pid, *(c.pid for c in main.children(recursive=True))]
        except (OSError, ValueError, ImportError):
            return []
        except Exception:  # noqa: BLE001 - psutil.Error: the process went away
            return []

    def log_tail(self) -> str:
        if self.root is None:
            return ""
        path = self.root / "postgres.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop(self) -> None:
        if self.root is None:
            return
        try:
            self._cmd("pg_ctl", "-D", str(self.root / "data"), "-m", "fast", "-w", "stop",
                      timeout=60)
        except (RuntimeError, subprocess.SubprocessError):
            pass
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None
