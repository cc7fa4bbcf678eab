"""Helpers for otel_mlflow's own background threads.

- :func:`suppress_instrumentation`: what every delivery thread does first, so an app
  instrumenting ``requests``/``urllib3`` gets no spans about otel_mlflow's own MLflow calls
  (which would feed back into the exporter).
- :func:`register_fork_hook`: restart a component's threads in a forked child.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable

from opentelemetry import context as otel_context

from otel_mlflow._common import faults as _faults


def suppress_instrumentation() -> None:
    """Attach the suppress keys to this thread's context (call once, at thread start)."""
    # Attached for the thread's lifetime and never detached: the thread exists only to talk
    # to MLflow, and none of that talk may become spans in the app's own pipelines.
    ctx = otel_context.set_value(otel_context._SUPPRESS_INSTRUMENTATION_KEY, True)
    ctx = otel_context.set_value(otel_context._SUPPRESS_HTTP_INSTRUMENTATION_KEY, True, ctx)
    otel_context.attach(ctx)


def register_fork_hook(restart: Callable[[], None], fault_name: str) -> None:
    """Call the bound method ``restart`` in a forked child (``os.register_at_fork``), through a
    weakref as the OTel SDK's ``BatchProcessor`` does: the hook never keeps its owner alive,
    and a fault in it is reported, never raised into the forking app."""
    if not hasattr(os, "register_at_fork"):
        return
    ref = weakref.WeakMethod(restart)  # type: ignore[arg-type]

    def _after_in_child() -> None:
        method = ref()
        if method is not None:
            try:
                method()
            except Exception as exc:  # noqa: BLE001 - never raise into the forking app
                _faults.report(fault_name, exc)

    os.register_at_fork(after_in_child=_after_in_child)
