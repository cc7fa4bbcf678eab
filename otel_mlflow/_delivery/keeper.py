"""``Keeper``: where a record that was not written goes (spool, ``rejected/``, or lost).

``Delivery``'s workers call it after a failure they do not retry:

- AUTH (401/403): ERROR log naming the credentials, circuit opened, record spooled;
- REJECTED (other 4xx): counted, ERROR log, record kept in ``rejected/`` (never retried
  automatically; ``otel-mlflow replay --include-rejected``);
- ERROR (anything else): reported, spooled, and its spool entry's unexpected-error backoff
  noted (``note_error``), so replay retries it later and moves it to ``rejected/`` after its
  attempts;

and ``spool`` for records spooled as they are (outage, shutdown, queue full): without a spool,
or when the spool write fails, the record is lost, with an ERROR log and the
``delivery.dropped`` fault counter.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from otel_mlflow._common import faults as _faults
from otel_mlflow._common.faults import short as _short
from otel_mlflow._delivery.backoff import ErrorBackoff
from otel_mlflow._delivery.circuit import Circuit
from otel_mlflow._delivery.errors import ErrorKind
from otel_mlflow._delivery.spool import REJECTED_DIR, Spool

_logger = logging.getLogger("otel_mlflow._delivery.workers")


class Keeper:
    """Spools, rejects or drops unwritten records, counting each in ``count(stat)``."""

    def __init__(
        self,
        spool: Spool | None,
        circuit: Circuit,
        errors: ErrorBackoff,
        count: Callable[[str], None],
    ) -> None:
        self._spool = spool
        self._circuit = circuit
        self._errors = errors
        self._count = count

    def note_error(self, name: str) -> int:
        """One unexpected-error failure of spool entry ``name``; its failures so far."""
        self._count("errors")
        return self._errors.note(name)

    def settle(self, record: Any, kind: ErrorKind, exc: BaseException) -> None:
        """A failure delivery does not retry (AUTH, REJECTED, ERROR); see the module doc."""
        trace_id = getattr(record, "trace_id", "?")
        if kind is ErrorKind.AUTH:
            _logger.error(
                "otel_mlflow: MLflow refused the credentials (%s); trace %s spooled, writes "
                "paused until MLflow accepts them (check MLFLOW_TRACKING_USERNAME/PASSWORD/TOKEN)",
                _short(exc), trace_id,
            )
            self._circuit.open(exc, log=False)
            self.spool(record, None)
        elif kind is ErrorKind.REJECTED:
            self._count("rejected")
            _faults.report("delivery.rejected", exc)
            if self._spool is None:
                _logger.error(
                    "otel_mlflow: MLflow rejected trace %s (%s); no spool, dropped",
                    trace_id, _short(exc),
                )
                return
            target = self._spool.put(record, folder=REJECTED_DIR)
            _logger.error(
                "otel_mlflow: MLflow rejected trace %s (%s); kept in %s",
                trace_id,
                _short(exc),
                self._spool.directory / REJECTED_DIR if target else "(nowhere: spool failed)",
            )
            self._count("spooled")
        else:
            _faults.report("delivery.write", exc)
            path = self.spool(record, None)
            if path is not None:
                self.note_error(path.name)

    def spool(self, record: Any, reason: str | None) -> Path | None:
        """Spool ``record`` as it is; None (and an ERROR log) when it is lost."""
        if self._spool is not None:
            path = self._spool.put(record)
            if path is not None:
                self._count("spooled")
                return path
        self._count("dropped")
        _faults.report("delivery.dropped", message=reason or "no spool for an unwritten trace")
        _logger.error(
            "otel_mlflow: trace %s could not be written or spooled (%s); it is lost",
            getattr(record, "trace_id", "?"), reason or "no spool",
        )
        return None
