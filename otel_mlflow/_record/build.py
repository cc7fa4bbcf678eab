"""Pure conversion: the finished spans of one trace -> a ``TraceRecord`` (tags, params, metrics).

The rules (also in ``docs/run-schema.md``):

Root and status, in priority order: the root is (1) an ended span without a parent or with a
remote parent, else (2) the earliest ended span carrying ``otel_mlflow.root=True``, else (3) the
earliest span (partial traces). ``otel_mlflow.status`` is the root's status; for a partial trace
without a root, ERROR when any span failed.

Params (run-per-trace mode only; MLflow params are immutable): ``model`` = the distinct request
models in first-use order, comma-joined; ``temperature``, ``top_p``, ``top_k``, ``max_tokens`` =
the value of the first LLM call (by start time) that set it.

Metrics: sums and counts over the spans; ``tokens.total`` sums the provider-reported totals (a
call that reported none counts input + output); ``llm.ttft_ms`` is the first streamed LLM call's.

Cost (``otel_mlflow._record.cost``): ``cost.usd`` / ``cost.input_usd`` / ``cost.output_usd`` sum
the priced LLM calls, only when at least one has a price; each row's ``cost_usd`` and each LLM
span's ``mlflow.llm.cost`` in the Traces payload carry the same per-call figures.

The table rows come from ``otel_mlflow._record.llm_table``, the tree from ``otel_mlflow._record.span_tree``.
No I/O, no MLflow import.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan

from otel_mlflow._common import semconv as A
from otel_mlflow._record.cost import Cost, PriceTable, Priced, token_usage
from otel_mlflow._record.llm_table import messages_text, model_of, request_text, table_row
from otel_mlflow._record.schema import (
    ARTIFACT_TABLE,
    M_COST,
    M_COST_INPUT,
    M_COST_OUTPUT,
    M_ERRORS,
    M_LLM_CALLS,
    M_LLM_DURATION,
    M_LLM_DURATION_MAX,
    M_LLM_TTFT,
    M_RETRIEVER_CALLS,
    M_SPANS,
    M_TOKENS_CACHE_READ,
    M_TOKENS_INPUT,
    M_TOKENS_OUTPUT,
    M_TOKENS_REASONING,
    M_TOKENS_TOTAL,
    M_TOOL_CALLS,
    M_TRACE_DURATION,
    PARAM_MAX_TOKENS,
    PARAM_MODEL,
    PARAM_TEMPERATURE,
    PARAM_TOP_K,
    PARAM_TOP_P,
    STATUS_ERROR,
    STATUS_OK,
    TAG_DROPPED_SPANS,
    TAG_ERROR_TYPE,
    TAG_LC_METADATA_PREFIX,
    TAG_LC_RUN_ID,
    TAG_LC_TAGS,
    TAG_LOGGED_ARTIFACTS,
    TAG_MODELS,
    TAG_PARTIAL,
    TAG_PROVIDERS,
    TAG_SAMPLE_RATIO,
    TAG_SERVICE_NAME,
    TAG_STATUS,
    TAG_ROOT_SPAN_ID,
    TAG_TRACE_ID,
)
from otel_mlflow._record.sampling import format_ratio
from otel_mlflow._record.span_facts import (
    span_attrs,
    choose_root,
    duration_ms,
    end_ns,
    is_error,
    is_langchain_root,
    is_llm,
    is_retriever,
    is_tool,
    load_json,
    num,
    span_id_hex,
    start_ns,
    trace_id_hex,
)
from otel_mlflow._record.span_tree import build_tree
from otel_mlflow._record.version import version_fields
from otel_mlflow._record.model import Table, TraceRecord
from otel_mlflow._record.traces_payload import add_costs

# MLflow limits: tag values 8000 chars, params 6000; keep well below both.
_MAX_TAG_CHARS = 5000
_MAX_PARAM_CHARS = 5000
_INVALID_KEY_CHARS = re.compile(r"[^\w\-. /:]")
_LOGGED_TABLE = json.dumps([{"path": ARTIFACT_TABLE, "type": "table"}])  # the same every trace


def _cap(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 20] + "...[truncated]"


def tag_key(key: str) -> str:
    """An MLflow-valid tag key (letters, digits, ``_ - . / : space``)."""
    return _INVALID_KEY_CHARS.sub("_", key)[:250] or "_"


def _root_tags(root: ReadableSpan | None) -> dict[str, str]:
    if root is None:
        return {}
    attrs = span_attrs(root)
    tags: dict[str, str] = {}
    lc_tags = attrs.get(A.LC_TAGS)
    if lc_tags:
        values = [lc_tags] if isinstance(lc_tags, str) else list(lc_tags)
        tags[TAG_LC_TAGS] = _cap(",".join(str(v) for v in values), _MAX_TAG_CHARS)
    metadata = load_json(attrs.get(A.LC_METADATA))
    if isinstance(metadata, Mapping):
        for key, value in metadata.items():
            text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            tags[tag_key(TAG_LC_METADATA_PREFIX + str(key))] = _cap(text, _MAX_TAG_CHARS)
    return tags


def _params(llm_spans: Sequence[ReadableSpan]) -> dict[str, str]:
    params: dict[str, str] = {}
    models: list[str] = []
    sources = (
        (PARAM_TEMPERATURE, A.GEN_AI_REQUEST_TEMPERATURE),
        (PARAM_TOP_P, A.GEN_AI_REQUEST_TOP_P),
        (PARAM_TOP_K, A.GEN_AI_REQUEST_TOP_K),
        (PARAM_MAX_TOKENS, A.GEN_AI_REQUEST_MAX_TOKENS),
    )
    for span in llm_spans:
        attrs = span_attrs(span)
        model = attrs.get(A.GEN_AI_REQUEST_MODEL)
        if model and str(model) not in models:
            models.append(str(model))
        for param, attr in sources:
            if param not in params and attrs.get(attr) is not None:
                params[param] = _cap(str(attrs[attr]), _MAX_PARAM_CHARS)
    if models:
        params[PARAM_MODEL] = _cap(",".join(models), _MAX_PARAM_CHARS)
    return params


def _metrics(
    spans: Sequence[ReadableSpan], llm_spans: Sequence[ReadableSpan]
) -> dict[str, float]:
    start = min(start_ns(s) for s in spans)
    end = max(end_ns(s) for s in spans)
    durations = [duration_ms(s) for s in llm_spans]
    sums = {M_TOKENS_INPUT: 0.0, M_TOKENS_OUTPUT: 0.0, M_TOKENS_TOTAL: 0.0,
            M_TOKENS_REASONING: 0.0, M_TOKENS_CACHE_READ: 0.0}
    ttft: float | None = None
    for span in llm_spans:
        attrs = span_attrs(span)
        in_tok = num(attrs.get(A.GEN_AI_USAGE_INPUT_TOKENS)) or 0.0
        out_tok = num(attrs.get(A.GEN_AI_USAGE_OUTPUT_TOKENS)) or 0.0
        total = num(attrs.get(A.USAGE_TOTAL_TOKENS))
        sums[M_TOKENS_INPUT] += in_tok
        sums[M_TOKENS_OUTPUT] += out_tok
        # Reported totals win (Gemini's includes thinking tokens); never recompute them.
        sums[M_TOKENS_TOTAL] += total if total is not None else in_tok + out_tok
        sums[M_TOKENS_REASONING] += num(attrs.get(A.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS)) or 0.0
        sums[M_TOKENS_CACHE_READ] += (
            num(attrs.get(A.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS)) or 0.0
        )
        if ttft is None:
            ttft = num(attrs.get(A.TTFT_MS))
    metrics: dict[str, float] = {
        M_TRACE_DURATION: round(max(0, end - start) / 1e6, 3),
        M_LLM_CALLS: float(len(llm_spans)),
        M_LLM_DURATION: round(sum(durations), 3),
        M_LLM_DURATION_MAX: round(max(durations, default=0.0), 3),
        **sums,
        M_TOOL_CALLS: float(sum(1 for s in spans if is_tool(s))),
        M_RETRIEVER_CALLS: float(sum(1 for s in spans if is_retriever(s))),
        M_SPANS: float(len(spans)),
        M_ERRORS: float(sum(1 for s in spans if is_error(s))),
    }
    if ttft is not None:
        metrics[M_LLM_TTFT] = round(ttft, 3)
    return metrics


def _joined(values: Sequence[Any]) -> str:
    return ",".join(sorted({str(v) for v in values if v}))


def encode_otlp(
    spans: Sequence[ReadableSpan],
    costs: Mapping[int, Priced | None] | None = None,
    *,
    root: ReadableSpan | None = None,
    lc_run_id: str | None = None,
) -> bytes:
    """The spans as a serialized OTLP ``ExportTraceServiceRequest``; ``costs`` (LLM span id ->
    its price or None) and ``lc_run_id`` become MLflow's cost attributes and trace tag
    (``otel_mlflow._record.traces_payload.add_costs``)."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    request = encode_spans(spans)
    if costs or lc_run_id:
        add_costs(
            request,
            {
                span_id.to_bytes(8, "big"): None if p is None else (
                    p.cost.input_usd, p.cost.output_usd)
                for span_id, p in (costs or {}).items()
            },
            root_span_id=root.context.span_id.to_bytes(8, "big") if root is not None else None,
            lc_run_id=lc_run_id,
        )
    return bytes(request.SerializeToString())


