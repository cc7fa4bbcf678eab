"""LangChain run payloads -> span name, operation, kind and GenAI attributes (pure, no I/O).

Chain classification, in priority order (``classify_chain``):

1. Skip (no span; children re-parent to the nearest kept ancestor): the ``model`` and ``tools``
   node wrappers that ``langchain.agents.create_agent`` puts around every model and tool call
   (metadata ``lc_agent_name`` present and ``langgraph_node`` equal to the run name). They carry
   only the graph state, which the agent span and the chat/tool children already show. Runs
   tagged ``langsmith:hidden`` are skipped too (LangGraph marks its bookkeeping so).
2. Agent -> ``invoke_agent {name}``: a ``create_agent`` graph (metadata ``lc_agent_name`` equal
   to the run name), a legacy ``AgentExecutor``, or any run whose metadata sets
   ``otel_mlflow.agent`` truthy.
3. Root chain (no parent run) -> ``invoke_workflow {name}``.
4. Any other chain -> its LangChain run name, no operation.

LLM request and response attributes (provider, parameters, usage, Gemini extras) are in
``llm_mapping`` (and ``gemini_mapping``); their functions are re-exported here.

Conversation id: metadata ``thread_id``, then ``session_id``, then ``conversation_id``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.trace import SpanKind

from otel_mlflow._common import semconv as A
from otel_mlflow._tracing.llm_mapping import (  # noqa: F401 - re-exported for the handler
    provider_name,
    request_attributes,
    response_attributes,
)
from otel_mlflow._tracing.content.serialize import Serializer

SKIP_TAG = "langsmith:hidden"
AGENT_METADATA_KEY = "otel_mlflow.agent"
_AGENT_NODE_NAMES = frozenset({"model", "tools"})
_CONVERSATION_KEYS = ("thread_id", "session_id", "conversation_id")

# Metadata that LangChain/LangGraph add to every run: either mapped to gen_ai.* attributes or
# bookkeeping with no value to a reader. Dropping them keeps each span's metadata JSON small.
_NOISE_METADATA_PREFIXES = ("ls_", "langgraph_checkpoint", "langgraph_path", "langgraph_triggers")
_NOISE_METADATA_KEYS = frozenset({"lc_versions", "checkpoint_ns", "__pregel_task_id"})
# Step tags LangChain adds to each child of a sequence or graph step.
_NOISE_TAG_PREFIXES = ("seq:step:", "graph:step:", "map:key:")


# LangChain compositions that pass their input to the first step and return the last step's
# output unchanged (no user code in between), so those objects can be serialized once.
_COMPOSITIONS = (
    "RunnableSequence", "RunnableParallel", "RunnableAssign", "RunnablePick",
    "RunnableWithFallbacks", "RunnableEach",
)


class ChainClass:
    """Result of ``classify_chain``: ``skip``, or a span name with operation and kind.

    ``compose``: the run is one of LangChain's own compositions (``_COMPOSITIONS``).
    Instances are shared between runs: never modified.
    """

    __slots__ = ("skip", "span_name", "operation", "kind", "agent_name", "compose")

    def __init__(
        self,
        skip: bool,
        span_name: str = "",
        operation: str | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        agent_name: str | None = None,
        name: str = "",
    ) -> None:
        self.skip = skip
        self.span_name = span_name
        self.operation = operation
        self.kind = kind
        self.agent_name = agent_name
        self.compose = name.startswith(_COMPOSITIONS)


SKIPPED = ChainClass(True)


def run_name(serialized: Mapping[str, Any] | None, kwargs: Mapping[str, Any], default: str) -> str:
    """LangChain's run name: ``name`` kwarg, then ``serialized["name"]``, then the id's tail."""
    name = kwargs.get("name")
    if name:
        return str(name)
    if serialized:
        name = serialized.get("name")
        if name:
            return str(name)
        ident = serialized.get("id")
        if isinstance(ident, list) and ident:
            return str(ident[-1])
    return default


def _agent(name: str) -> ChainClass:
    return ChainClass(False, "invoke_agent " + name, A.OP_INVOKE_AGENT, agent_name=name, name=name)


def classify_chain(
    name: str,
    metadata: Mapping[str, Any] | None,
    tags: Sequence[str] | None,
    is_root: bool,
) -> ChainClass:
    """Classify a chain run (see the module docstring for the priority order)."""
    if metadata:
        agent = metadata.get("lc_agent_name")
        if agent is not None:
            node = metadata.get("langgraph_node")
            if node == name and name in _AGENT_NODE_NAMES:
                return SKIPPED
            if agent == name and node != name:
                return _agent(name)
        if metadata.get(AGENT_METADATA_KEY):
            return _agent(name)
    if tags and SKIP_TAG in tags:
        return SKIPPED
    if name == "AgentExecutor":
        return _agent(name)
    cache = _ROOT_CLASSES if is_root else _PLAIN_CLASSES
    found = cache.get(name)
    if found is None:
        if len(cache) >= _CLASS_CACHE_MAX:
            cache.clear()
        found = cache[name] = (
            ChainClass(False, "invoke_workflow " + name, A.OP_INVOKE_WORKFLOW, name=name)
            if is_root
            else ChainClass(False, name, name=name)
        )
    return found


# Root and plain chains classify by name alone: one shared result per name (bounded).
_ROOT_CLASSES: dict[str, ChainClass] = {}
_PLAIN_CLASSES: dict[str, ChainClass] = {}
_CLASS_CACHE_MAX = 4096


def conversation_id(metadata: Mapping[str, Any] | None) -> str | None:
    """``gen_ai.conversation.id`` from metadata (see the module docstring for the order)."""
    if not metadata:
        return None
    for key in _CONVERSATION_KEYS:
        value = metadata.get(key)
        if value is not None and value != "":
            return str(value)
    return None


def user_metadata(metadata: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Metadata worth keeping on a span: without LangChain/LangGraph bookkeeping keys."""
    if not metadata:
        return None
    noise = _noise_keys
    kept = {}
    for k, v in metadata.items():
        if type(k) is str:
            is_noise = noise.get(k)
            if is_noise is None:
                is_noise = k in _NOISE_METADATA_KEYS or k.startswith(_NOISE_METADATA_PREFIXES)
                if len(noise) >= _NOISE_CACHE_MAX:
                    noise.clear()
                noise[k] = is_noise
            if is_noise:
                continue
        kept[k] = v
    return kept or None


