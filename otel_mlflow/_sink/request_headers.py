"""MLflow's request headers, without the Databricks probe on every request of our writes.

Every MLflow REST call (``mlflow.utils.rest_utils.http_request``) starts with
``resolve_request_headers()``, which asks each registered header provider whether it is "in
context". MLflow's Databricks provider answers by trying to import ``dbruntime`` (and IPython,
pyspark) several times per call; outside Databricks those imports fail, and a failed import is
not cached, so each request pays the ``sys.path`` scan again: 0.43 ms of the 0.45 ms the call
takes here (``docs/performance.md``, "Request headers"), about a sixth of the client CPU of a
request, eight times per run-per-trace write.

``cached_headers()`` is a context manager the writer holds around one write. Inside it, on that
thread only, ``resolve_request_headers`` gives exactly what MLflow's would, provider by provider,
except that the Databricks provider's "not in context" answer is remembered for the process (a
process that is not on Databricks does not become one). Every other provider (MLflow's default
one, any plugin registered through the ``mlflow.request_header_provider`` entry point) is asked on
every call as before, so dynamic headers such as rotating tokens still work; inside Databricks
nothing is remembered.

Outside ``cached_headers()`` (every call the app itself makes, on any thread) the original
function runs unchanged: the replacement delegates to it. It is installed once, the first time a
writer is built, by assigning the module attribute that ``http_request`` imports at each call;
if MLflow's layout differs (another version), nothing is installed and every call keeps the
original path (debug log).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import Any

_logger = logging.getLogger(__name__)

_local = threading.local()
_install_lock = threading.Lock()
_installed = False
_original: Any = None
_databricks_absent: bool | None = None  # None: not asked yet in this process


@contextlib.contextmanager
def cached_headers() -> Iterator[None]:
    """Within this block, on this thread, MLflow's header resolution skips the repeated probe."""
    previous = getattr(_local, "on", False)
    _local.on = True
    try:
        yield
    finally:
        _local.on = previous


def install() -> bool:
    """Put the thread-scoped resolver in place (once per process); False when not possible."""
    global _installed, _original  # noqa: PLW0603 - one process-wide installation
    with _install_lock:
        if _installed:
            return True
        try:
            from mlflow.tracking.request_header import registry
            from mlflow.tracking.request_header.databricks_request_header_provider import (
                DatabricksRequestHeaderProvider,
            )
        except ImportError as exc:
            _logger.debug("otel_mlflow: MLflow request headers left as they are (%s)", exc)
            return False
        original = getattr(registry, "resolve_request_headers", None)
        providers = getattr(registry, "_request_header_provider_registry", None)
        if original is None or providers is None:
            _logger.debug("otel_mlflow: MLflow request headers left as they are (layout differs)")
            return False
        _original = original
        registry.resolve_request_headers = _make_resolver(original, providers,
                                                          DatabricksRequestHeaderProvider)
        _installed = True
        return True


def _make_resolver(original: Any, providers: Any, databricks: type) -> Any:
    def resolve_request_headers(request_headers: dict[str, str] | None = None) -> dict[str, str]:
        if not getattr(_local, "on", False):
            return original(request_headers)
        headers: dict[str, str] = {}
        for provider in providers:
            try:
                if type(provider) is databricks and _databricks_not_in_context(provider):
                    continue
                if provider.in_context():
                    for header, value in provider.request_headers().items():
                        headers[header] = (f"{headers[header]} {value}" if header in headers
                                           else value)
            except Exception as exc:  # noqa: BLE001 - as MLflow's own resolver does
                _logger.warning("Encountered unexpected error during resolving request headers: "
                                "%s", exc)
        if request_headers is not None:
            headers.update(request_headers)
        return headers

    resolve_request_headers.__wrapped__ = original  # type: ignore[attr-defined]
    resolve_request_headers.__doc__ = original.__doc__
    return resolve_request_headers


def _databricks_not_in_context(provider: Any) -> bool:
    """Whether MLflow's Databricks provider is out of context (asked once, remembered when so)."""
    global _databricks_absent  # noqa: PLW0603 - a process-wide fact, asked once
    if _databricks_absent is None:
        _databricks_absent = not provider.in_context()
    return _databricks_absent
