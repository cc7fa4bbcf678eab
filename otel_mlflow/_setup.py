"""``configure()``: one call that wires LangChain -> OpenTelemetry -> MLflow (and OTLP).

Usage::

    import otel_mlflow

    tracer = otel_mlflow.configure(experiment_name="my-app")  # + OTLP if OTEL_EXPORTER_OTLP_* set
    chain.invoke(inputs, config={"callbacks": [tracer]})
    otel_mlflow.flush()                                          # scripts: wait for MLflow

    otel_mlflow.configure(instrument=True)   # or: every LangChain run traced, no callbacks needed

What it does, in order:

1. Chooses the ``TracerProvider``: the ``tracer_provider`` argument > the global SDK provider when
   one is already set (e.g. by ``opentelemetry-instrument`` or the app's own setup) > a new SDK
   provider whose resource is ``service_name`` > ``OTEL_SERVICE_NAME`` >
   ``OTEL_RESOURCE_ATTRIBUTES`` > the SDK default. A new provider becomes the global one when
   ``set_global`` (default True) and no SDK provider is global yet. An existing provider's
   resource is never changed (a differing ``service_name`` is logged).
2. Adds ``BatchSpanProcessor(MlflowSpanExporter(tracking_uri, experiment_name, link_traces=...,
   **exporter_kwargs))`` unless the provider already has an ``MlflowSpanExporter`` (from an earlier
   call or from ``OTEL_TRACES_EXPORTER=mlflow``): calling ``configure()`` twice never writes a
   trace twice.
3. Adds ``BatchSpanProcessor(OTLPSpanExporter(...))`` (OTLP/HTTP protobuf; gRPC when
   ``OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL=grpc`` and its package is installed) when ``otlp=True``,
   or when ``otlp`` is None and ``otlp_endpoint``, ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or
   ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set; ``otlp=False`` never adds one. Skipped when the provider
   already has an OTLP exporter. ``otlp_endpoint`` is the traces URL
   (``http://collector:4318/v1/traces``; a bare ``http://host:port`` gets ``/v1/traces``).
   Headers, timeout, compression and TLS come from the standard ``OTEL_EXPORTER_OTLP_*`` variables.
4. Returns an ``OtelTracer(tracer_provider, capture_content=...)`` to pass in
   ``config={"callbacks": [tracer]}``; with ``instrument=True`` it is also registered for every
   LangChain run in the process (``otel_mlflow.instrumentation.LangChainInstrumentor``).

The same pipeline by hand, for apps that own their OpenTelemetry setup (equivalent; tested so)::

    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from otel_mlflow import MlflowSpanExporter, OtelTracer

    provider = TracerProvider(resource=Resource.create({"service.name": "my-app"}))
    provider.add_span_processor(BatchSpanProcessor(MlflowSpanExporter()))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))  # optional: any backend
    trace.set_tracer_provider(provider)
    tracer = OtelTracer(provider)

Coexistence with MLflow's own tracing (mlflow 3.17): ``mlflow.langchain.autolog()`` (also switched
on by a bare ``mlflow.autolog()``) adds MLflow's own LangChain callback, so with otel_mlflow every
run is traced twice; turn it off with ``mlflow.langchain.autolog(disable=True)`` or
``mlflow.autolog(exclude_flavors=["langchain"])`` (``configure`` logs a warning when it sees it on).
MLflow's tracing reads the same ``OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT`` variables and, while
``MLFLOW_ENABLE_OTLP_EXPORTER`` is true (its default), sends its own traces (``@mlflow.trace``,
other autologs) to that endpoint *instead of* the tracking server; set
``MLFLOW_ENABLE_OTLP_EXPORTER=false`` to keep them in MLflow while otel_mlflow forwards its spans
(or ``MLFLOW_TRACE_ENABLE_OTLP_DUAL_EXPORT=true`` for both). Leave
``MLFLOW_USE_DEFAULT_TRACER_PROVIDER`` at its default (true): false makes MLflow attach its span
processors to the global provider, which then also writes otel_mlflow's spans as extra traces.

Limits: ``configure`` is setup code and may raise for a wrong argument (an OTLP exporter asked for
explicitly whose package is missing raises ``ImportError``); an OTLP exporter requested only through
environment variables is skipped with a warning instead. The SDK shuts the provider down at
interpreter exit, which drains the MLflow exporter.
"""