_default_prices: PriceTable | None = None


def default_prices() -> PriceTable:
    """genai-prices' table without overrides (records built without an exporter's table)."""
    global _default_prices
    if _default_prices is None:
        _default_prices = PriceTable()
    return _default_prices


def _costs(llm_spans: Sequence[ReadableSpan], prices: PriceTable) -> dict[int, Priced | None]:
    """LLM span id -> its price (None: no price), for the LLM spans that reported usage."""
    return {
        s.context.span_id: prices.cost_of_span(s)
        for s in llm_spans
        if token_usage(span_attrs(s)) is not None
    }


def _cost_metrics(costs: Mapping[int, Priced | None]) -> dict[str, float]:
    priced = [p.cost for p in costs.values() if p is not None]
    if not priced:
        return {}
    total = sum(priced, Cost(0.0, 0.0))
    return {M_COST: total.total_usd, M_COST_INPUT: total.input_usd,
            M_COST_OUTPUT: total.output_usd}


def build_record(
    spans: Sequence[ReadableSpan],
    *,
    partial: bool = False,
    dropped_spans: int = 0,
    encode: bool = True,
    prices: PriceTable | None = None,
    sample_ratio: float | None = None,
) -> TraceRecord:
    """Convert the finished spans of ONE trace (non-empty) into a ``TraceRecord``.

    ``sample_ratio`` (the exporter's tail-sampling ratio) becomes the ``otel_mlflow.sample_ratio``
    tag, so counts can be scaled back.

    ``partial`` marks a trace written before its root ended (timeout, buffer overflow, shutdown).
    ``encode=False`` skips the OTLP encoding (when the Traces-view link is off). ``prices`` is
    the exporter's price table (user overrides); default: genai-prices' alone.
    """
    if not spans:
        raise ValueError("build_record needs at least one span")
    ordered = sorted(spans, key=start_ns)
    root = choose_root(ordered)
    assert root is not None
    llm_spans = [s for s in ordered if is_llm(s)]
    root_attrs = span_attrs(root)
    # The active MLflow run is captured on the LangChain root span (possibly below a web span).
    lc_root = next((s for s in ordered if is_langchain_root(s)), root)
    target = span_attrs(lc_root).get(A.MLFLOW_RUN_ID) or root_attrs.get(A.MLFLOW_RUN_ID)
    experiment = span_attrs(lc_root).get(A.MLFLOW_EXPERIMENT_ID) or root_attrs.get(
        A.MLFLOW_EXPERIMENT_ID
    )
    trace_id = trace_id_hex(root.context.trace_id)
    if is_error(root) or (partial and not root.end_time and any(is_error(s) for s in ordered)):
        status = STATUS_ERROR
    else:
        status = STATUS_OK
    resource_attrs = root.resource.attributes if root.resource is not None else {}
    tags: dict[str, str] = {
        TAG_TRACE_ID: trace_id,
        TAG_ROOT_SPAN_ID: span_id_hex(root.context.span_id),
        TAG_STATUS: status,
        TAG_LOGGED_ARTIFACTS: _LOGGED_TABLE,
    }
    service = resource_attrs.get("service.name")
    if service:
        tags[TAG_SERVICE_NAME] = _cap(str(service), _MAX_TAG_CHARS)
    if status == STATUS_ERROR:
        etype = root_attrs.get(A.ERROR_TYPE) or next(
            (span_attrs(s).get(A.ERROR_TYPE) for s in ordered if is_error(s)), None
        )
        if etype:
            tags[TAG_ERROR_TYPE] = _cap(str(etype), _MAX_TAG_CHARS)
    models = _joined([model_of(s) for s in llm_spans])
    if models:
        tags[TAG_MODELS] = _cap(models, _MAX_TAG_CHARS)
    providers = _joined([span_attrs(s).get(A.GEN_AI_PROVIDER_NAME) for s in ordered])
    if providers:
        tags[TAG_PROVIDERS] = _cap(providers, _MAX_TAG_CHARS)
    tags.update(_root_tags(lc_root))
    version_tags, version_params, chain = version_fields(span_attrs(lc_root), resource_attrs)
    tags.update(version_tags)
    if partial:
        tags[TAG_PARTIAL] = "true"
    if dropped_spans:
        tags[TAG_DROPPED_SPANS] = str(dropped_spans)
    if sample_ratio is not None:
        tags[TAG_SAMPLE_RATIO] = format_ratio(sample_ratio)
    lc_attrs = span_attrs(lc_root)
    lc_run_id = lc_attrs.get(A.LC_RUN_ID) if lc_attrs.get(A.ROOT) else None
    if lc_run_id:
        tags[TAG_LC_RUN_ID] = str(lc_run_id)
    costs = _costs(llm_spans, prices or default_prices())
    request = request_text(lc_attrs.get(A.INPUT)) if lc_attrs.get(A.ROOT) else None
    if request is None and lc_root is root and is_llm(root):
        request = messages_text(root_attrs.get(A.GEN_AI_INPUT_MESSAGES))
    metrics = _metrics(ordered, llm_spans)
    metrics.update(_cost_metrics(costs))
    rows = []
    for span in llm_spans:
        priced = costs.get(span.context.span_id)
        rows.append(table_row(
            span, request=request, cost_usd=None if priced is None else priced.cost.total_usd
        ))
    return TraceRecord(
        trace_id=trace_id,
        run_name=_cap(root.name, 250),
        target_run_id=str(target) if target else None,
        experiment_id=str(experiment) if experiment else None,
        tags=tags,
        params={**_params(llm_spans), **version_params},
        metrics=metrics,
        table=Table(rows=tuple(rows)),
        tree={"trace_id": trace_id, "spans": build_tree(ordered)},
        otlp=encode_otlp(
            ordered, costs, root=root, lc_run_id=str(lc_run_id) if lc_run_id else None
        ) if encode else b"",
        start_time_ms=min(start_ns(s) for s in ordered) // 1_000_000,
        end_time_ms=max(end_ns(s) for s in ordered) // 1_000_000,
        status=status,
        partial=partial,
        chain=chain,
    )
