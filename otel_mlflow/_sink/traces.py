"""I/O: one finished trace into MLflow's Traces view, linked to its run.

``log_trace(client, experiment_id, run_id, otlp)`` takes the trace's spans as a serialized OTLP
``ExportTraceServiceRequest`` (``TraceRecord.otlp``), adds MLflow's reserved span attributes
(``otel_mlflow._record.traces_payload``: span types, structured inputs/outputs, token usage as
reported) and writes them where the client's tracking URI points:

* a tracking server (``http(s)://``): one ``POST /v1/traces`` (OTLP/HTTP protobuf, headers
  ``x-mlflow-experiment-id`` and ``x-mlflow-run-id``) sent with MLflow's own request helper, so
  ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD`` / ``MLFLOW_TRACKING_TOKEN`` and TLS
  settings apply exactly as for every other MLflow call;
* any other store (``sqlite:///``, ``postgresql://`` ...): the spans are converted the way the
  server's OTLP endpoint converts them (``Span.from_otel_proto``) and given to the store's
  ``log_spans``.

Empty ``otlp`` (a record built with the link switched off) is a no-op.

Linking the trace to the run, in priority order: (1) on a tracking server with
``link_explicitly=False`` (a writer's first attempt), the ``x-mlflow-run-id`` header of the same
``POST /v1/traces`` links it: one request per trace instead of two; (2) otherwise (retries,
replays, local stores, whose ``log_spans`` does not link) ``MlflowClient.link_traces_to_run`` links
it and raises on failure. The cost of (1): the server only logs a failed header link (the spans
are stored, the run is written, the link is missing) instead of failing the request, so such a
link is not retried. The server links in the same request right after storing the spans, so a
failure there needs the store to fail right after it accepted the spans.

Offline / air-gapped: when MLflow stores spans with a model name and token usage it prices them
from its model catalog, which it first tries to download (``MLFLOW_MODEL_CATALOG_URI``, a few
retries, failures cached for a day per provider). With the embedded store that happens in this
process, on a delivery worker, and can hold the first write up to ~30 s where downloads time out;
set ``MLFLOW_MODEL_CATALOG_URI=""`` to use the catalog bundled with MLflow instead (a tracking
server does the same on ingest, so set it there too).

Idempotent: MLflow derives the trace id from the OTel trace id (``tr-<32 hex>``) and merges spans
by id, and links are de-duplicated, so a replayed trace appears once. Raises on any failure (the
delivery layer retries); the one exception is a store that cannot hold traces at all (a plain
file store): that is reported once through ``otel_mlflow._common.faults`` and skipped, since no retry
can succeed. The HTTP request itself is not retried here (``max_retries=0``): retries, backoff
and spooling belong to ``otel_mlflow._delivery.workers``. Everything runs with OpenTelemetry
instrumentation suppressed, so an app that instruments ``requests`` / ``urllib3`` sees no spans
of otel_mlflow's own MLflow traffic.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from opentelemetry.instrumentation.utils import suppress_instrumentation

from otel_mlflow._common import faults as _faults
from otel_mlflow._record.traces_payload import MlflowTracePayload, prepare_for_mlflow

if TYPE_CHECKING:
    from mlflow import MlflowClient

_logger = logging.getLogger(__name__)

OTLP_TRACES_PATH = "/v1/traces"
EXPERIMENT_ID_HEADER = "x-mlflow-experiment-id"
RUN_ID_HEADER = "x-mlflow-run-id"
# MLflow's limit for one link_traces_to_run request.
_MAX_LINKS_PER_REQUEST = 100


def log_trace(
    client: MlflowClient,
    experiment_id: str,
    run_id: str,
    otlp: bytes,
    *,
    link_explicitly: bool = True,
) -> None:
    """Write one trace's spans to MLflow's Traces view and link the trace to ``run_id``.

    ``link_explicitly=False`` lets a tracking server link through the request header (see the
    module docstring); local stores always link explicitly. Raises on failure (network, HTTP
    status, store error, malformed payload) so the caller can retry; safe to call again with the
    same bytes.
    """
    if not otlp:
        return  # a record built without OTLP encoding (link switched off): nothing to show
    payload = prepare_for_mlflow(otlp)
    with suppress_instrumentation():
        store = client._tracking_client.store  # noqa: SLF001 - MlflowClient exposes no store getter
        if _is_plain_rest_store(store):
            _post_otlp(store.get_host_creds(), experiment_id, run_id, payload)
            linked = not link_explicitly  # the server linked on the x-mlflow-run-id header
        elif not _log_spans_to_store(store, experiment_id, payload):
            return
        else:
            linked = False
        ids = [] if linked else list(payload.mlflow_trace_ids)
        for start in range(0, len(ids), _MAX_LINKS_PER_REQUEST):
            client.link_traces_to_run(ids[start : start + _MAX_LINKS_PER_REQUEST], run_id)
    _logger.debug(
        "otel_mlflow: trace %s (%d spans) logged to experiment %s, linked to run %s",
        ",".join(payload.otel_trace_ids),
        payload.span_count,
        experiment_id,
        run_id,
    )


def _is_plain_rest_store(store: Any) -> bool:
    """An open-source tracking server; other REST stores (Databricks) keep their own log_spans."""
    from mlflow.store.tracking.rest_store import RestStore

    return type(store) is RestStore


def _post_otlp(
    host_creds: Any, experiment_id: str, run_id: str, payload: MlflowTracePayload
) -> None:
    from mlflow.utils.rest_utils import http_request, verify_rest_response

    response = http_request(
        host_creds=host_creds,
        endpoint=OTLP_TRACES_PATH,
        method="POST",
        data=payload.request.SerializeToString(),
        extra_headers={
            "Content-Type": "application/x-protobuf",
            EXPERIMENT_ID_HEADER: experiment_id,
            RUN_ID_HEADER: run_id,
        },
        max_retries=0,
    )
    verify_rest_response(response, OTLP_TRACES_PATH)


def _log_spans_to_store(store: Any, experiment_id: str, payload: MlflowTracePayload) -> bool:
    """Log spans into a local store; False when the store cannot hold traces (reported once)."""
    from mlflow.entities.span import Span

    spans = [
        Span.from_otel_proto(span, resource=resource_spans.resource)
        for resource_spans in payload.request.resource_spans
        for scope_spans in resource_spans.scope_spans
        for span in scope_spans.spans
    ]
    try:
        store.log_spans(experiment_id, spans)
    except NotImplementedError as exc:
        _faults.report(
            "mlflow_traces.unsupported_store",
            exc,
            f"the tracking store {type(store).__name__} cannot hold traces; runs are written, "
            "the Traces view link is skipped (set OTEL_MLFLOW_LINK_TRACES=false to silence this)",
        )
        return False
    return True
