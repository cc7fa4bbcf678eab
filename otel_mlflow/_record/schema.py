"""The run schema's names: every tag, param, metric, artifact and table column otel_mlflow writes.

The public contract described in ``docs/run-schema.md`` (what each name holds, and when). Only names
here: ``otel_mlflow._record.build`` computes the values, ``otel_mlflow._sink.runs`` writes
them.
"""

from __future__ import annotations

TAG_TRACE_ID = "otel.trace_id"
TAG_ROOT_SPAN_ID = "otel.root_span_id"  # with the trace id: which part of a trace a run holds
TAG_SERVICE_NAME = "otel.service.name"
TAG_STATUS = "otel_mlflow.status"
TAG_ERROR_TYPE = "otel_mlflow.error_type"
TAG_MODELS = "otel_mlflow.models"
TAG_PROVIDERS = "otel_mlflow.providers"
TAG_PARTIAL = "otel_mlflow.partial"
TAG_DROPPED_SPANS = "otel_mlflow.dropped_spans"
TAG_SAMPLE_RATIO = "otel_mlflow.sample_ratio"  # tail-sampling ratio the trace was kept under
TAG_TRACE_COUNT = "otel_mlflow.trace_count"  # active-run mode: traces written into the run
TAG_LC_RUN_ID = "otel_mlflow.langchain.run_id"  # the LangChain root run id (log_feedback)
TAG_LC_TAGS = "langchain.tags"
TAG_LC_METADATA_PREFIX = "langchain.metadata."
# Version identity (``_record/version.py``; docs/experiments.md "Version identity")
TAG_CHAIN_VERSION = "otel_mlflow.chain.version"
TAG_APP_VERSION = "otel_mlflow.app.version"  # the resource's service.version
TAG_MODEL_ID = "otel_mlflow.model_id"  # the chain version's MLflow LoggedModel
TAG_SESSION_ID = "otel_mlflow.session.id"
TAG_USER_ID = "otel_mlflow.user.id"
# MLflow's standard source tags (mlflow.utils.mlflow_tags), set by the writer as fluent runs get them
TAG_MLFLOW_SOURCE_NAME = "mlflow.source.name"
TAG_MLFLOW_SOURCE_TYPE = "mlflow.source.type"
TAG_MLFLOW_GIT_COMMIT = "mlflow.source.git.commit"
TAG_MLFLOW_USER = "mlflow.user"
TAG_LOGGED_ARTIFACTS = "mlflow.loggedArtifacts"  # mlflow.utils.mlflow_tags.MLFLOW_LOGGED_ARTIFACTS

PARAM_MODEL = "model"
PARAM_TEMPERATURE = "temperature"
PARAM_TOP_P = "top_p"
PARAM_TOP_K = "top_k"
PARAM_MAX_TOKENS = "max_tokens"
PARAM_PROMPT_PREFIX = "prompt."  # prompt.<name> = the template's 12-hex hash

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
M_COST = "cost.usd"  # only when at least one LLM call has a price (otel_mlflow._record.cost)
M_COST_INPUT = "cost.input_usd"
M_COST_OUTPUT = "cost.output_usd"
M_FEEDBACK_PREFIX = "feedback."  # feedback.<name>: mean of the trace's numeric feedback values
M_COST_USD = M_COST  # the name run_totals uses: summed into run.cost.usd

# Active-run mode: run totals, current as traces arrive (``otel_mlflow._record.run_totals``).
M_RUN_TRACES = "run.traces"
M_RUN_LLM_CALLS = "run.llm.calls"
M_RUN_TOKENS_INPUT = "run.tokens.input"
M_RUN_TOKENS_OUTPUT = "run.tokens.output"
M_RUN_TOKENS_TOTAL = "run.tokens.total"
M_RUN_TOKENS_REASONING = "run.tokens.reasoning"
M_RUN_TOKENS_CACHE_READ = "run.tokens.cache_read"
M_RUN_ERRORS = "run.errors"
M_RUN_LATENCY_P50 = "run.latency_ms.p50"
M_RUN_LATENCY_P95 = "run.latency_ms.p95"
M_RUN_TTFT_P50 = "run.ttft_ms.p50"
M_RUN_COST_USD = "run.cost.usd"

ARTIFACT_TABLE = "llm_calls.json"
ARTIFACT_TREE = "span_tree.json"
ARTIFACT_PROMPTS = "prompts.json"  # the chain's prompt templates (run-per-trace mode)
ARTIFACT_TREE_HTML = "span_tree.html"  # the waterfall page (one per run; the run's traces in active-run mode)
ARTIFACT_TREES_DIR = "span_trees"  # active-run mode: span_trees/<first trace id>.json per batch

TABLE_COLUMNS: tuple[str, ...] = (
    "request",  # first: MLflow's evaluation view groups by the first column
    "trace_id",
    "span_id",
    "name",
    "model",
    "input",
    "output",
    "reasoning",
    "error",
    "duration_ms",
    "ttft_ms",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cost_usd",
    "finish_reason",
)

STATUS_OK = "OK"
STATUS_ERROR = "ERROR"

# Written by the cost and feedback features (issue 10); read by ``otel-mlflow compare`` (with
# TAG_CHAIN_VERSION and TAG_MODEL_ID above).
M_COST_USD = "cost.usd"
M_COST_INPUT_USD = "cost.input_usd"
M_COST_OUTPUT_USD = "cost.output_usd"
M_FEEDBACK_PREFIX = "feedback."  # feedback.<name>: the mean of the values logged for the trace
