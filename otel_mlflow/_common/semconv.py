"""Attribute names, span names and values used on otel_mlflow spans.

Follows the OpenTelemetry GenAI semantic conventions (``gen_ai.*``, development status, as of
semantic-conventions 1.38) as plain string constants, so nothing here depends on the deprecated
enums of ``opentelemetry-semantic-conventions``. Keys of our own live under ``otel_mlflow.*``.

Every other module imports names from here; the tracer writes them, the exporter reads them.
"""

from __future__ import annotations

# --- GenAI semantic conventions -------------------------------------------------------------
GEN_AI_OPERATION_NAME = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_REQUEST_TEMPERATURE = "gen_ai.request.temperature"
GEN_AI_REQUEST_TOP_P = "gen_ai.request.top_p"
GEN_AI_REQUEST_TOP_K = "gen_ai.request.top_k"
GEN_AI_REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
GEN_AI_REQUEST_STOP_SEQUENCES = "gen_ai.request.stop_sequences"
GEN_AI_REQUEST_SEED = "gen_ai.request.seed"
GEN_AI_REQUEST_FREQUENCY_PENALTY = "gen_ai.request.frequency_penalty"
GEN_AI_REQUEST_PRESENCE_PENALTY = "gen_ai.request.presence_penalty"
GEN_AI_REQUEST_CHOICE_COUNT = "gen_ai.request.choice.count"
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
GEN_AI_RESPONSE_ID = "gen_ai.response.id"
GEN_AI_RESPONSE_FINISH_REASONS = "gen_ai.response.finish_reasons"
GEN_AI_USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS = "gen_ai.usage.cache_read.input_tokens"
GEN_AI_USAGE_REASONING_OUTPUT_TOKENS = "gen_ai.usage.reasoning.output_tokens"
GEN_AI_INPUT_MESSAGES = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES = "gen_ai.output.messages"
GEN_AI_SYSTEM_INSTRUCTIONS = "gen_ai.system_instructions"
GEN_AI_OUTPUT_TYPE = "gen_ai.output.type"
GEN_AI_TOOL_NAME = "gen_ai.tool.name"
GEN_AI_TOOL_DESCRIPTION = "gen_ai.tool.description"
GEN_AI_TOOL_TYPE = "gen_ai.tool.type"
GEN_AI_TOOL_CALL_ID = "gen_ai.tool.call.id"
GEN_AI_TOOL_CALL_ARGUMENTS = "gen_ai.tool.call.arguments"
GEN_AI_TOOL_CALL_RESULT = "gen_ai.tool.call.result"
GEN_AI_AGENT_NAME = "gen_ai.agent.name"
GEN_AI_AGENT_ID = "gen_ai.agent.id"
GEN_AI_CONVERSATION_ID = "gen_ai.conversation.id"
GEN_AI_DATA_SOURCE_ID = "gen_ai.data_source.id"
ERROR_TYPE = "error.type"

# gen_ai.operation.name values
OP_CHAT = "chat"
OP_TEXT_COMPLETION = "text_completion"
OP_EXECUTE_TOOL = "execute_tool"
OP_INVOKE_AGENT = "invoke_agent"
OP_INVOKE_WORKFLOW = "invoke_workflow"
OP_RETRIEVAL = "retrieval"
LLM_OPERATIONS = frozenset({OP_CHAT, OP_TEXT_COMPLETION})

# gen_ai.provider.name values (LangChain ``ls_provider`` -> semconv)
PROVIDER_GCP_VERTEX_AI = "gcp.vertex_ai"
PROVIDER_GCP_GEMINI = "gcp.gemini"
PROVIDER_BY_LS_PROVIDER: dict[str, str] = {
    "google_vertexai": PROVIDER_GCP_VERTEX_AI,
    "google_genai": PROVIDER_GCP_GEMINI,
    "openai": "openai",
    "azure": "azure.ai.openai",
    "anthropic": "anthropic",
    "bedrock": "aws.bedrock",
    "amazon_bedrock": "aws.bedrock",
    "mistral": "mistral_ai",
    "mistralai": "mistral_ai",
    "groq": "groq",
    "cohere": "cohere",
    "deepseek": "deepseek",
    "xai": "x_ai",
    "ollama": "ollama",
    "perplexity": "perplexity",
}

