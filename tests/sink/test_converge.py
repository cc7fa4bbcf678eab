"""The one-run-per-trace rule (``_sink/converge.py``): the pure rule, and that it converges.

The convergence test runs the rule against a model of the tracking server (a dict of runs where
every request is atomic, as each request is one committed transaction on the real server) over
every interleaving of 2 writers and many sampled interleavings of 3 and 4; the real-server tests
with concurrent processes are in ``tests/e2e/test_postgres_many_writers.py``.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator

import pytest

from otel_mlflow._sink.converge import same_part, surplus_runs

ROOT = "00f067aa0ba902b7"


@pytest.mark.parametrize(
    ("runs", "expected"),
    [
        ([], []),
        ([("b", "FINISHED", ROOT)], []),
        ([("b", "FINISHED", ROOT), ("a", "FINISHED", ROOT)], ["b"]),
        ([("c", "FAILED", ROOT), ("a", "FINISHED", ROOT), ("b", "KILLED", ROOT)], ["b", "c"]),
        # A RUNNING run may be about to finish and be kept by its writer: never deleted.
        ([("a", "RUNNING", ROOT), ("b", "FINISHED", ROOT)], []),
        ([("a", "RUNNING", ROOT), ("b", "FINISHED", ROOT), ("c", "FINISHED", ROOT)], ["c"]),
        # Another part of a distributed trace (another root) and legacy runs are not duplicates.
        ([("a", "FINISHED", "1111111111111111"), ("b", "FINISHED", ROOT)], []),
        ([("a", "FINISHED", None), ("b", "FINISHED", ROOT)], []),
    ],
)
def test_surplus_runs_keeps_the_smallest_terminal_run_of_the_same_part(
    runs: list[tuple[str, str, str | None]], expected: list[str]
) -> None:
    assert surplus_runs(runs, ROOT) == expected


class _Run:
    def __init__(self, tags: dict[str, str]) -> None:
        self.data = type("Data", (), {"tags": tags})()


def test_same_part_matches_the_root_or_a_legacy_run_without_the_tag() -> None:
    assert same_part(_Run({"otel.root_span_id": ROOT}), ROOT)
    assert same_part(_Run({}), ROOT)
    assert not same_part(_Run({"otel.root_span_id": "1111111111111111"}), ROOT)


def _writer(store: dict[str, dict[str, object]], run_id: str) -> Iterator[None]:
    """One writer's requests against the model server, one ``yield`` between requests."""
    store[run_id] = {"status": "RUNNING", "deleted": False}  # create_run (+ log_batch, uploads)
    yield
    if store[run_id]["deleted"]:  # the update of a deleted run fails: the writer stops
        return
    store[run_id]["status"] = "FINISHED"  # update_run to a terminal status
    yield
    seen = [(r, str(v["status"]), ROOT) for r, v in store.items() if not v["deleted"]]  # search
    yield
    for loser in surplus_runs(seen, ROOT):
        store[loser]["deleted"] = True  # delete_run: idempotent
        yield


def _run(schedule: list[int], writers: int) -> dict[str, dict[str, object]]:
    store: dict[str, dict[str, object]] = {}
    # Server-made run ids in no particular order relative to the writers.
    ids = [f"{(w * 7919) % 97:02d}-{w}" for w in range(writers)]
    live = {w: _writer(store, ids[w]) for w in range(writers)}
    for w in itertools.chain(schedule, itertools.cycle(range(writers))):
        if not live:
            break
        if w in live:
            try:
                next(live[w])
            except StopIteration:
                del live[w]
    return store


def _survivors(store: dict[str, dict[str, object]]) -> list[str]:
    return [r for r, v in store.items() if not v["deleted"] and v["status"] == "FINISHED"]


def test_every_interleaving_of_two_writers_leaves_exactly_one_finished_run() -> None:
    steps = 6
    for schedule in itertools.product(range(2), repeat=steps * 2):
        store = _run(list(schedule), 2)
        assert len(_survivors(store)) == 1, (schedule, store)


@pytest.mark.parametrize("writers", [3, 4])
def test_sampled_interleavings_of_more_writers_leave_exactly_one_finished_run(
    writers: int,
) -> None:
    rng = random.Random(writers)
    for _ in range(3000):
        schedule = [rng.randrange(writers) for _ in range(writers * 8)]
        store = _run(schedule, writers)
        survivors = _survivors(store)
        assert len(survivors) == 1, (schedule, store)
        assert all(v["status"] == "FINISHED" for v in store.values())  # nobody left half-written
