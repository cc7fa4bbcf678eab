"""Finished spans of one trace -> ``TraceRecord``: the run schema, as pure data.

No MLflow import and no I/O here: the exporter hands the spans of one trace to
``build_record()``, the writer (``_mlflow_writer``) turns the record into MLflow calls, and the
spool stores it with ``to_json()`` / ``from_json()``.

Run schema (the public contract, also in ``docs/run-schema.md``)
----------------------------------------------------------------
Tags: ``otel.trace_id`` (32 hex), ``otel.service.name`` (resource), ``otel_mlflow.status``
(``OK``/``ERROR``), ``otel_mlflow.error_type`` (root's ``error.type`` when ERROR),
``otel_mlflow.models`` / ``otel_mlflow.providers`` (sorted, comma-joined), ``langchain.tags``
(root's LangChain tags, comma-joined), ``langchain.metadata.<key>`` (root's metadata),
``otel_mlflow.partial=true`` for a trace written before its root ended,
``otel_mlflow.dropped_spans`` when the per-trace span cap cut spans, and ``mlflow.loggedArtifacts``
exactly as ``MlflowClient.log_table`` sets it (so ``llm_calls.json`` shows as a table).

Params (run-per-trace mode only; MLflow params are immutable): ``model`` = the distinct request
models in first-use order, comma-joined; ``temperature``, ``top_p``, ``top_k``, ``max_tokens`` =
the value of the first LLM call (by start time) that set it.

Metrics: ``trace.duration_ms`` (first span start to last span end), ``llm.calls``,
``llm.duration_ms`` (sum), ``llm.duration_ms.max``, ``llm.ttft_ms`` (first streamed LLM call by
start time; absent when nothing streamed), ``tokens.input``, ``tokens.output``, ``tokens.total``
(sum of provider-reported totals; a call that reported none counts input + output),
``tokens.reasoning``, ``tokens.cache_read``, ``tool.calls``, ``retriever.calls``, ``spans``,
``errors`` (spans with status ERROR).

Artifacts: ``llm_calls.json`` (``log_table`` format ``{"columns": [...], "data": [[...]]}``, one
row per LLM call, columns ``TABLE_COLUMNS``) and ``span_tree.json`` (``{"trace_id": ...,
"spans": [root nodes]}``, each node: name, span_id, parent_id, kind, start_time/end_time ISO,
start_time_ns/end_time_ns, duration_ms, status, attributes, events, children).

Root and status rules, in priority order: the root is (1) an ended span without a parent or with
a remote parent, else (2) the earliest ended span carrying ``otel_mlflow.root=True``, else (3) the
earliest span (partial traces). ``otel_mlflow.status`` is the root's status; for a partial trace
without a root, ERROR when any span failed.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

from otel_mlflow import _attributes as A

# --- run schema names ------------------------------------------------------------------------
TAG_TRACE_ID = "otel.trace_id"
TAG_SERVICE_NAME = "otel.service.name"
TAG_STATUS = "otel_mlflow.status"
TAG_ERROR_TYPE = "otel_mlflow.error_type"
TAG_MODELS = "otel_mlflow.models"
TAG_PROVIDERS = "otel_mlflow.providers"
TAG_PARTIAL = "otel_mlflow.partial"
TAG_DROPPED_SPANS = "otel_mlflow.dropped_spans"
TAG_TRACE_COUNT = "otel_mlflow.trace_count"  # active-run mode: traces written into the run
TAG_LC_TAGS = "langchain.tags"
TAG_LC_METADATA_PREFIX = "langchain.metadata."
TAG_LOGGED_ARTIFACTS = "mlflow.loggedArtifacts"  # mlflow.utils.mlflow_tags.MLFLOW_LOGGED_ARTIFACTS

PARAM_MODEL = "model"
PARAM_TEMPERATURE = "temperature"
PARAM_TOP_P = "top_p"
PARAM_TOP_K = "top_k"
PARAM_MAX_TOKENS = "max_tokens"

M_TRACE_DURATION = "trace.duration_ms"
M_LLM_CALLS = "llm.calls"
M_LLM_DURATION = "llm.duration_ms"
M_LLM_DURATION_MAX = "llm.duration_ms.max"
M_LLM_TTFT = "llm.ttft_ms"
M_TOKENS_INPUT = "tokens.input"
M_TOKENS_OUTPUT = "tokens.output"
M_TOKENS_TOTAL = "tokens.total"
M_TOKENS_REASONING = "tokens.reasoning"
M_TOKENS_CACHE_READ = "tokens.cache_read"
M_TOOL_CALLS = "tool.calls"
M_RETRIEVER_CALLS = "retriever.calls"
M_SPANS = "spans"
M_ERRORS = "errors"

ARTIFACT_TABLE = "llm_calls.json"
ARTIFACT_TREE = "span_tree.json"
ARTIFACT_TREES_DIR = "span_trees"  # active-run mode: span_trees/<first trace id>.json per batch

TABLE_COLUMNS: tuple[str, ...] = (
    "trace_id",
    "span_id",
    "name",
    "model",
    "input",
    "output",
    "error",
    "duration_ms",
    "ttft_ms",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "finish_reason",
)

STATUS_OK = "OK"
STATUS_ERROR = "ERROR"

# MLflow limits: tag values 8000 chars, params 6000; keep well below both.
_MAX_TAG_CHARS = 5000
_MAX_PARAM_CHARS = 5000
_INVALID_KEY_CHARS = re.compile(r"[^\w\-. /:]")
_JSON_ATTRIBUTES = frozenset(
    {
        A.GEN_AI_INPUT_MESSAGES,
        A.GEN_AI_OUTPUT_MESSAGES,
        A.GEN_AI_SYSTEM_INSTRUCTIONS,
        A.INPUT,
        A.OUTPUT,
        A.LC_METADATA,
        A.GEN_AI_TOOL_CALL_ARGUMENTS,
        A.GEN_AI_TOOL_CALL_RESULT,
    }
)


@dataclass(frozen=True)
class Table:
    """An ``mlflow.log_table`` JSON table (pandas ``orient="split"``)."""

    columns: tuple[str, ...] = TABLE_COLUMNS
    rows: tuple[tuple[Any, ...], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"columns": list(self.columns), "data": [list(row) for row in self.rows]}


@dataclass(frozen=True)
class TraceRecord:
    """Everything one trace contributes to MLflow; immutable, JSON round-trippable.

    ``target_run_id`` set means active-run mode: the trace goes into that existing run. A record
    with ``members`` is a batch of active-run traces for one target run (``merge_batch``); its
    own ``trace_id`` is the first member's and its table is the members' rows in order.
    """

    trace_id: str
    run_name: str
    target_run_id: str | None
    experiment_id: str | None
    tags: Mapping[str, str]
    params: Mapping[str, str]
    metrics: Mapping[str, float]
    table: Table
    tree: Mapping[str, Any]
    otlp: bytes
    start_time_ms: int
    end_time_ms: int
    status: str
    partial: bool = False
    members: tuple[TraceRecord, ...] = field(default=())

    @property
    def traces(self) -> tuple[TraceRecord, ...]:
        """The single traces in this record (itself, or the members of a batch)."""
        return self.members or (self,)

    def to_json(self) -> str:
        return json.dumps(_record_to_dict(self), ensure_ascii=False, allow_nan=True)

    @classmethod
    def from_json(cls, text: str) -> TraceRecord:
        return _record_from_dict(json.loads(text))


def _record_to_dict(rec: TraceRecord) -> dict[str, Any]:
    return {
        "trace_id": rec.trace_id,
        "run_name": rec.run_name,
        "target_run_id": rec.target_run_id,
        "experiment_id": rec.experiment_id,
        "tags": dict(rec.tags),
        "params": dict(rec.params),
        "metrics": dict(rec.metrics),
        "table": rec.table.to_dict(),
        "tree": rec.tree,
        "otlp": base64.b64encode(rec.otlp).decode("ascii"),
        "start_time_ms": rec.start_time_ms,
        "end_time_ms": rec.end_time_ms,
        "status": rec.status,
        "partial": rec.partial,
        "members": [_record_to_dict(m) for m in rec.members],
    }


def _record_from_dict(data: Mapping[str, Any]) -> TraceRecord:
    table = data.get("table") or {}
    return TraceRecord(
        trace_id=str(data["trace_id"]),
        run_name=str(data.get("run_name", "")),
        target_run_id=data.get("target_run_id"),
        experiment_id=data.get("experiment_id"),
        tags={str(k): str(v) for k, v in (data.get("tags") or {}).items()},
        params={str(k): str(v) for k, v in (data.get("params") or {}).items()},
        metrics={str(k): float(v) for k, v in (data.get("metrics") or {}).items()},
        table=Table(
            columns=tuple(table.get("columns") or TABLE_COLUMNS),
            rows=tuple(tuple(row) for row in table.get("data") or ()),
        ),
        tree=data.get("tree") or {},
        otlp=base64.b64decode(data.get("otlp") or ""),
        start_time_ms=int(data.get("start_time_ms", 0)),
        end_time_ms=int(data.get("end_time_ms", 0)),
        status=str(data.get("status", STATUS_OK)),
        partial=bool(data.get("partial", False)),
        members=tuple(_record_from_dict(m) for m in data.get("members") or ()),
    )


# --- span helpers ----------------------------------------------------------------------------
def trace_id_hex(trace_id: int) -> str:
    return format(trace_id, "032x")


def span_id_hex(span_id: int) -> str:
    return format(span_id, "016x")


def is_trace_root(span: ReadableSpan) -> bool:
    """A span without a parent, or whose parent lives in another process (remote)."""
    parent = span.parent
    return parent is None or bool(parent.is_remote)


def is_langchain_root(span: ReadableSpan) -> bool:
    return bool((span.attributes or {}).get(A.ROOT))


def _attrs(span: ReadableSpan) -> Mapping[str, Any]:
    return span.attributes or {}


def _is_llm(span: ReadableSpan) -> bool:
    attrs = _attrs(span)
    if attrs.get(A.GEN_AI_OPERATION_NAME) in A.LLM_OPERATIONS:
        return True
    return attrs.get(A.LC_RUN_TYPE) in (A.RUN_LLM, A.RUN_CHAT_MODEL)


def _is_tool(span: ReadableSpan) -> bool:
    attrs = _attrs(span)
    return attrs.get(A.GEN_AI_OPERATION_NAME) == A.OP_EXECUTE_TOOL or (
        attrs.get(A.LC_RUN_TYPE) == A.RUN_TOOL
    )


def _is_retriever(span: ReadableSpan) -> bool:
    attrs = _attrs(span)
    return attrs.get(A.GEN_AI_OPERATION_NAME) == A.OP_RETRIEVAL or (
        attrs.get(A.LC_RUN_TYPE) == A.RUN_RETRIEVER
    )


def _is_error(span: ReadableSpan) -> bool:
    return span.status is not None and span.status.status_code == StatusCode.ERROR


def _start(span: ReadableSpan) -> int:
    return span.start_time or 0


def _end(span: ReadableSpan) -> int:
    return span.end_time or span.start_time or 0


def _duration_ms(span: ReadableSpan) -> float:
    return max(0, _end(span) - _start(span)) / 1e6


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    return None


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc).isoformat()


def choose_root(spans: Sequence[ReadableSpan]) -> ReadableSpan | None:
    """The root by the module docstring's priority order, or None for an empty list."""
    if not spans:
        return None
    ordered = sorted(spans, key=_start)
    for span in ordered:
        if is_trace_root(span):
            return span
    for span in ordered:
        if is_langchain_root(span):
            return span
    return ordered[0]


