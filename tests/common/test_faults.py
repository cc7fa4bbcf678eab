"""Fault reporting: counted, rate-limited, never raised, and never a secret in the log.

Exception messages quote what failed: a request URL with a password, a header, an API key. The
log text of ``_faults.report`` (and delivery's own log lines about failed writes) passes through
the default redactor first; these tests put real-looking secrets in exception messages and
search the captured log records for them.
"""

from __future__ import annotations

import logging
import threading

import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import UNAUTHENTICATED

from otel_mlflow._common import faults as _faults

GOOGLE_KEY = "AIza" + "SyD3x4mpl3K3yV4lu3F0rT3st1ng0nly123"  # 39 chars, the Google API key shape
BEARER = "ya29.a0AfH6SMBx3mpl3T0k3nF0rT3st1ngPurp0s3s"
URL_PASSWORD = "hunter2-s3cret"


@pytest.fixture(autouse=True)
def _fresh_counters() -> None:
    _faults.reset_fault_counts()


def logged(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(record.getMessage() for record in caplog.records)


def test_secrets_in_an_exception_message_are_masked_in_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    exc = RuntimeError(
        f"POST https://svc:{URL_PASSWORD}@mlflow.example/api failed: key={GOOGLE_KEY} "
        f"header Authorization: Bearer {BEARER}"
    )
    with caplog.at_level(logging.WARNING, logger="otel_mlflow"):
        _faults.report("writer.test", exc)
    text = logged(caplog)
    assert "otel_mlflow fault in writer.test (1 so far): RuntimeError: POST https://svc:" in text
    for secret in (GOOGLE_KEY, BEARER, URL_PASSWORD):
        assert secret not in text
    assert "[REDACTED]" in text
    assert _faults.fault_counts() == {"writer.test": 1}


def test_a_message_argument_is_masked_too(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="otel_mlflow"):
        _faults.report("spool.test", message=f"could not write api_key={GOOGLE_KEY}")
    text = logged(caplog)
    assert GOOGLE_KEY not in text and "api_key=[REDACTED]" in text


def test_debug_traceback_is_masked_as_well(caplog: pytest.LogCaptureFixture) -> None:
    try:
        raise ValueError(f"token rejected: Bearer {BEARER}")
    except ValueError as exc:
        with caplog.at_level(logging.DEBUG, logger="otel_mlflow"):
            _faults.report("tracer.test", exc)
    text = logged(caplog)
    assert "Traceback (most recent call last)" in text  # the traceback is there ...
    assert BEARER not in text  # ... redacted
    assert all(record.exc_info is None for record in caplog.records)  # no raw exc_info


def test_counted_every_time_logged_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="otel_mlflow"):
        for _ in range(5):
            _faults.report("exporter.test", ValueError("same"))
    assert _faults.fault_counts()["exporter.test"] == 5
    assert len(caplog.records) == 1


def test_redaction_failure_withholds_the_message(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A broken redactor (simulated: the real one does not fail on text) fails closed."""
    from otel_mlflow._common import redact as _redact

    class Broken:
        def redact_text(self, text: str) -> str:
            raise RuntimeError("regex engine exploded")

    monkeypatch.setattr(_redact, "default_redactor", lambda: Broken())
    with caplog.at_level(logging.WARNING, logger="otel_mlflow"):
        _faults.report("writer.test", RuntimeError(f"key {GOOGLE_KEY}"))
    text = logged(caplog)
    assert GOOGLE_KEY not in text and "message withheld" in text


def test_report_never_raises_on_an_unprintable_exception() -> None:
    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    _faults.report("tracer.test", Unprintable())
    assert _faults.fault_counts() == {"tracer.test": 1}


def test_reports_from_many_threads_are_all_counted() -> None:
    threads = [
        threading.Thread(target=lambda: [_faults.report("t.x", ValueError()) for _ in range(100)])
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert _faults.fault_counts()["t.x"] == 800


def test_delivery_log_lines_about_failed_writes_are_masked(
    tmp_path, caplog: pytest.LogCaptureFixture
) -> None:
    from otel_mlflow._delivery.workers import Delivery
    from otel_mlflow._delivery.spool import Spool
    from tests.delivery.test_delivery import Rec, rec

    def refuse(record: Rec, attempt: int = 0) -> None:
        raise MlflowException(
            f"API request to https://svc:{URL_PASSWORD}@mlflow.example failed with error code "
            f"401 != 200. Response body: 'bad token Bearer {BEARER}'",
            error_code=UNAUTHENTICATED,
        )

    delivery = Delivery(refuse, spool=Spool(tmp_path / "spool", loads=Rec.from_json))
    with caplog.at_level(logging.DEBUG, logger="otel_mlflow"):
        delivery.submit(rec(1))
        delivery.flush(2)
        delivery.shutdown(1)
    text = logged(caplog)
    assert "refused the credentials" in text
    assert URL_PASSWORD not in text and BEARER not in text
