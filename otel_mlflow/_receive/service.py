"""``Receiver``: the span log, the feeder and the ``MlflowSpanExporter`` behind ``/v1/traces``.

The path of a request (``accept``): decode, check, append to the span log (fsynced), answer.
The feeder thread reads the log in order and hands the spans to an ``MlflowSpanExporter``, the
same pipeline an app process uses (buffer per trace, run schema, Traces link, spool, replay), so
one run holds the spans every process sent for a trace.

Pace: the feeder keeps at most ``max_traces_in_exporter`` traces in the exporter (buffered,
being written, queued for a writer) and pauses while the delivery circuit is open (MLflow
down). The backlog therefore waits on disk in the span log, memory stays flat, and delivery's
queue never overflows into its spool. The default (1,000) stays under delivery's queue bound
and half the exporter's ``max_buffered_traces``, so the exporter's back-pressure never starts.

A trace leaves the log (``SpanLog.release``) when its run is written, when MLflow rejects it
for good (delivery keeps it in its ``rejected/`` folder), or when the exporter discards it
(sampled out, ``run_mode=active`` without an active run, late spans of a written trace, a
conversion bug). Traces found in the log at start are written as retries (``attempt=1``), so
the writer looks them up by ``otel.trace_id`` first: one that was written just before a
``kill -9`` is not written twice.

Completion: the receiver's exporter treats only a span without any parent as a trace's root;
a span whose parent is remote (the first span of a process that joined the trace through
``traceparent``) waits like a LangChain root for that parent (see the exporter's completion
rules and ``docs/fleet.md``). The grace defaults to ``DEFAULT_RECEIVER_GRACE_SECONDS`` (6 s),
more than the 5 s the senders' ``BatchSpanProcessor`` may hold a span.

Drain (``close``, on SIGTERM): stop the feeder, write every complete trace the exporter holds
(no grace), wait for the writes until the timeout, close the log. Open traces, the unfed backlog
and whatever was not written by the timeout stay on disk (in the span log only: delivery is not
shut down, so it does not copy its queue into its spool) and are written by the next start; a
run cut off mid-write is completed then (the writer's lookup finds it RUNNING).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from otel_mlflow._common import faults as _faults
from otel_mlflow._common import settings as _config
from otel_mlflow._export.exporter import MlflowSpanExporter
from otel_mlflow._receive.convert import convert_request
from otel_mlflow._receive.durable import SpanLog
from otel_mlflow._receive.metrics import Counters

_logger = logging.getLogger(__name__)

LOG_DIR = "receiver"
DEFAULT_MAX_TRACES_IN_EXPORTER = 1_000
_PAUSE_SECONDS = 0.05


class Receiver:
    """Owns the span log, the exporter and the feeder thread; see the module doc."""

    def __init__(
        self,
        tracking_uri: str | None = None,
        experiment_name: str | None = None,
        *,
        spool_dir: str | None = None,
        max_backlog_bytes: int | None = None,
        grace_seconds: float | None = None,
        max_traces_in_exporter: int = DEFAULT_MAX_TRACES_IN_EXPORTER,
        segment_bytes: int | None = None,
        **exporter_kwargs: Any,
    ) -> None:
        from otel_mlflow._delivery.errors import ErrorKind, classify_error
        from otel_mlflow._delivery.spool_dir import make_private_dir, resolve_spool_dir
        from otel_mlflow._sink.runs import MlflowWriter

        self._classify = classify_error
        self._rejected_kind = ErrorKind.REJECTED
        self.counters = Counters()
        self.max_backlog_bytes = int(_pick(max_backlog_bytes, _config.env_int(
            _config.RECEIVER_MAX_BACKLOG_BYTES, _config.DEFAULT_RECEIVER_MAX_BACKLOG_BYTES)))
        grace = _pick(grace_seconds, _config.env_float(
            _config.GRACE_SECONDS, _config.DEFAULT_RECEIVER_GRACE_SECONDS))
        self.max_traces_in_exporter = max(1, int(max_traces_in_exporter))
        self._sink: Any = None
        # The log first: delivery may replay its spool (and so release traces) at once.
        base = resolve_spool_dir(spool_dir, _config.resolve_tracking_uri(tracking_uri))
        make_private_dir(base)
        log_kwargs = {} if segment_bytes is None else {"segment_bytes": segment_bytes}
        self.log = SpanLog(base / LOG_DIR, **log_kwargs)
        self._reloaded = set(self.log.reloaded)
        self._fed: set[int] = set()
        self._fed_lock = threading.Lock()
        self.exporter = MlflowSpanExporter(
            tracking_uri, experiment_name, spool_dir=str(base), grace_seconds=grace,
            write=self._write, on_discard=self._discarded, remote_parent_is_root=False,
            **exporter_kwargs,
        )
        # Never more than half the exporter's cap, so its back-pressure never starts.
        self.max_traces_in_exporter = max(1, min(
            self.max_traces_in_exporter, self.exporter.max_buffered_traces // 2))
        self._sink = MlflowWriter(
            self.exporter.tracking_uri, self.exporter.experiment_name, self.exporter.link_traces
        )
        if self._reloaded:
            _logger.warning(
                "otel_mlflow receiver: %d trace(s) found in the span log %s; writing them",
                len(self._reloaded), self.log.directory,
            )
        self._stop = threading.Event()
        self.draining = False
        self._feeder = threading.Thread(target=self._feed_main, name="otel_mlflow-receiver-feed",
                                        daemon=True)
        self._feeder.start()

    # --- the request path ----------------------------------------------------------------------
    def backlog_full(self) -> bool:
        return self.log.size_bytes() >= self.max_backlog_bytes

    def store(self, trace_ids: Iterable[int], payload: bytes, spans: int) -> None:
        """Append one request's spans to the log; on return they are on disk. Raises OSError."""
        self.log.append(trace_ids, payload)
        self.counters.add("spans_received_total", spans)

    # --- the feeder ----------------------------------------------------------------------------
    def _feed_main(self) -> None:
        while not self._stop.is_set():
            try:
                for record in self.log.read(self._stop):
                    self._wait_for_room()
                    if self._stop.is_set():
                        return
                    try:
                        self._feed(record.payload)
                    except Exception as exc:  # noqa: BLE001 - one bad record, not the feeder
                        _faults.report("receiver.feed", exc)
                return
            except Exception as exc:  # noqa: BLE001 - reading failed: start over (rare)
                _faults.report("receiver.feed", exc)
                self._stop.wait(1.0)

    def _wait_for_room(self) -> None:
        delivery = self.exporter.delivery
        while not self._stop.is_set():
            with self._fed_lock:
                room = len(self._fed) < self.max_traces_in_exporter
            if room and not delivery.circuit_open:
                return
            self._stop.wait(_PAUSE_SECONDS)

    def _feed(self, payload: bytes) -> None:
        request = ExportTraceServiceRequest.FromString(payload)
        converted = convert_request(request)
        spans = [s for s in converted.spans if not self.log.is_released(s.context.trace_id)]
        if not spans:
            return
        with self._fed_lock:
            self._fed.update(span.context.trace_id for span in spans)
        self.exporter.export(spans)

    # --- the exporter's ends -------------------------------------------------------------------
    def _write(self, record: Any, attempt: int = 0) -> None:
        """The exporter's sink: ``MlflowWriter.write``, then the trace leaves the log."""
        ids = [int(single.trace_id, 16) for single in record.traces]
        if attempt == 0 and any(trace_id in self._reloaded for trace_id in ids):
            attempt = 1  # it may have been written just before the restart: look it up first
        sink = self._sink
        if sink is None:  # a spool replay at start, before __init__ finished: retried
            raise ConnectionError("otel_mlflow receiver: writer not ready yet")
        try:
            sink.write(record, attempt=attempt)
        except Exception as exc:
            if self._classify(exc) is self._rejected_kind:
                self._release(ids)  # kept in delivery's rejected/ folder, never retried
            raise
        self.counters.add("traces_written_total", len(ids))
        self._release(ids)

    def _discarded(self, trace_id: int) -> None:
        self._release([trace_id])

    def _release(self, ids: list[int]) -> None:
        try:
            self.log.release(ids)
        except OSError as exc:
            _faults.report("receiver.release", exc)
        with self._fed_lock:
            self._fed.difference_update(ids)
        self._reloaded.difference_update(ids)

    # --- state ---------------------------------------------------------------------------------
    def gauges(self) -> dict[str, float]:
        values: dict[str, float] = dict(self.counters.snapshot()[0])
        stats = self.exporter.stats
        values["traces_sampled_out_total"] = stats.get("sampled_out", 0)
        values["late_spans_total"] = stats.get("late_spans", 0)
        values["traces_held"] = self.log.held_traces()
        with self._fed_lock:
            values["traces_in_exporter"] = len(self._fed)
        spool = self.exporter.delivery.spool
        values["traces_spooled"] = spool.pending() if spool is not None else 0
        values["backlog_bytes"] = self.log.size_bytes()
        return values

    def close(self, timeout_seconds: float = 30.0) -> None:
        """Drain (see the module doc); idempotent, never raises."""
        if self._stop.is_set():
            return
        self.draining = True
        deadline = time.monotonic() + max(timeout_seconds, 0.0)
        self._stop.set()
        try:
            self._feeder.join(max(0.0, min(5.0, deadline - time.monotonic())))
            # Delivery is not shut down: it would copy what it still queues into its own spool,
            # a second durable copy of traces the span log keeps anyway. What is not written by
            # the deadline is dropped from memory and written from the log by the next start.
            self.exporter.force_flush(int(max(0.0, deadline - time.monotonic()) * 1000))
        except Exception as exc:  # noqa: BLE001
            _faults.report("receiver.close", exc)
        finally:
            try:
                self.log.close()
            except OSError as exc:
                _faults.report("receiver.close", exc)


def _pick(value: Any, fallback: Any) -> Any:
    return fallback if value is None else value
