"""The on-disk spool: permissions, atomic durable entries, the size cap, quarantine, recovery
after a killed writer, the default directory, and ``replay`` (the CLI's entry point).

``replay`` is driven here with a scripted write function (``writer_factory``) so failure kinds can
be chosen; the real MLflow writer is exercised by tests/e2e/test_outage.py and test_basic_auth.py.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from otel_mlflow._common import faults as _faults
from otel_mlflow._record import Table, TraceRecord
from otel_mlflow._delivery.spool import QUARANTINE_DIR, REJECTED_DIR, Spool
from otel_mlflow._delivery.spool_dir import default_spool_dir
from otel_mlflow._delivery.replay import replay


def make_record(index: int, payload: str = "") -> TraceRecord:
    return TraceRecord(
        trace_id=f"{index:032x}",
        run_name=f"chain {index}",
        target_run_id=None,
        experiment_id=None,
        tags={"otel.trace_id": f"{index:032x}", "note": "日本語 ✓"},
        params={"gen_ai.request.model": "gemini-2.5-flash"},
        metrics={"llm.calls": 1.0, "trace.duration_ms": 12.5},
        table=Table(rows=(("span", "chat", "m", "in " + payload, "out", None),)),
        tree={"name": f"chain {index}", "children": []},
        otlp=b"\x00\x01otlp",
        start_time_ms=1_700_000_000_000 + index,
        end_time_ms=1_700_000_000_100 + index,
        status="OK",
    )


def entry_files(directory: Path) -> list[Path]:
    return sorted(
        p for p in directory.iterdir()
        if p.name.endswith(".trace.json") and not p.name.startswith(".")
    )


def test_directory_0700_files_0600_and_round_trip(tmp_path: Path) -> None:
    old = os.umask(0o022)  # a typical umask would give 0755/0644 without explicit modes
    try:
        spool = Spool(tmp_path / "spool", experiment_name="exp", link_traces=False,
                          loads=TraceRecord.from_json)
        record = make_record(1)
        assert spool.put(record)
    finally:
        os.umask(old)
    assert stat.S_IMODE(spool.directory.stat().st_mode) == 0o700
    [path] = entry_files(spool.directory)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not [p for p in spool.directory.iterdir() if p.name.startswith(".tmp-")]
    text = path.read_text(encoding="utf-8")
    assert "日本語 ✓" in text  # readable, not \u-escaped
    entry = spool.claim_next()
    assert entry is not None
    assert entry.record == record
    assert (entry.experiment_name, entry.link_traces) == ("exp", False)
    assert spool.pending() == 0  # claimed entries are not offered twice
    spool.remove(entry)
    assert entry_files(spool.directory) == []
    spool.close()


def test_existing_wide_directory_is_tightened(tmp_path: Path) -> None:
    directory = tmp_path / "wide"
    directory.mkdir(mode=0o777)
    os.chmod(directory, 0o777)
    Spool(directory).close()
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700


def test_entries_replay_oldest_first(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    for i in range(5):
        spool.put(make_record(i))
    order = []
    while (entry := spool.claim_next()) is not None:
        order.append(entry.trace_id)
        spool.remove(entry)
    assert order == [f"{i:032x}" for i in range(5)]


def test_cap_drops_oldest_with_error_log_and_counter(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _faults.reset_fault_counts()
    one = len(json.dumps({"record": make_record(0, "x" * 1000).to_json()}))
    spool = Spool(tmp_path, max_bytes=int(one * 3.5))
    with caplog.at_level(logging.ERROR, logger="otel_mlflow._delivery.spool"):
        for i in range(10):
            assert spool.put(make_record(i, "x" * 1000))
    assert spool.size_bytes() <= spool.max_bytes
    kept = []
    while (entry := spool.claim_next()) is not None:
        kept.append(int(entry.trace_id, 16))
        spool.remove(entry)
    assert kept == list(range(10 - len(kept), 10))  # the newest survive
    assert spool.dropped == 10 - len(kept) > 0
    assert _faults.fault_counts()["spool.dropped"] == spool.dropped
    assert any("is full" in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records)


def test_corrupt_entry_is_quarantined_not_fatal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = Spool(tmp_path)
    spool.put(make_record(1))
    bad = tmp_path / "00000000000000000000-1-000001-deadbeef.trace.json"
    bad.write_bytes(b'{"format": 1, "record": "{trunc')
    spool.put(make_record(2))
    with caplog.at_level(logging.WARNING, logger="otel_mlflow._delivery.spool"):
        ids = []
        while (entry := spool.claim_next()) is not None:
            ids.append(entry.trace_id)
            spool.remove(entry)
    assert ids == [f"{1:032x}", f"{2:032x}"]
    assert (tmp_path / QUARANTINE_DIR / bad.name).exists()
    assert spool.quarantined == 1
    assert any("moved to" in r.getMessage() for r in caplog.records)


_CHILD = r"""
import os, sys
sys.path.insert(0, {root!r})
from otel_mlflow._delivery.spool import Spool
from tests.delivery.test_spool import make_record
spool = Spool({directory!r})
spool.put(make_record(7))
entry = spool.claim_next()          # claimed by this process...
assert entry is not None
with open(os.path.join({directory!r}, ".tmp-" + str(os.getpid()) + "-half.trace.json"), "wb") as f:
    f.write(b'{{"format": 1, "rec')  # ...and a torn temporary file, then the process dies