# --- otel_mlflow's own keys -----------------------------------------------------------------
OM = "otel_mlflow"
LC_RUN_ID = "otel_mlflow.langchain.run_id"
LC_PARENT_RUN_ID = "otel_mlflow.langchain.parent_run_id"
LC_RUN_TYPE = "otel_mlflow.langchain.run_type"  # chain | llm | chat_model | tool | retriever
LC_NAME = "otel_mlflow.langchain.name"
LC_TAGS = "otel_mlflow.langchain.tags"  # sequence of str
LC_METADATA = "otel_mlflow.langchain.metadata"  # JSON object (str)
ROOT = "otel_mlflow.root"  # True on the span of a LangChain root run
INPUT = "otel_mlflow.input"  # JSON (str): chain / tool / retriever input
OUTPUT = "otel_mlflow.output"  # JSON (str): chain / tool / retriever output
ERROR_MESSAGE = "otel_mlflow.error.message"  # str, content-gated
USAGE_TOTAL_TOKENS = "otel_mlflow.usage.total_tokens"  # total as the provider reported it
TTFT_MS = "otel_mlflow.ttft_ms"  # float: time to first streamed token
STREAMED = "otel_mlflow.streamed"  # bool
MLFLOW_RUN_ID = "otel_mlflow.mlflow.run_id"  # active fluent MLflow run at root start
MLFLOW_EXPERIMENT_ID = "otel_mlflow.mlflow.experiment_id"
MLFLOW_MODEL_ID = "otel_mlflow.mlflow.model_id"  # active LoggedModel (set_active_model) at root start
RUN_TIMEOUT_ERROR = "otel_mlflow.run_timeout"  # error.type for runs ended by the TTL sweeper

# Version identity and the app's users (root span; ``_tracing/version.py``)
CHAIN_VERSION = "otel_mlflow.chain.version"  # str: 12 hex of the description, or the override
CHAIN_DESCRIPTION = "otel_mlflow.chain.description"  # JSON (str): the canonical description
CHAIN_NAME = "otel_mlflow.chain.name"  # str: the root runnable's name
SESSION_ID = "session.id"  # OTel semconv (registry: session); MLflow reads it as the trace session
USER_ID = "user.id"  # OTel semconv (registry: user); MLflow reads it as the trace user
VERSION_METADATA_KEY = "otel_mlflow.version"  # LangChain metadata key overriding the version

# Span event names
EVENT_AGENT_ACTION = "gen_ai.agent.action"
EVENT_AGENT_FINISH = "gen_ai.agent.finish"
EVENT_RETRY = "otel_mlflow.retry"
EVENT_FIRST_TOKEN = "gen_ai.first_token"

# Run types
RUN_CHAIN = "chain"
RUN_LLM = "llm"
RUN_CHAT_MODEL = "chat_model"
RUN_TOOL = "tool"
RUN_RETRIEVER = "retriever"
RUN_EVICTED_ERROR = "otel_mlflow.run_evicted"  # error.type for runs ended by the open-run cap
GEN_AI_TOOL_TYPE_FUNCTION = "function"
AGENT_LOG = "otel_mlflow.agent.log"  # str, content-gated: an agent action's / finish's log text
RETRY_ATTEMPT = "otel_mlflow.retry.attempt"  # int, on EVENT_RETRY

# Thinking (reasoning) request settings, and Gemini response extras (``_tracing/gemini_mapping``)
REQUEST_THINKING_BUDGET = "otel_mlflow.request.thinking_budget"  # int: thinking token budget
REQUEST_THINKING_LEVEL = "otel_mlflow.request.thinking_level"  # str: e.g. low / high
REQUEST_INCLUDE_THOUGHTS = "otel_mlflow.request.include_thoughts"  # bool: thought summaries asked
GEMINI_GROUNDING_QUERIES = "otel_mlflow.gemini.grounding.web_search_queries"  # str[]
GEMINI_GROUNDING_SOURCES = "otel_mlflow.gemini.grounding.source_uris"  # str[]
GEMINI_SAFETY_RATINGS = "otel_mlflow.gemini.safety_ratings"  # str[]: CATEGORY:PROBABILITY
GEMINI_BLOCK_REASON = "otel_mlflow.gemini.block_reason"  # str: promptFeedback.blockReason
PROMPT_BLOCKED_ERROR = "otel_mlflow.prompt_blocked"  # error.type of a blocked prompt
