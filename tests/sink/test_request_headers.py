"""MLflow's request headers inside a write: the same headers, the Databricks probe asked once.

Real parts: MLflow's own header registry and providers (the Databricks one really probes this
process), a real ``RequestHeaderProvider`` subclass registered the way an entry-point plugin is,
and a real HTTP request to a local ``mlflow server`` through MLflow's ``http_request``. The only
wrapping is a call counter around the real Databricks provider's ``in_context`` (to count probes).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from mlflow.tracking.request_header import registry
from mlflow.tracking.request_header.abstract_request_header_provider import (
    RequestHeaderProvider,
)
from mlflow.tracking.request_header.databricks_request_header_provider import (
    DatabricksRequestHeaderProvider,
)

from otel_mlflow._sink import request_headers as H


class Rotating(RequestHeaderProvider):
    """A plugin whose header changes on every request (a rotating token, say)."""

    def __init__(self) -> None:
        self.calls = 0

    def in_context(self) -> bool:
        return True

    def request_headers(self) -> dict[str, str]:
        self.calls += 1
        return {"x-rotating": str(self.calls), "User-Agent": "plugin/1"}


@pytest.fixture
def probes() -> Iterator[list[int]]:
    """Counts the real Databricks provider's ``in_context`` calls; registers ``Rotating``."""
    assert H.install()
    (databricks,) = [p for p in registry._request_header_provider_registry
                     if type(p) is DatabricksRequestHeaderProvider]
    count = [0]
    real = databricks.in_context

    def counted() -> bool:
        count[0] += 1
        return real()

    databricks.in_context = counted
    plugin = Rotating()
    registry._request_header_provider_registry._registry.append(plugin)
    try:
        yield count
    finally:
        registry._request_header_provider_registry._registry.remove(plugin)
        del databricks.in_context


def resolve(extra: dict[str, str] | None = None) -> dict[str, str]:
    # Looked up at call time, as MLflow's http_request does.
    return registry.resolve_request_headers(extra)


def test_inside_a_write_the_headers_are_mlflows_own(probes: list[int]) -> None:
    outside = resolve({"x-extra": "1"})
    with H.cached_headers():
        inside = resolve({"x-extra": "1"})
    # Same providers in the same order; only the plugin's counter moved on.
    assert {k: v for k, v in inside.items() if k != "x-rotating"} == \
        {k: v for k, v in outside.items() if k != "x-rotating"}
    assert inside["User-Agent"].startswith("mlflow-python-client/")
    assert inside["User-Agent"].endswith(" plugin/1")  # joined the way MLflow joins them
    assert inside["x-extra"] == "1"
    assert int(inside["x-rotating"]) == int(outside["x-rotating"]) + 1


def test_the_databricks_probe_runs_once_inside_and_every_time_outside(
    probes: list[int],
) -> None:
    with H.cached_headers():
        for _ in range(20):
            resolve()
    assert probes[0] <= 1  # remembered for the process (0 when an earlier test asked already)
    for _ in range(5):
        resolve()
    assert probes[0] >= 5  # the app's own calls: MLflow's resolver, unchanged


def test_dynamic_plugin_headers_are_asked_on_every_call(probes: list[int]) -> None:
    with H.cached_headers():
        seen = {resolve()["x-rotating"] for _ in range(3)}
    assert len(seen) == 3


def test_only_the_writing_thread_takes_the_short_path(probes: list[int]) -> None:
    inside = threading.Event()
    done = threading.Event()

    def writer() -> None:
        with H.cached_headers():
            resolve()
            inside.set()
            done.wait(10)

    thread = threading.Thread(target=writer)
    thread.start()
    assert inside.wait(10)
    before = probes[0]
    resolve()  # another thread, while the writer is inside its block
    done.set()
    thread.join(10)
    assert probes[0] == before + 1


def test_a_real_request_through_mlflow_carries_the_headers(mlflow_server: Any) -> None:
    from mlflow.utils.rest_utils import MlflowHostCreds, http_request

    creds = MlflowHostCreds(mlflow_server.url)
    with H.cached_headers():
        response = http_request(creds, "/api/2.0/mlflow/experiments/get-by-name", "GET",
                                params={"experiment_name": "Default"}, max_retries=0)
    assert response.status_code == 200
    assert response.request.headers["User-Agent"].startswith("mlflow-python-client/")
