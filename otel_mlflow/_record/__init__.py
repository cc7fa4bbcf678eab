"""Finished spans of one trace -> ``TraceRecord``: the run schema as pure data (one import point).

The exporter hands the spans of one trace to ``build_record()``, the writer
(``otel_mlflow._sink.runs``) turns the record into MLflow calls, and the spool stores it with
``to_json()`` / ``from_json()``. The work is split by job; this module re-exports their public
names so callers need one import:

- ``otel_mlflow._record.schema``: every tag, param, metric, artifact and table column name;
- ``otel_mlflow._record.model``: ``TraceRecord``, ``Table``, the JSON round trip, ``merge_batch``;
- ``otel_mlflow._record.span_facts``: ids as hex, root choice, span kinds and times;
- ``otel_mlflow._record.llm_table``: LLM spans -> ``llm_calls.json`` rows (readable message text);
- ``otel_mlflow._record.span_tree``: spans -> the nested ``span_tree.json`` nodes;
- ``otel_mlflow._record.version``: the root's version identity -> version tags, ``prompt.<name>``
  params, ``prompts.json`` and the LoggedModel facts (``TraceRecord.chain``);
- ``otel_mlflow._record.cost``: LLM token usage -> USD (genai-prices + user overrides);
- ``otel_mlflow._record.build: ``build_record`` (tags, params, metrics) and ``encode_otlp``;
- ``otel_mlflow._record.sampling``: ``keep_trace``, the tail-sampling decision.
- ``otel_mlflow._record.run_totals``: the bounded running summary behind the ``run.*`` metrics;
- ``otel_mlflow._record.span_tree_html``: span trees -> the ``span_tree.html`` waterfall page.

All of them are pure: no MLflow import, no I/O. The schema itself is documented in
``docs/run-schema.md``.
"""

from __future__ import annotations

from otel_mlflow._record.cost import Cost, PriceTable, normalize_prices
from otel_mlflow._record.llm_table import messages_text, request_text, table_row
from otel_mlflow._record.build import build_record, encode_otlp, tag_key
from otel_mlflow._record.schema import (
    ARTIFACT_PROMPTS,
    ARTIFACT_TABLE,
    ARTIFACT_TREE,
    ARTIFACT_TREES_DIR,
    M_COST,
    M_COST_INPUT,
    M_COST_OUTPUT,
    M_COST_USD,
    M_RUN_TRACES,
    M_RUN_LLM_CALLS,
    M_RUN_TOKENS_INPUT,
    M_RUN_TOKENS_OUTPUT,
    M_RUN_TOKENS_TOTAL,
    M_RUN_TOKENS_REASONING,
    M_RUN_TOKENS_CACHE_READ,
    M_RUN_ERRORS,
    M_RUN_LATENCY_P50,
    M_RUN_LATENCY_P95,
    M_RUN_TTFT_P50,
    M_RUN_COST_USD,
    ARTIFACT_TREE_HTML,
    M_ERRORS,
    M_FEEDBACK_PREFIX,
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
    PARAM_PROMPT_PREFIX,
    PARAM_TEMPERATURE,
    PARAM_TOP_K,
    PARAM_TOP_P,
    STATUS_ERROR,
    STATUS_OK,
    TABLE_COLUMNS,
    TAG_APP_VERSION,
    TAG_CHAIN_VERSION,
    TAG_DROPPED_SPANS,
    TAG_ERROR_TYPE,
    TAG_LC_METADATA_PREFIX,
    TAG_LC_RUN_ID,
    TAG_LC_TAGS,
    TAG_LOGGED_ARTIFACTS,
    TAG_MLFLOW_GIT_COMMIT,
    TAG_MLFLOW_SOURCE_NAME,
    TAG_MLFLOW_SOURCE_TYPE,
    TAG_MLFLOW_USER,
    TAG_MODEL_ID,
    TAG_MODELS,
    TAG_PARTIAL,
    TAG_PROVIDERS,
    TAG_SAMPLE_RATIO,
    TAG_SERVICE_NAME,
    TAG_SESSION_ID,
    TAG_STATUS,
    TAG_TRACE_COUNT,
    TAG_ROOT_SPAN_ID,
    TAG_TRACE_ID,
    TAG_USER_ID,
)
from otel_mlflow._record.span_facts import (
    choose_root,
    is_langchain_root,
    is_trace_root,
    span_id_hex,
    trace_id_hex,
)
from otel_mlflow._record.sampling import keep_trace
from otel_mlflow._record.span_tree import build_tree
from otel_mlflow._record.version import version_fields
from otel_mlflow._record.model import Table, TraceRecord, merge_batch

__all__ = [
    "ARTIFACT_TABLE", "ARTIFACT_TREE", "ARTIFACT_TREES_DIR",
    "M_COST", "M_COST_INPUT", "M_COST_OUTPUT", "M_FEEDBACK_PREFIX",
    "M_ERRORS", "M_LLM_CALLS", "M_LLM_DURATION", "M_LLM_DURATION_MAX", "M_LLM_TTFT",
    "M_RETRIEVER_CALLS", "M_SPANS", "M_TOKENS_CACHE_READ", "M_TOKENS_INPUT", "M_TOKENS_OUTPUT",
    "M_TOKENS_REASONING", "M_TOKENS_TOTAL", "M_TOOL_CALLS", "M_TRACE_DURATION",
    "PARAM_MAX_TOKENS", "PARAM_MODEL", "PARAM_TEMPERATURE", "PARAM_TOP_K", "PARAM_TOP_P",
    "STATUS_ERROR", "STATUS_OK", "TABLE_COLUMNS",
    "Cost", "PriceTable", "normalize_prices", "request_text",
    "TAG_DROPPED_SPANS", "TAG_ERROR_TYPE", "TAG_LC_METADATA_PREFIX", "TAG_LC_RUN_ID", "TAG_LC_TAGS",
    "TAG_LOGGED_ARTIFACTS", "TAG_MODELS", "TAG_PARTIAL", "TAG_PROVIDERS", "TAG_SAMPLE_RATIO",
    "TAG_SERVICE_NAME", "TAG_ROOT_SPAN_ID",
    "TAG_STATUS", "TAG_TRACE_COUNT", "TAG_TRACE_ID",
    # version identity (_record/version.py)
    "ARTIFACT_PROMPTS", "PARAM_PROMPT_PREFIX", "TAG_APP_VERSION", "TAG_CHAIN_VERSION",
    "TAG_MLFLOW_GIT_COMMIT", "TAG_MLFLOW_SOURCE_NAME", "TAG_MLFLOW_SOURCE_TYPE", "TAG_MLFLOW_USER",
    "TAG_MODEL_ID", "TAG_SESSION_ID", "TAG_USER_ID", "version_fields",
    "M_COST_USD", "M_RUN_TRACES", "M_RUN_LLM_CALLS", "M_RUN_TOKENS_INPUT", "M_RUN_TOKENS_OUTPUT", "M_RUN_TOKENS_TOTAL", "M_RUN_TOKENS_REASONING",
    "M_RUN_TOKENS_CACHE_READ", "M_RUN_ERRORS", "M_RUN_LATENCY_P50", "M_RUN_LATENCY_P95", "M_RUN_TTFT_P50", "M_RUN_COST_USD", "ARTIFACT_TREE_HTML",
    "Table", "TraceRecord", "build_record", "build_tree", "choose_root", "encode_otlp",
    "is_langchain_root", "is_trace_root", "keep_trace", "merge_batch", "messages_text", "span_id_hex",
    "table_row", "tag_key", "trace_id_hex",
]
