"""The exporter registry and module-level ``flush()``: which exporters and providers to drain.

The SDK never calls an exporter's ``force_flush``. ``BatchSpanProcessor.force_flush``
(opentelemetry-sdk 1.45) only exports the queued spans, and ``SimpleSpanProcessor.force_flush``
returns True without touching the exporter; so ``provider.force_flush()`` leaves the exporter's
buffers and delivery queue as they are. ``flush()`` first force-flushes the global SDK tracer
provider and every provider ``otel_mlflow.configure()`` built or extended (``remember_provider``),
then drains every live exporter of this process. A provider built by hand that is not the global
one is not known here: force-flush it yourself first.

This module imports neither the exporter nor ``_setup``: both register here (no import cycle).
"""

from __future__ import annotations

import sys
import threading
import time
import weakref
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from otel_mlflow._common import faults as _faults
from otel_mlflow._common.forksafe import new_lock_after_fork


class Drainable(Protocol):
    """What ``flush()`` needs of an exporter."""

    def drain(self, deadline: float) -> bool: ...


_live: weakref.WeakSet[Any] = weakref.WeakSet()
_configured: weakref.WeakSet[Any] = weakref.WeakSet()
_lock = threading.Lock()
new_lock_after_fork(sys.modules[__name__])


def register(exporter: Drainable) -> None:
    with _lock:
        _live.add(exporter)


def unregister(exporter: Drainable) -> None:
    with _lock:
        _live.discard(exporter)


def live_exporters() -> list[Any]:
    with _lock:
        return list(_live)


def remember_provider(provider: Any) -> None:
    """A provider ``configure()`` built or extended (held weakly)."""
    with _lock:
        _configured.add(provider)


def configured_providers() -> list[Any]:
    """The providers ``configure()`` built or extended and that are still alive."""
    with _lock:
        return list(_configured)


def exporters_of(provider: Any) -> Iterable[Any]:
    """Exporters behind the provider's Batch/Simple processors (the SDK keeps them private)."""
    active = getattr(provider, "_active_span_processor", None)
    for processor in tuple(getattr(active, "_span_processors", ())):
        exporter = getattr(processor, "span_exporter", None)
        if exporter is not None:
            yield exporter


def known_providers(exporter: Any = None) -> list[Any]:
    """The global SDK provider and the providers ``configure()`` built or extended, each once;
    with ``exporter``, only those whose span processors feed it."""
    providers: list[Any] = []
    try:
        from opentelemetry import trace

        current: Any = trace.get_tracer_provider()
        if hasattr(current, "force_flush") and hasattr(current, "add_span_processor"):
            providers.append(current)
    except Exception as exc:  # noqa: BLE001
        _faults.report("exporter.flush_provider", exc)
    try:
        for provider in configured_providers():
            if not any(provider is known for known in providers):
                providers.append(provider)
        if exporter is not None:
            providers = [
                p for p in providers if any(e is exporter for e in exporters_of(p))
            ]
    except Exception as exc:  # noqa: BLE001
        _faults.report("exporter.flush_provider", exc)
    return providers


def flush_providers(providers: Sequence[Any], deadline: float) -> bool:
    """Force-flush each provider's span processors (their queued spans reach the exporters)."""
    ok = True
    for provider in providers:
        try:
            left = max(0.0, deadline - time.monotonic())
            ok = bool(provider.force_flush(int(left * 1000))) and ok
        except Exception as exc:  # noqa: BLE001
            _faults.report("exporter.flush_provider", exc)
            ok = False
    return ok


def flush(timeout_seconds: float = 30.0) -> bool:
    """Drain everything to MLflow: the span processors of the global SDK provider and of every
    provider ``configure()`` built or extended, then every live exporter, then the feedback
    held for the traces this process wrote (``log_feedback``).

    True when every exporter wrote (or spooled nothing) within the time; never raises.
    """
    deadline = time.monotonic() + max(timeout_seconds, 0.0)
    ok = flush_providers(known_providers(), deadline)
    for exporter in live_exporters():
        try:
            ok = exporter.drain(deadline) and ok
        except Exception as exc:  # noqa: BLE001
            _faults.report("exporter.force_flush", exc)
            ok = False
    # Then the feedback (log_feedback) held for the traces just written.
    from otel_mlflow._delivery import feedback as _feedback

    return _feedback.drain(max(0.0, deadline - time.monotonic())) and ok
