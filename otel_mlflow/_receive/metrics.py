"""The receiver's counters and their ``GET /metrics`` text (Prometheus exposition format 0.0.4).

Why Prometheus text: it is what a fleet already scrapes (the OTel Collector's ``prometheus``
receiver, Prometheus itself) and it needs no client library. Every name starts with
``otel_mlflow_receiver_``; ``_total`` ones are counters since the process started, the others
gauges read at scrape time:

=======================================  ======  =============================================
name                                     type    meaning
=======================================  ======  =============================================
``requests_total{code="..."}``           counter  answered requests by HTTP status
``spans_received_total``                 counter  spans accepted (on disk, acknowledged)
``spans_rejected_total``                 counter  spans rejected (``partial_success``)
``traces_written_total``                 counter  traces written to MLflow by this process
``traces_sampled_out_total``             counter  complete traces dropped by tail sampling
``late_spans_total``                     counter  spans of a trace already written (not written)
``traces_held``                          gauge    traces on disk not yet written (the backlog)
``traces_in_exporter``                   gauge    of those, handed to the exporter
``traces_spooled``                       gauge    records waiting in the delivery spool
``backlog_bytes``                        gauge    bytes of the span log on disk
=======================================  ======  =============================================

Pure apart from the lock: ``render`` turns numbers into text.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping

PREFIX = "otel_mlflow_receiver_"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

COUNTERS = (
    "spans_received_total", "spans_rejected_total", "traces_written_total",
    "traces_sampled_out_total", "late_spans_total",
)
GAUGES = ("traces_held", "traces_in_exporter", "traces_spooled", "backlog_bytes")
_HELP = {
    "requests_total": "answered OTLP requests by HTTP status",
    "spans_received_total": "spans accepted (fsynced to the span log, acknowledged)",
    "spans_rejected_total": "spans rejected as invalid (partial_success)",
    "traces_written_total": "traces written to MLflow",
    "traces_sampled_out_total": "complete traces dropped by tail sampling",
    "late_spans_total": "spans that arrived after their trace was written",
    "traces_held": "traces on disk not yet written",
    "traces_in_exporter": "held traces handed to the exporter",
    "traces_spooled": "records waiting in the delivery spool",
    "backlog_bytes": "bytes of the span log on disk",
}


class Counters:
    """Thread-safe counters of one receiver."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: Counter[str] = Counter()
        self._codes: Counter[int] = Counter()

    def add(self, name: str, value: int = 1) -> None:
        with self._lock:
            self._values[name] += value

    def answered(self, code: int) -> None:
        with self._lock:
            self._codes[code] += 1

    def snapshot(self) -> tuple[dict[str, int], dict[int, int]]:
        with self._lock:
            return dict(self._values), dict(self._codes)


def render(values: Mapping[str, float], codes: Mapping[int, int]) -> str:
    """Prometheus text for the counters, gauges and per-status request counts."""
    lines = [
        f"# HELP {PREFIX}requests_total {_HELP['requests_total']}",
        f"# TYPE {PREFIX}requests_total counter",
    ]
    lines += [f'{PREFIX}requests_total{{code="{code}"}} {count}'
              for code, count in sorted(codes.items())]
    for name, kind in [*((n, "counter") for n in COUNTERS), *((n, "gauge") for n in GAUGES)]:
        lines.append(f"# HELP {PREFIX}{name} {_HELP[name]}")
        lines.append(f"# TYPE {PREFIX}{name} {kind}")
        lines.append(f"{PREFIX}{name} {_number(values.get(name, 0))}")
    return "\n".join(lines) + "\n"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def parse(text: str) -> dict[str, float]:
    """The samples of ``render``'s text by name (labels kept in the name); for tests and tools."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name.removeprefix(PREFIX)] = float(value)
    return out
