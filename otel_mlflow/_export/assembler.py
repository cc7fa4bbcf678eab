"""``Assembler``: the thread that turns complete traces into records and hands them to delivery.

It owns the exporter's lock (around the pure ``TraceBuffer``), the counters (``stats``) and one
daemon thread that wakes when the earliest trace is due (at least every 0.25 s), takes at most a
quarter of ``max_buffered_traces`` per pass, converts each trace with
``otel_mlflow._record.build_record`` and submits the records, batching the traces of one active
MLflow run (up to ``MAX_BATCH_TRACES``) into one record. Other threads assemble too: flush and
shutdown (``take_and_assemble``) and an exporting thread under back-pressure (``assemble``).

The seam for deciding per complete trace (tail sampling, issue 11): ``on_complete``, a list of
``(Ready) -> bool`` hooks run in order on every complete trace before it is converted; the first
that returns False drops the trace (counted in ``stats["skipped"]``); a hook that raises is
reported (``fault_counts()["exporter.on_complete"]``) and the trace is kept. Hooks run on
whichever thread assembles, never under the lock. The exporter's tail sampling is such a hook.

``on_discard(trace_id)`` (optional) hears of every complete trace that will not reach
``submit``: dropped by a hook, skipped by ``run_mode=active``, or failed to convert (the OTLP
receiver frees its span log with it). ``sample_ratio`` becomes each record's
``otel_mlflow.sample_ratio`` tag.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from otel_mlflow._common import faults as _faults
from otel_mlflow._common.settings import RUN_MODE_ACTIVE
from otel_mlflow._export.trace_buffer import Ready, TraceBuffer
from otel_mlflow._delivery import feedback as _feedback
from otel_mlflow._record import TAG_LC_RUN_ID, TraceRecord, build_record, merge_batch
from otel_mlflow._record.cost import PriceTable

MAX_BATCH_TRACES = 500
ASSEMBLER_SHARE = 4  # the assembler takes at most cap // 4 traces per pass
_STAT_KEYS = (
    "spans", "traces", "partial", "late_spans", "dropped_spans", "overflow", "early", "skipped",
    "failed", "sampled_out",
)

OnComplete = Callable[[Ready], bool]


class Assembler:
    """Complete traces -> records -> ``submit``; see the module doc."""

    def __init__(
        self,
        buffer: TraceBuffer,
        submit: Callable[[TraceRecord], None],
        *,
        run_mode: str,
        encode: bool,
        prices: PriceTable | None = None,
        sample_ratio: float | None = None,
        on_discard: Callable[[int], None] | None = None,
    ) -> None:
        self.buffer = buffer
        self._prices = prices
        self._sample_ratio = sample_ratio
        self._on_discard = on_discard
        self.on_complete: list[OnComplete] = []
        self._submit_one = submit
        self._run_mode = run_mode
        self._encode = encode
        self.stats: dict[str, int] = dict.fromkeys(_STAT_KEYS, 0)
        self._new_sync()
        self._stopped = False
        self._thread: threading.Thread | None = None

    def _new_sync(self) -> None:
        self.lock = threading.Lock()
        self.wake = threading.Condition(self.lock)
        self._idle = threading.Condition(threading.Lock())
        self._assembling = 0

    # --- the thread ------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._main, name="otel_mlflow-assembler", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """Stop the thread (the caller then drains with ``take_and_assemble``)."""
        with self.lock:
            self._stopped = True
            self.wake.notify()
        if self._thread is not None:
            self._thread.join(max(0.0, timeout))

    def restart_in_child(self) -> None:
        """After ``os.fork()``, in the child: new locks and thread, the parent's traces dropped
        (the parent writes them; their ids are remembered so late spans are not written)."""
        self.buffer.forget_all()
        self._new_sync()
        self.stats = dict.fromkeys(self.stats, 0)
        if not self._stopped:
            self.start()

    def _main(self) -> None:
        while True:
            try:
                with self.lock:
                    if self._stopped:
                        return
                    self.wake.wait(self.buffer.next_due(time.monotonic()))
                    if self._stopped:
                        return
                limit = max(1, self.buffer.max_buffered_traces // ASSEMBLER_SHARE)
                self.take_and_assemble(time.monotonic(), include_open=False, limit=limit)
            except Exception as exc:  # noqa: BLE001 - the assembler must survive any bug
                _faults.report("exporter.assembler", exc)
                time.sleep(0.25)

    # --- assembling ------------------------------------------------------------------------
    def take_and_assemble(
        self, now: float | None, *, include_open: bool, limit: int | None = None
    ) -> None:
        with self.lock:
            ready = self.buffer.take(now, include_open=include_open, limit=limit)
            if ready:
                self.hold()
        self.assemble(ready)

    def hold(self) -> None:
        """Under the lock, right after traces were taken: ``wait_assembled`` waits for them."""
        with self._idle:
            self._assembling += 1

    def assemble(self, ready: list[Ready] | tuple[Ready, ...]) -> None:
        """Convert taken traces to records and submit them; always releases them (and the
        ``hold``) from the buffer's count."""
        if not ready:
            return
        # Several threads assemble: counts are gathered here and added under the lock.
        counts = {"failed": 0, "traces": 0, "partial": 0, "dropped_spans": 0, "skipped": 0}
        discarded: list[int] = []
        try:
            records: list[TraceRecord] = []
            for item in ready:
                if not item.spans:
                    continue
                if self.on_complete and not self._keep(item):
                    counts["skipped"] += 1
                    discarded.append(item.trace_id)
                    continue
                try:
                    record = build_record(
                        item.spans,
                        partial=item.partial,
                        dropped_spans=item.dropped,
                        encode=self._encode,
                        prices=self._prices,
                        sample_ratio=self._sample_ratio,
                    )
                except Exception as exc:  # noqa: BLE001
                    counts["failed"] += 1
                    discarded.append(item.trace_id)
                    _faults.report("exporter.build_record", exc)
                    continue
                # Where log_feedback finds this LangChain root run's trace in this process.
                _feedback.note(record.tags.get(TAG_LC_RUN_ID), record.trace_id,
                               record.target_run_id)
                counts["traces"] += 1
                counts["partial"] += int(item.partial)
                counts["dropped_spans"] += item.dropped
                if record.target_run_id is None and self._run_mode == RUN_MODE_ACTIVE:
                    counts["skipped"] += 1
                    discarded.append(item.trace_id)
                    continue
                records.append(record)
            with self.lock:
                for key, value in counts.items():
                    self.stats[key] += value
            self._submit(records)
            self._discard(discarded)
        finally:
            with self.lock:
                self.buffer.release(len(ready))
            with self._idle:
                self._assembling -= 1
                self._idle.notify_all()

    def _discard(self, trace_ids: list[int]) -> None:
        if self._on_discard is None:
            return
        for trace_id in trace_ids:
            try:
                self._on_discard(trace_id)
            except Exception as exc:  # noqa: BLE001 - a callback bug never stops assembling
                _faults.report("exporter.on_discard", exc)

    def _keep(self, item: Ready) -> bool:
        for hook in self.on_complete:
            try:
                if not hook(item):
                    return False
            except Exception as exc:  # noqa: BLE001 - a hook's bug never loses the trace
                _faults.report("exporter.on_complete", exc)
        return True

    def _submit(self, records: list[TraceRecord]) -> None:
        by_run: dict[str, list[TraceRecord]] = {}
        for record in records:
            if record.target_run_id:
                by_run.setdefault(record.target_run_id, []).append(record)
            else:
                self._submit_one(record)
        for run_records in by_run.values():
            for start in range(0, len(run_records), MAX_BATCH_TRACES):
                self._submit_one(merge_batch(run_records[start : start + MAX_BATCH_TRACES]))

    def wait_assembled(self, deadline: float) -> bool:
        """True once no thread is assembling (every taken trace submitted) before ``deadline``."""
        with self._idle:
            while self._assembling > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(min(left, 0.1))
        return True