from __future__ import annotations

import logging
import sys
import threading
import weakref
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from otel_mlflow._common import settings as _config
from otel_mlflow._common.settings import (
    DEFAULT_OTLP_PROTOCOL,
    MLFLOW_USE_DEFAULT_TRACER_PROVIDER,
    OTLP_ENDPOINT,
    OTLP_PROTOCOL,
    OTLP_TRACES_ENDPOINT,
    OTLP_TRACES_PROTOCOL,
)
from otel_mlflow._export.exporter import MlflowSpanExporter
from otel_mlflow._export.providers import remember_provider
from otel_mlflow._export.providers import exporters_of as _exporters
from otel_mlflow._tracing.handler import OtelTracer

_logger = logging.getLogger(__name__)

OTLP_TRACES_PATH = "/v1/traces"

_lock = threading.Lock()
# Tracers handed out per provider and content switch, so repeated calls return the same object.
_tracers: weakref.WeakKeyDictionary[TracerProvider, dict[bool | None, OtelTracer]] = (
    weakref.WeakKeyDictionary()
)


def configure(
    *,
    tracking_uri: str | None = None,
    experiment_name: str | None = None,
    service_name: str | None = None,
    tracer_provider: TracerProvider | None = None,
    otlp: bool | None = None,
    otlp_endpoint: str | None = None,
    capture_content: bool | None = None,
    link_traces: bool | None = None,
    set_global: bool = True,
    instrument: bool = False,
    **exporter_kwargs: Any,
) -> OtelTracer:
    """Build or extend a ``TracerProvider`` with the MLflow exporter (+ OTLP); see the module doc.

    ``tracking_uri``, ``experiment_name``, ``link_traces`` and ``exporter_kwargs`` go to
    ``MlflowSpanExporter`` (argument > ``MLFLOW_TRACKING_URI`` / ``MLFLOW_EXPERIMENT_NAME`` /
    ``OTEL_MLFLOW_*`` > default), ``capture_content`` to ``OtelTracer`` (argument >
    ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` > on). Thread-safe and idempotent.
    """
    with _lock:
        provider = _choose_provider(tracer_provider, service_name, set_global)
        existing = list(_exporters(provider))
        if not any(isinstance(e, MlflowSpanExporter) for e in existing):
            exporter = MlflowSpanExporter(
                tracking_uri, experiment_name, link_traces=link_traces, **exporter_kwargs
            )
            provider.add_span_processor(BatchSpanProcessor(exporter))
        elif tracking_uri or experiment_name or exporter_kwargs or link_traces is not None:
            _logger.info(
                "otel_mlflow: the tracer provider already has an MlflowSpanExporter; "
                "configure() keeps it and ignores the new exporter arguments"
            )
        if not any(_is_otlp_exporter(e) for e in existing):
            otlp_exporter = _otlp_exporter(otlp, otlp_endpoint)
            if otlp_exporter is not None:
                provider.add_span_processor(BatchSpanProcessor(otlp_exporter))
        # flush() force-flushes it too: a provider passed as ``tracer_provider`` (not the global
        # one) otherwise keeps spans in its BatchSpanProcessor queue until its schedule delay.
        remember_provider(provider)
        per_provider = _tracers.setdefault(provider, {})
        tracer = per_provider.get(capture_content)
        if tracer is None:
            tracer = OtelTracer(provider, capture_content=capture_content)
            per_provider[capture_content] = tracer
    _warn_about_mlflow_tracing()
    if instrument:
        from otel_mlflow.instrumentation import LangChainInstrumentor

        instrumentor = LangChainInstrumentor()
        if instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()
        instrumentor.instrument(tracer=tracer)
    return tracer