# --- readable text of GenAI message attributes -----------------------------------------------
def _part_text(part: Any) -> str:
    if not isinstance(part, Mapping):
        return part if isinstance(part, str) else json.dumps(part, ensure_ascii=False)
    ptype = part.get("type")
    if ptype == "text" or (ptype is None and "content" in part):
        content = part.get("content")
        return content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
    if ptype == "tool_call":
        args = part.get("arguments")
        args_text = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
        return f"tool_call {part.get('name', '')}({args_text})"
    if ptype == "tool_call_response":
        resp = part.get("response", part.get("result"))
        text = resp if isinstance(resp, str) else json.dumps(resp, ensure_ascii=False)
        return f"tool_result: {text}"
    return json.dumps(part, ensure_ascii=False)


def _message_text(message: Any) -> tuple[str, str]:
    if not isinstance(message, Mapping):
        return "", _part_text(message)
    parts = message.get("parts")
    if isinstance(parts, list):
        text = "\n".join(t for t in (_part_text(p) for p in parts) if t)
    elif "content" in message:
        text = _part_text({"type": "text", "content": message.get("content")})
    else:
        text = json.dumps(message, ensure_ascii=False)
    return str(message.get("role") or ""), text


def _load_json(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def messages_text(raw: Any, system: Any = None) -> str | None:
    """Readable text of a ``gen_ai.*.messages`` JSON attribute (plus system instructions).

    One message reads as its bare text; several read as ``role: text`` blocks. Unparseable
    content is returned as it is; None when there is nothing.
    """
    blocks: list[tuple[str, str]] = []
    sys_val = _load_json(system)
    if sys_val:
        items = sys_val if isinstance(sys_val, list) else [sys_val]
        blocks.append(("system", "\n".join(_part_text(p) for p in items)))
    msgs = _load_json(raw)
    if msgs is None and not blocks:
        return None
    if isinstance(msgs, list):
        blocks.extend(_message_text(m) for m in msgs)
    elif isinstance(msgs, str):
        blocks.append(("", msgs))
    elif msgs is not None:
        blocks.append(_message_text(msgs))
    if len(blocks) == 1:
        return blocks[0][1]
    return "\n\n".join(f"{role}: {text}" if role else text for role, text in blocks)


def _finish_reason(span: ReadableSpan) -> str | None:
    reasons = _attrs(span).get(A.GEN_AI_RESPONSE_FINISH_REASONS)
    if reasons is None:
        return None
    if isinstance(reasons, str):
        return reasons
    return ",".join(str(r) for r in reasons) or None


def _model(span: ReadableSpan) -> str | None:
    attrs = _attrs(span)
    model = attrs.get(A.GEN_AI_RESPONSE_MODEL) or attrs.get(A.GEN_AI_REQUEST_MODEL)
    return str(model) if model else None


def _error_text(span: ReadableSpan) -> str | None:
    if not _is_error(span):
        return None
    attrs = _attrs(span)
    etype = attrs.get(A.ERROR_TYPE)
    message = attrs.get(A.ERROR_MESSAGE) or (span.status.description if span.status else None)
    if etype and message:
        return f"{etype}: {message}"
    return str(etype or message or "error")


def _int_or_none(value: Any) -> int | None:
    number = _num(value)
    return None if number is None else int(number)


def table_row(span: ReadableSpan) -> tuple[Any, ...]:
    attrs = _attrs(span)
    ttft = _num(attrs.get(A.TTFT_MS))
    in_tok = _int_or_none(attrs.get(A.GEN_AI_USAGE_INPUT_TOKENS))
    out_tok = _int_or_none(attrs.get(A.GEN_AI_USAGE_OUTPUT_TOKENS))
    return (
        trace_id_hex(span.context.trace_id),
        span_id_hex(span.context.span_id),
        span.name,
        _model(span),
        messages_text(attrs.get(A.GEN_AI_INPUT_MESSAGES), attrs.get(A.GEN_AI_SYSTEM_INSTRUCTIONS)),
        messages_text(attrs.get(A.GEN_AI_OUTPUT_MESSAGES)),
        _error_text(span),
        round(_duration_ms(span), 3),
        None if ttft is None else round(ttft, 3),
        in_tok,
        out_tok,
        _int_or_none(attrs.get(A.USAGE_TOTAL_TOKENS)),
        _finish_reason(span),
    )


# --- tree ------------------------------------------------------------------------------------
def _attr_value(key: str, value: Any) -> Any:
    if key in _JSON_ATTRIBUTES:
        return _load_json(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def _node(span: ReadableSpan) -> dict[str, Any]:
    attrs = _attrs(span)
    status = span.status
    return {
        "name": span.name,
        "span_id": span_id_hex(span.context.span_id),
        "parent_id": span_id_hex(span.parent.span_id) if span.parent is not None else None,
        "kind": span.kind.name if span.kind is not None else None,
        "start_time": _iso(_start(span)),
        "end_time": _iso(_end(span)) if span.end_time else None,
        "start_time_ns": _start(span),
        "end_time_ns": span.end_time,
        "duration_ms": round(_duration_ms(span), 3),
        "status": {
            "code": status.status_code.name if status is not None else "UNSET",
            "description": status.description if status is not None else None,
        },
        "attributes": {k: _attr_value(k, v) for k, v in attrs.items()},
        "events": [
            {
                "name": ev.name,
                "time": _iso(ev.timestamp),
                "time_ns": ev.timestamp,
                "attributes": {k: _attr_value(k, v) for k, v in (ev.attributes or {}).items()},
            }
            for ev in span.events
        ],
        "children": [],
    }


def build_tree(spans: Sequence[ReadableSpan]) -> list[dict[str, Any]]:
    """Nested span dicts; a span whose parent is not in the trace becomes a top-level node."""
    ordered = sorted(spans, key=_start)
    nodes = {span.context.span_id: _node(span) for span in ordered}
    roots: list[dict[str, Any]] = []
    for span in ordered:
        node = nodes[span.context.span_id]
        parent = span.parent
        if parent is not None and parent.span_id in nodes and parent.span_id != span.context.span_id:
            nodes[parent.span_id]["children"].append(node)
        else:
            roots.append(node)
    return roots


# --- tags / params / metrics -----------------------------------------------------------------
def _cap(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 20] + "...[truncated]"


def tag_key(key: str) -> str:
    """An MLflow-valid tag key (letters, digits, ``_ - . / : space``)."""
    return _INVALID_KEY_CHARS.sub("_", key)[:250] or "_"


def _root_tags(root: ReadableSpan | None) -> dict[str, str]:
    if root is None:
        return {}
    attrs = _attrs(root)
    tags: dict[str, str] = {}
    lc_tags = attrs.get(A.LC_TAGS)
    if lc_tags:
        values = [lc_tags] if isinstance(lc_tags, str) else list(lc_tags)
        tags[TAG_LC_TAGS] = _cap(",".join(str(v) for v in values), _MAX_TAG_CHARS)
    metadata = _load_json(attrs.get(A.LC_METADATA))
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
        attrs = _attrs(span)
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
    start = min(_start(s) for s in spans)
    end = max(_end(s) for s in spans)
    durations = [_duration_ms(s) for s in llm_spans]
    sums = {M_TOKENS_INPUT: 0.0, M_TOKENS_OUTPUT: 0.0, M_TOKENS_TOTAL: 0.0,
            M_TOKENS_REASONING: 0.0, M_TOKENS_CACHE_READ: 0.0}
    ttft: float | None = None
    for span in llm_spans:
        attrs = _attrs(span)
        in_tok = _num(attrs.get(A.GEN_AI_USAGE_INPUT_TOKENS)) or 0.0
        out_tok = _num(attrs.get(A.GEN_AI_USAGE_OUTPUT_TOKENS)) or 0.0
        total = _num(attrs.get(A.USAGE_TOTAL_TOKENS))
        sums[M_TOKENS_INPUT] += in_tok
        sums[M_TOKENS_OUTPUT] += out_tok
        # Reported totals win (Gemini's includes thinking tokens); never recompute them.
        sums[M_TOKENS_TOTAL] += total if total is not None else in_tok + out_tok
        sums[M_TOKENS_REASONING] += _num(attrs.get(A.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS)) or 0.0
        sums[M_TOKENS_CACHE_READ] += (
            _num(attrs.get(A.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS)) or 0.0
        )
        if ttft is None:
            ttft = _num(attrs.get(A.TTFT_MS))
    metrics: dict[str, float] = {
        M_TRACE_DURATION: round(max(0, end - start) / 1e6, 3),
        M_LLM_CALLS: float(len(llm_spans)),
        M_LLM_DURATION: round(sum(durations), 3),
        M_LLM_DURATION_MAX: round(max(durations, default=0.0), 3),
        **sums,
        M_TOOL_CALLS: float(sum(1 for s in spans if _is_tool(s))),
        M_RETRIEVER_CALLS: float(sum(1 for s in spans if _is_retriever(s))),
        M_SPANS: float(len(spans)),
        M_ERRORS: float(sum(1 for s in spans if _is_error(s))),
    }
    if ttft is not None:
        metrics[M_LLM_TTFT] = round(ttft, 3)
    return metrics


def _joined(values: Sequence[Any]) -> str:
    return ",".join(sorted({str(v) for v in values if v}))


def encode_otlp(spans: Sequence[ReadableSpan]) -> bytes:
    """The spans as a serialized OTLP ``ExportTraceServiceRequest``."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    return bytes(encode_spans(spans).SerializeToString())


def build_record(
    spans: Sequence[ReadableSpan],
    *,
    partial: bool = False,
    dropped_spans: int = 0,
    encode: bool = True,
) -> TraceRecord:
    """Convert the finished spans of ONE trace (non-empty) into a ``TraceRecord``.

    ``partial`` marks a trace written before its root ended (timeout, buffer overflow, shutdown).
    ``encode=False`` skips the OTLP encoding (when the Traces-view link is off).
    """
    if not spans:
        raise ValueError("build_record needs at least one span")
    ordered = sorted(spans, key=_start)
    root = choose_root(ordered)
    assert root is not None
    llm_spans = [s for s in ordered if _is_llm(s)]
    root_attrs = _attrs(root)
    # The active MLflow run is captured on the LangChain root span (possibly below a web span).
    lc_root = next((s for s in ordered if is_langchain_root(s)), root)
    target = _attrs(lc_root).get(A.MLFLOW_RUN_ID) or root_attrs.get(A.MLFLOW_RUN_ID)
    experiment = _attrs(lc_root).get(A.MLFLOW_EXPERIMENT_ID) or root_attrs.get(
        A.MLFLOW_EXPERIMENT_ID
    )
    trace_id = trace_id_hex(root.context.trace_id)
    if _is_error(root) or (partial and not root.end_time and any(_is_error(s) for s in ordered)):
        status = STATUS_ERROR
    else:
        status = STATUS_OK
    resource_attrs = root.resource.attributes if root.resource is not None else {}
    tags: dict[str, str] = {
        TAG_TRACE_ID: trace_id,
        TAG_STATUS: status,
        TAG_LOGGED_ARTIFACTS: json.dumps([{"path": ARTIFACT_TABLE, "type": "table"}]),
    }
    service = resource_attrs.get("service.name")
    if service:
        tags[TAG_SERVICE_NAME] = _cap(str(service), _MAX_TAG_CHARS)
    if status == STATUS_ERROR:
        etype = root_attrs.get(A.ERROR_TYPE) or next(
            (_attrs(s).get(A.ERROR_TYPE) for s in ordered if _is_error(s)), None
        )
        if etype:
            tags[TAG_ERROR_TYPE] = _cap(str(etype), _MAX_TAG_CHARS)
    models = _joined([_model(s) for s in llm_spans])
    if models:
        tags[TAG_MODELS] = _cap(models, _MAX_TAG_CHARS)
    providers = _joined([_attrs(s).get(A.GEN_AI_PROVIDER_NAME) for s in ordered])
    if providers:
        tags[TAG_PROVIDERS] = _cap(providers, _MAX_TAG_CHARS)
    tags.update(_root_tags(lc_root))
    if partial:
        tags[TAG_PARTIAL] = "true"
    if dropped_spans:
        tags[TAG_DROPPED_SPANS] = str(dropped_spans)
    return TraceRecord(
        trace_id=trace_id,
        run_name=_cap(root.name, 250),
        target_run_id=str(target) if target else None,
        experiment_id=str(experiment) if experiment else None,
        tags=tags,
        params=_params(llm_spans),
        metrics=_metrics(ordered, llm_spans),
        table=Table(rows=tuple(table_row(s) for s in llm_spans)),
        tree={"trace_id": trace_id, "spans": build_tree(ordered)},
        otlp=encode_otlp(ordered) if encode else b"",
        start_time_ms=min(_start(s) for s in ordered) // 1_000_000,
        end_time_ms=max(_end(s) for s in ordered) // 1_000_000,
        status=status,
        partial=partial,
    )


def merge_batch(records: Sequence[TraceRecord]) -> TraceRecord:
    """Several active-run records for the same target run as one batch record (one write).

    The batch's table is the members' rows in order; its metrics/params/tags are the first
    member's (the writer logs each member's metrics as its own step).
    """
    if not records:
        raise ValueError("merge_batch needs at least one record")
    flat = [m for rec in records for m in rec.traces]
    if len(flat) == 1:
        return flat[0]
    first = flat[0]
    return TraceRecord(
        trace_id=first.trace_id,
        run_name=first.run_name,
        target_run_id=first.target_run_id,
        experiment_id=first.experiment_id,
        tags=first.tags,
        params={},
        metrics=first.metrics,
        table=Table(rows=tuple(row for m in flat for row in m.table.rows)),
        tree={},
        otlp=b"",
        start_time_ms=min(m.start_time_ms for m in flat),
        end_time_ms=max(m.end_time_ms for m in flat),
        status=STATUS_ERROR if any(m.status == STATUS_ERROR for m in flat) else STATUS_OK,
        partial=any(m.partial for m in flat),
        members=tuple(flat),
    )