# Noise decisions per metadata key: the same few keys come back on every run.
_noise_keys: dict[str, bool] = {}
_NOISE_CACHE_MAX = 4096


def user_tags(tags: Sequence[str] | None) -> tuple[str, ...] | None:
    """Tags worth keeping: without LangChain's per-step tags."""
    if not tags:
        return None
    if len(tags) == 1:  # the common case: one step tag, or one user tag
        tag = tags[0] if type(tags[0]) is str else str(tags[0])
        return None if tag.startswith(_NOISE_TAG_PREFIXES) else (tag,)
    kept = tuple(t for t in map(str, tags) if not t.startswith(_NOISE_TAG_PREFIXES))
    return kept or None


def tool_attributes(name: str, serialized: Mapping[str, Any] | None, call_id: Any,
                    ser: Serializer, attrs: dict[str, Any]) -> None:
    """Add a tool run's GenAI attributes to ``attrs`` (the description redacted and capped)."""
    attrs[A.GEN_AI_OPERATION_NAME] = A.OP_EXECUTE_TOOL
    attrs[A.GEN_AI_TOOL_NAME] = name
    attrs[A.GEN_AI_TOOL_TYPE] = A.GEN_AI_TOOL_TYPE_FUNCTION
    if call_id:
        attrs[A.GEN_AI_TOOL_CALL_ID] = str(call_id)
    if serialized:
        description = serialized.get("description")
        if description:
            # A tool hands the same description object on every call: redact it once (per
            # serializer: tracers may redact differently).
            known = _descriptions.get(id(description))
            if known is None or known[0] is not description or known[1] is not ser:
                if len(_descriptions) >= _DESCRIPTIONS_MAX:
                    _descriptions.clear()
                known = (description, ser, ser.scalar(description))
                _descriptions[id(description)] = known
            attrs[A.GEN_AI_TOOL_DESCRIPTION] = known[2]


# Redacted tool descriptions by object id, with the object (so an id is never reused) and the
# serializer that redacted it.
_descriptions: dict[int, tuple[Any, Serializer, Any]] = {}
_DESCRIPTIONS_MAX = 256


def llm_span(operation: str, model: str | None) -> str:
    """Span name of an LLM call: ``chat {model}`` / ``text_completion {model}``."""
    return operation + " " + model if model else operation


# --- span events ----------------------------------------------------------------------------
# ``ser`` is the tracer's Serializer when content is captured, else None (content left out).


def agent_action_attributes(action: Any, ser: Serializer | None) -> dict[str, Any]:
    """Event attributes of a legacy ``AgentAction``: tool name, call id, arguments, log."""
    attrs: dict[str, Any] = {A.GEN_AI_TOOL_NAME: str(getattr(action, "tool", ""))}
    call_id = getattr(action, "tool_call_id", None)
    if call_id:
        attrs[A.GEN_AI_TOOL_CALL_ID] = str(call_id)
    if ser is not None:
        attrs[A.GEN_AI_TOOL_CALL_ARGUMENTS] = ser.dumps(getattr(action, "tool_input", None))
        log = getattr(action, "log", None)
        if log:
            attrs[A.AGENT_LOG] = ser.scalar(log)
    return attrs


def agent_finish_attributes(finish: Any, ser: Serializer | None) -> dict[str, Any]:
    """Event attributes of a legacy ``AgentFinish``: return values and log (content only)."""
    attrs: dict[str, Any] = {}
    if ser is not None:
        attrs[A.OUTPUT] = ser.dumps(getattr(finish, "return_values", None))
        log = getattr(finish, "log", None)
        if log:
            attrs[A.AGENT_LOG] = ser.scalar(log)
    return attrs


def retry_attributes(retry_state: Any, ser: Serializer | None) -> dict[str, Any]:
    """Event attributes of a tenacity ``RetryCallState``: attempt and the failure."""
    attrs: dict[str, Any] = {}
    attempt = getattr(retry_state, "attempt_number", None)
    if isinstance(attempt, int):
        attrs[A.RETRY_ATTEMPT] = attempt
    outcome = getattr(retry_state, "outcome", None)
    if outcome is not None and getattr(outcome, "failed", False):
        exc = outcome.exception()
        attrs["exception.type"] = type(exc).__name__
        if ser is not None:
            attrs["exception.message"] = ser.scalar(str(exc))
    return attrs


TOOL_KIND = SpanKind.INTERNAL
LLM_KIND = SpanKind.CLIENT
RETRIEVER_KIND = SpanKind.CLIENT
