"""The one replay rule (``replay_entry``) as a table: each kind of write failure and the spool state
it leaves (written -> removed, transient/auth -> released, rejected -> ``rejected/``, unexpected
error -> backoff, then ``rejected/`` once its attempts are used up).

A real ``Spool`` in ``tmp_path``; the write function is a recording stand-in that raises the real
exception types MLflow and requests raise (a real MLflow server is used by tests/e2e).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import requests
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, UNAUTHENTICATED

from otel_mlflow._delivery.errors import ErrorKind
from otel_mlflow._record import TraceRecord
from otel_mlflow._delivery.replay_entry import EntryResult, Outcome, replay_entry
from otel_mlflow._delivery.spool import REJECTED_DIR, Spool
from otel_mlflow._delivery.spool_entry import SpoolEntry
from tests.delivery.test_spool import entry_files, make_record


class RecordingWrite:
    """Records every record it is asked to write; raises ``error`` when one is set."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error
        self.calls: list[str] = []

    def __call__(self, record: Any) -> None:
        self.calls.append(record.trace_id)
        if self.error is not None:
            raise self.error


def claimed(tmp_path: Path) -> tuple[Spool, SpoolEntry]:
    spool = Spool(tmp_path / "spool", loads=TraceRecord.from_json)
    assert spool.put(make_record(1)) is not None
    entry = spool.claim_next()
    assert entry is not None
    return spool, entry


def rejected_files(spool: Spool) -> list[Path]:
    folder = spool.directory / REJECTED_DIR
    return entry_files(folder) if folder.is_dir() else []


CASES = [
    pytest.param(None, Outcome.WRITTEN, None, 0, 0, id="written-removed"),
    pytest.param(requests.ConnectionError("refused"), Outcome.RELEASED, ErrorKind.TRANSIENT, 1, 0,
                 id="transient-released"),
    pytest.param(MlflowException("bad token", error_code=UNAUTHENTICATED), Outcome.RELEASED,
                 ErrorKind.AUTH, 1, 0, id="auth-released"),
    pytest.param(MlflowException("Invalid value", error_code=INVALID_PARAMETER_VALUE),
                 Outcome.REJECTED, ErrorKind.REJECTED, 0, 1, id="rejected-set-aside"),
    pytest.param(ValueError("bug"), Outcome.RELEASED, ErrorKind.ERROR, 1, 0,
                 id="unexpected-error-without-backoff-released"),
]


@pytest.mark.parametrize(("error", "outcome", "kind", "pending", "rejected"), CASES)
def test_outcome_and_spool_state_per_failure_kind(
    tmp_path: Path, error: BaseException | None, outcome: Outcome, kind: ErrorKind | None,
    pending: int, rejected: int,
) -> None:
    spool, entry = claimed(tmp_path)
    write = RecordingWrite(error)
    try:
        result = replay_entry(spool, entry, write)
        assert write.calls == [entry.trace_id]
        assert result == EntryResult(outcome, kind, error)
        assert spool.pending() == pending
        assert len(rejected_files(spool)) == rejected
        assert list(spool.iter_claims()) == []  # settled either way: no claim left behind
    finally:
        spool.close()


def test_unexpected_error_waits_for_backoff_then_is_rejected_when_attempts_are_used_up(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    spool, entry = claimed(tmp_path)
    noted: list[tuple[str, str]] = []

    def note_error(name: str, exc: BaseException) -> int:
        noted.append((name, str(exc)))
        return len(noted)

    write = RecordingWrite(ValueError("bug"))
    try:
        first = replay_entry(spool, entry, write, note_error=note_error, error_attempts=2)
        assert first.outcome is Outcome.BACKOFF and first.kind is ErrorKind.ERROR
        assert spool.pending() == 1 and rejected_files(spool) == []

        again = spool.claim_next()
        assert again is not None and again.name == entry.name
        with caplog.at_level(logging.ERROR, logger="otel_mlflow"):
            second = replay_entry(spool, again, write, note_error=note_error, error_attempts=2)
        assert second.outcome is Outcome.REJECTED and second.kind is ErrorKind.ERROR
        assert noted == [(entry.name, "bug"), (entry.name, "bug")]
        assert spool.pending() == 0
        assert [p.name for p in rejected_files(spool)] == [entry.name]
        assert "failed 2 times with an unexpected error" in caplog.text
    finally:
        spool.close()


def test_outage_and_rejection_are_not_counted_as_unexpected_errors(tmp_path: Path) -> None:
    spool, entry = claimed(tmp_path)
    noted: list[str] = []

    def note_error(name: str, exc: BaseException) -> int:
        noted.append(name)
        return len(noted)

    try:
        result = replay_entry(spool, entry, RecordingWrite(TimeoutError()), note_error=note_error)
        assert result.outcome is Outcome.RELEASED
        assert noted == []
        assert spool.pending() == 1
    finally:
        spool.close()


def test_rejection_reason_comes_from_describe(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    spool, entry = claimed(tmp_path)
    error = MlflowException("Invalid value", error_code=INVALID_PARAMETER_VALUE)
    try:
        with caplog.at_level(logging.ERROR, logger="otel_mlflow"):
            replay_entry(spool, entry, RecordingWrite(error), describe=lambda exc: "WHY-IT-FAILED")
        assert "WHY-IT-FAILED" in caplog.text
    finally:
        spool.close()
