"""The receiver's span log on a real filesystem: what is appended is read back in order, what
is released is deleted, a torn tail is cut off, and a restart offers exactly what was held."""

from __future__ import annotations

import threading
from pathlib import Path

from otel_mlflow._receive.durable import SpanLog, encode_spans


def read_all(log: SpanLog, count: int) -> list[tuple[tuple[int, ...], bytes]]:
    """The first ``count`` records the reader yields (it waits for more after them)."""
    stop = threading.Event()
    out: list[tuple[tuple[int, ...], bytes]] = []
    for record in log.read(stop, poll_seconds=0.01):
        out.append((record.trace_ids, record.payload))
        if len(out) >= count:
            stop.set()
    return out


def segment_files(log: SpanLog) -> list[str]:
    return sorted(p.name for p in log.directory.glob("seg-*.log"))


def test_appended_records_are_read_back_in_order_with_their_trace_ids(tmp_path: Path) -> None:
    log = SpanLog(tmp_path)
    log.append([1, 2, 1], b"first")
    log.append([3], b"second")
    assert read_all(log, 2) == [((1, 2), b"first"), ((3,), b"second")]
    assert log.held_traces() == 3
    log.close()


def test_a_restart_offers_the_held_traces_again_and_not_the_released_ones(tmp_path: Path) -> None:
    log = SpanLog(tmp_path)
    log.append([1, 2], b"a")
    log.append([3], b"b")
    log.release([1, 3])
    log.close()
    again = SpanLog(tmp_path)
    assert again.reloaded == frozenset({2})
    assert again.is_released(1) and again.is_released(3) and not again.is_released(2)
    assert [ids for ids, _ in read_all(again, 2)] == [(1, 2), (3,)]  # the feeder skips 1 and 3
    again.close()


def test_a_torn_tail_is_cut_off_and_the_acknowledged_records_survive(tmp_path: Path) -> None:
    log = SpanLog(tmp_path)
    log.append([7], b"acknowledged")
    log.close()
    (path,) = tmp_path.glob("seg-*.log")
    good = path.stat().st_size
    with open(path, "ab") as handle:  # a kill -9 in the middle of the next append
        handle.write(encode_spans([8], b"never acknowledged")[:-5])
    again = SpanLog(tmp_path)
    assert path.stat().st_size == good
    assert again.reloaded == frozenset({7})
    assert read_all(again, 1) == [((7,), b"acknowledged")]
    again.close()


def test_a_corrupt_record_ends_what_is_read_from_its_segment(tmp_path: Path) -> None:
    log = SpanLog(tmp_path)
    log.append([1], b"one")
    log.append([2], b"two")
    log.close()
    (path,) = tmp_path.glob("seg-*.log")
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # flip a bit of the second record's payload: its crc no longer matches
    path.write_bytes(bytes(data))
    assert SpanLog(tmp_path).reloaded == frozenset({1})


def test_segments_roll_over_and_are_deleted_once_read_and_released(tmp_path: Path) -> None:
    log = SpanLog(tmp_path, segment_bytes=1024)
    for trace_id in range(1, 11):
        log.append([trace_id], b"x" * 300)
    assert len(segment_files(log)) >= 4
    assert log.size_bytes() > 3000
    read_all(log, 10)
    log.release(range(1, 10))
    # Every closed segment whose traces are released is gone; the one holding trace 10 stays.
    assert log.held_traces() == 1
    assert len(segment_files(log)) <= 2
    log.release([10])
    log.append([11], b"y" * 900)  # rolls: the segment of trace 10 closes and goes
    read_all(log, 1)
    assert log.held_traces() == 1
    assert len(segment_files(log)) <= 2
    log.close()


def test_a_released_trace_is_not_deleted_before_the_reader_passed_it(tmp_path: Path) -> None:
    log = SpanLog(tmp_path, segment_bytes=1024)
    log.append([1], b"x" * 900)
    log.append([2], b"x" * 900)  # rolls: segment 1 is closed, not read yet
    log.release([1])
    assert len(segment_files(log)) == 2
    log.close()


def test_late_spans_of_a_released_trace_hold_nothing(tmp_path: Path) -> None:
    log = SpanLog(tmp_path)
    log.append([5], b"a")
    log.release([5])
    log.append([5], b"late")
    assert log.held_traces() == 0
    log.close()


def test_concurrent_appends_are_all_durable_and_read_once(tmp_path: Path) -> None:
    log = SpanLog(tmp_path, segment_bytes=64 * 1024)
    errors: list[BaseException] = []

    def writer(base: int) -> None:
        try:
            for i in range(50):
                log.append([base + i], f"{base + i}".encode() * 20)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(1000 * n,)) for n in range(1, 5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    log.close()
    again = SpanLog(tmp_path)
    ids = [ids[0] for ids, _ in read_all(again, 200)]
    assert sorted(ids) == sorted(1000 * n + i for n in range(1, 5) for i in range(50))
    assert again.reloaded == frozenset(ids)
    again.close()
