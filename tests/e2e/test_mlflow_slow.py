"""The app thread never waits on MLflow: ``invoke`` latency with MLflow slow (a 2 s-per-request
proxy in front of the real server) or down (nothing listening) stays within noise of MLflow up.

This guards blocking, not speed: medians are compared with a generous bound (1.5x + 20 ms), and
no single invoke may reach the proxy's 2 s delay. ``SimpleSpanProcessor`` is used on purpose:
it calls ``export()`` on the app's thread, the strictest case for the exporter.
MLflow's own HTTP retry settings are left at their defaults here (7 retries with backoff: a
refused connection hangs a write for minutes), and ``force_flush`` / ``shutdown`` must still
return within their own bounds.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from tests._support.delay_proxy import DelayProxy
from tests._support.mlflow_server import MlflowServer, free_port
from tests.e2e.test_outage import build_chain

N = 40


def measure(tracking_uri: str, spool_dir: Path, experiment: str) -> tuple[list[float], Any]:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    from otel_mlflow._export.exporter import MlflowSpanExporter
    from otel_mlflow._tracing.handler import OtelTracer

    exporter = MlflowSpanExporter(
        tracking_uri=tracking_uri, experiment_name=experiment, spool_dir=str(spool_dir),
        grace_seconds=0.0, shutdown_timeout_seconds=2.0,
    )
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = OtelTracer(tracer_provider=provider)
    chains = [build_chain(i) for i in range(N + 5)]
    for chain in chains[:5]:  # warm-up: imports, first spans
        chain.invoke({"q": "warm"}, config={"callbacks": [tracer]})
    times = []
    for i, chain in enumerate(chains[5:]):
        started = time.perf_counter()
        out = chain.invoke({"q": f"q{i}"}, config={"callbacks": [tracer]})
        times.append(time.perf_counter() - started)
        assert out == f"answer {i + 5}"
        time.sleep(0.01)  # let the workers run between invokes, as in a real service
    return times, (exporter, provider)


def test_invoke_latency_does_not_depend_on_mlflow(
    tmp_path: Path, mlflow_server: MlflowServer
) -> None:
    up, (exp_up, prov_up) = measure(mlflow_server.url, tmp_path / "up", "latency-up")
    with DelayProxy(mlflow_server.port, delay_seconds=2.0) as proxy:
        slow, (exp_slow, prov_slow) = measure(proxy.url, tmp_path / "slow", "latency-slow")
        started = time.monotonic()
        exp_slow.shutdown(2000)
        shutdown_slow = time.monotonic() - started
        assert proxy.requests > 0  # the exporter really talked to the slow MLflow
    down, (exp_down, prov_down) = measure(
        f"http://127.0.0.1:{free_port()}", tmp_path / "down", "latency-down"
    )
    # MLflow's client retries the refused connection for minutes (defaults kept): a flush
    # still returns at its own bound, saying not everything was written.
    started = time.monotonic()
    flushed_down = exp_down.force_flush(2000)
    flush_down = time.monotonic() - started
    started = time.monotonic()
    exp_down.shutdown(2000)
    shutdown_down = time.monotonic() - started
    assert exp_up.force_flush(60_000)
    exp_up.shutdown()

    m_up, m_slow, m_down = (statistics.median(x) for x in (up, slow, down))
    print(
        f"\ninvoke median ms: up {m_up * 1e3:.2f}, slow(2 s proxy) {m_slow * 1e3:.2f}, "
        f"down {m_down * 1e3:.2f}; max ms: up {max(up) * 1e3:.1f}, slow {max(slow) * 1e3:.1f}, "
        f"down {max(down) * 1e3:.1f}; "
        f"shutdown s: slow {shutdown_slow:.2f}, down {shutdown_down:.2f}; "
        f"flush s: down {flush_down:.2f}"
    )
    assert m_slow < 1.5 * m_up + 0.020
    assert m_down < 1.5 * m_up + 0.020
    # Never waited for a 2 s request or a retry: either would take 2 s or more. (A single invoke
    # has been seen at 1.07 s on a loaded 2-core CI machine: a pause that is not MLflow's.)
    assert max(slow) < 1.9 and max(down) < 1.9
    # shutdown drains within its bound even when MLflow is slow or gone
    assert shutdown_slow < 5.0 and shutdown_down < 5.0  # 2 s bound + thread joins
    assert flushed_down is False and flush_down < 5.0
    for provider in (prov_up, prov_slow, prov_down):
        provider.shutdown()