os._exit(0)
"""


def test_claims_and_temp_files_of_a_dead_process_are_recovered(tmp_path: Path) -> None:
    root = str(Path(__file__).resolve().parents[2])
    code = _CHILD.format(root=root, directory=str(tmp_path))
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120, cwd=root)
    assert entry_files(tmp_path) == []  # the only entry is claimed by the dead process
    spool = Spool(tmp_path)
    assert spool.pending() == 1  # claim released
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]  # torn tmp removed
    entry = spool.claim_next()
    assert entry is not None and entry.trace_id == f"{7:032x}"


def test_complete_temp_file_left_before_rename_is_kept(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.put(make_record(3))
    [path] = entry_files(tmp_path)
    # What a kill between fsync and rename leaves behind (pid 999999999 does not exist).
    path.rename(tmp_path / f".tmp-999999999-{path.name}")
    spool.close()
    reopened = Spool(tmp_path)
    assert [p.name for p in entry_files(tmp_path)] == [path.name]
    entry = reopened.claim_next()
    assert entry is not None and entry.trace_id == f"{3:032x}"


def test_closed_spool_in_same_process_releases_claims(tmp_path: Path) -> None:
    first = Spool(tmp_path)
    first.put(make_record(1))
    assert first.claim_next() is not None
    first.close()
    assert Spool(tmp_path).pending() == 1


def test_default_dir_is_per_store_under_the_cache_without_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("OTEL_MLFLOW_SPOOL_DIR", raising=False)
    a = default_spool_dir("http://alice:secret1@mlflow.example:5000")
    b = default_spool_dir("http://alice:other@mlflow.example:5000")
    c = default_spool_dir("http://mlflow.example:5001")
    assert a == b != c
    assert a.parent == tmp_path / "cache" / "otel_mlflow" / "spool"
    assert "secret1" not in str(a)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "one").mkdir()
    monkeypatch.chdir(tmp_path / "one")
    here = default_spool_dir("sqlite:///mlflow.db")
    monkeypatch.chdir(tmp_path)
    there = default_spool_dir("sqlite:///mlflow.db")
    assert here != there  # a relative sqlite path names a different store per directory


def test_env_spool_dir_and_argument_priority(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_MLFLOW_SPOOL_DIR", str(tmp_path / "env"))
    monkeypatch.setenv("OTEL_MLFLOW_SPOOL_MAX_BYTES", "12345")
    from_env = Spool()
    assert from_env.directory == tmp_path / "env"
    assert from_env.max_bytes == 12345
    explicit = Spool(tmp_path / "arg", max_bytes=99)
    assert explicit.directory == tmp_path / "arg" and explicit.max_bytes == 99


def test_cache_dir_not_writable_falls_back_to_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    monkeypatch.chdir(tmp_path)
    path = default_spool_dir("http://x:1")
    assert path.parent == tmp_path / ".otel_mlflow_spool"


class ScriptedWriter:
    """Stands in for ``MlflowWriter.write`` to choose failure kinds; records what it wrote."""

    def __init__(self, fail: dict[str, BaseException] | None = None) -> None:
        self.fail = fail or {}
        self.written: list[tuple[str, int]] = []
        self.built: list[tuple[str, str | None, bool]] = []

    def factory(self, uri: str, experiment: str | None, link: bool) -> Any:
        self.built.append((uri, experiment, link))

        def write(record: TraceRecord, attempt: int = 0) -> None:
            exc = self.fail.get(record.trace_id)
            if exc is not None:
                raise exc
            self.written.append((record.trace_id, attempt))

        return write


def test_replay_writes_all_reports_progress_and_empties(tmp_path: Path) -> None:
    spool = Spool(tmp_path, experiment_name="replayed", link_traces=True)
    for i in range(6):
        spool.put(make_record(i))
    spool.close()
    writer = ScriptedWriter()
    progress: list[tuple[int, int | None]] = []
    result = replay(
        spool_dir=tmp_path,
        tracking_uri="http://127.0.0.1:1",
        on_progress=lambda done, total: progress.append((done, total)),
        writer_factory=writer.factory,
    )
    assert (result.written, result.failed, result.remaining) == (6, 0, 0)
    assert [t for t, _ in writer.written] == [f"{i:032x}" for i in range(6)]
    assert all(attempt >= 1 for _, attempt in writer.written)  # a replay is never a first try
    assert writer.built == [("http://127.0.0.1:1", "replayed", True)]
    assert progress[0] == (0, 6) and progress[-1] == (6, 6)
    assert entry_files(tmp_path) == []


def test_replay_stops_at_connection_error_and_sets_rejected_aside(tmp_path: Path) -> None:
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

    spool = Spool(tmp_path)
    for i in range(5):
        spool.put(make_record(i))
    spool.close()
    writer = ScriptedWriter(
        {
            f"{1:032x}": MlflowException("bad param", error_code=INVALID_PARAMETER_VALUE),
            f"{3:032x}": ConnectionError("refused"),
        }
    )
    result = replay(spool_dir=tmp_path, tracking_uri="http://x:1", writer_factory=writer.factory)
    assert [t for t, _ in writer.written] == [f"{0:032x}", f"{2:032x}"]
    assert result.written == 2 and result.failed == 2 and result.remaining == 2
    rejected = [p.name for p in (tmp_path / REJECTED_DIR).iterdir()]
    assert len(rejected) == 1 and rejected[0].endswith(f"{1:032x}.trace.json")
    writer.fail.clear()
    again = replay(spool_dir=tmp_path, tracking_uri="http://x:1", writer_factory=writer.factory)
    assert (again.written, again.remaining) == (2, 0)
    # rejected/ is never retried by a plain replay, even with MLflow now accepting the record ...
    assert again.rejected == 1 and f"{1:032x}" not in [t for t, _ in writer.written]
    # ... only when asked to: then it is written and the folder is empty.
    last = replay(spool_dir=tmp_path, tracking_uri="http://x:1", writer_factory=writer.factory,
                  include_rejected=True)
    assert (last.written, last.failed, last.remaining, last.rejected) == (1, 0, 0, 0)
    assert [t for t, _ in writer.written][-1] == f"{1:032x}"
    assert list((tmp_path / REJECTED_DIR).iterdir()) == []


def test_include_rejected_sends_entries_refused_again_back_to_rejected(tmp_path: Path) -> None:
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

    spool = Spool(tmp_path)
    spool.put(make_record(4), folder=REJECTED_DIR)
    spool.close()
    writer = ScriptedWriter(
        {f"{4:032x}": MlflowException("still bad", error_code=INVALID_PARAMETER_VALUE)}
    )
    result = replay(spool_dir=tmp_path, tracking_uri="http://x:1", writer_factory=writer.factory,
                    include_rejected=True)
    assert (result.written, result.failed, result.remaining, result.rejected) == (0, 1, 0, 1)
    assert writer.written == []


def test_replay_never_raises_on_a_broken_progress_callback(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.put(make_record(1))
    spool.close()

    def broken(done: int, total: int | None) -> None:
        raise RuntimeError("terminal gone")

    result = replay(spool_dir=tmp_path, on_progress=broken, writer_factory=ScriptedWriter().factory)
    assert result.written == 1


def test_put_on_a_refusing_disk_returns_none_logs_and_counts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _faults.reset_fault_counts()
    spool = Spool(tmp_path / "s")
    # The directory vanishes under the spool and a file takes its name: every write fails
    # (chmod would not do: the tests may run as root).
    os.rmdir(spool.directory)
    spool.directory.write_text("in the way")
    with caplog.at_level(logging.ERROR):
        assert spool.put(make_record(1)) is None
    assert _faults.fault_counts().get("spool.put") == 1
    assert any("could not spool" in r.getMessage() for r in caplog.records)


def test_without_a_loader_an_entry_hands_back_the_records_json_text(tmp_path: Path) -> None:
    """The spool never knows the record type: the caller's ``loads`` decodes (default: none)."""
    spool = Spool(tmp_path)
    record = make_record(3)
    assert spool.put(record)
    entry = spool.claim_next()
    assert entry is not None and entry.record == record.to_json()
    assert TraceRecord.from_json(entry.record) == record