def _warn_about_mlflow_tracing() -> None:
    """Say so when MLflow's own LangChain tracing would trace every run a second time."""
    if _config.env_str(MLFLOW_USE_DEFAULT_TRACER_PROVIDER) is not None and not _config.env_bool(
        MLFLOW_USE_DEFAULT_TRACER_PROVIDER, True
    ):
        _logger.warning(
            "otel_mlflow: %s=false makes MLflow add its own span processors to the global tracer "
            "provider, so otel_mlflow's spans would also be written as separate MLflow traces; "
            "leave it unset (true) with otel_mlflow",
            MLFLOW_USE_DEFAULT_TRACER_PROVIDER,
        )
    if "mlflow" not in sys.modules:
        return
    try:
        from mlflow.utils.autologging_utils import autologging_is_disabled

        autolog_on = not autologging_is_disabled("langchain")
    except Exception:  # noqa: BLE001 - a private MLflow helper; the check is only advice
        return
    if autolog_on:
        _logger.warning(
            "otel_mlflow: mlflow.langchain.autolog() is on, so every LangChain run is traced twice "
            "(MLflow's trace and otel_mlflow's); turn it off with "
            "mlflow.langchain.autolog(disable=True) or "
            "mlflow.autolog(exclude_flavors=['langchain'])"
        )


def _choose_provider(
    given: TracerProvider | None, service_name: str | None, set_global: bool
) -> TracerProvider:
    if given is not None:
        _check_service_name(given, service_name)
        return given
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        _check_service_name(current, service_name)
        return current
    attributes = {SERVICE_NAME: service_name} if service_name else {}
    provider = TracerProvider(resource=Resource.create(attributes))
    if set_global:
        if _global_is_unset(current):
            trace.set_tracer_provider(provider)
        else:
            _logger.warning(
                "otel_mlflow: the global tracer provider is a %s, not the SDK's; configure() uses "
                "its own provider without replacing the global one",
                type(current).__name__,
            )
    return provider


def _global_is_unset(current: object) -> bool:
    return type(current).__name__ == "ProxyTracerProvider"


def _check_service_name(provider: TracerProvider, service_name: str | None) -> None:
    if service_name and provider.resource.attributes.get(SERVICE_NAME) != service_name:
        _logger.warning(
            "otel_mlflow: service_name=%r ignored: the existing tracer provider's resource says %r",
            service_name,
            provider.resource.attributes.get(SERVICE_NAME),
        )


def _is_otlp_exporter(exporter: SpanExporter) -> bool:
    cls = type(exporter)
    return cls.__name__ == "OTLPSpanExporter" and cls.__module__.startswith(
        "opentelemetry.exporter.otlp"
    )


def _otlp_exporter(otlp: bool | None, endpoint: str | None) -> SpanExporter | None:
    """The OTLP exporter ``configure`` adds, or None (see the module doc for the rule)."""
    from_env = (
        _config.env_str(OTLP_TRACES_ENDPOINT) is not None
        or _config.env_str(OTLP_ENDPOINT) is not None
    )
    if otlp is False or (otlp is None and endpoint is None and not from_env):
        return None
    explicit = otlp is True or endpoint is not None
    protocol = (
        _config.env_str(OTLP_TRACES_PROTOCOL)
        or _config.env_str(OTLP_PROTOCOL)
        or DEFAULT_OTLP_PROTOCOL
    ).lower()
    url = _traces_url(endpoint) if endpoint else None
    if protocol == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                OTLPSpanExporter as GrpcExporter,
            )
        except ImportError:
            _logger.warning(
                "otel_mlflow: OTLP protocol grpc asked for but "
                "opentelemetry-exporter-otlp-proto-grpc is not installed; using OTLP/HTTP protobuf"
            )
        else:
            return GrpcExporter(endpoint=endpoint) if endpoint else GrpcExporter()
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        if explicit:
            raise ImportError(
                "otel_mlflow.configure(otlp=True) needs opentelemetry-exporter-otlp-proto-http "
                "(pip install 'otel-mlflow[otlp]')"
            ) from None
        _logger.warning(
            "otel_mlflow: %s is set but opentelemetry-exporter-otlp-proto-http is not installed; "
            "spans go to MLflow only",
            OTLP_TRACES_ENDPOINT if _config.env_str(OTLP_TRACES_ENDPOINT) else OTLP_ENDPOINT,
        )
        return None
    return OTLPSpanExporter(endpoint=url) if url else OTLPSpanExporter()


def _traces_url(endpoint: str) -> str:
    """``http://host:4318`` -> ``http://host:4318/v1/traces``; a URL with a path is kept as is."""
    if urlsplit(endpoint).path in ("", "/"):
        return endpoint.rstrip("/") + OTLP_TRACES_PATH
    return endpoint
