"""The offline demo behind ``otel-mlflow demo``: a small traced LangChain app, then its runs.

What it runs, in order, each as its own LangChain root run (so each becomes one MLflow run):

1. ``explain_topic``: ``ChatPromptTemplate | chat model | StrOutputParser``, ``invoke``.
2. ``explain_topic_streamed``: the same chain, ``stream`` with a Japanese topic (time to first
   token; Japanese text stays readable in MLflow).
3. ``weather_agent``: a tool-calling step: the model asks for the real ``@tool`` ``get_weather``,
   the tool runs, the model answers with its result.
4. ``failing_call``: a direct model call that fails (the model backend answers HTTP 500); the
   demo catches the exception, the run records it.

The chat model, by priority: the real ``ChatVertexAI`` client talking REST to the built-in Gemini
emulator (``otel_mlflow.testing.gemini_emulator``) when ``langchain-google-vertexai`` is installed;
otherwise a scripted fake chat model built on ``langchain_core``. Nothing leaves the machine.

The demo builds its own ``TracerProvider`` (not the global one) through ``configure()``, flushes,
then reads the runs back from MLflow by their ``otel.trace_id`` tag. It returns a ``DemoReport``;
printing is the CLI's job.
"""

from __future__ import annotations

import json
import logging
import re
import time
import warnings
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.language_models.base import LangSmithParams
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from pydantic import PrivateAttr

from otel_mlflow._common import semconv as attrs
from otel_mlflow._common import settings as _config

_logger = logging.getLogger(__name__)

DEFAULT_EXPERIMENT = "otel-mlflow-demo"
SERVICE_NAME = "otel-mlflow-demo"
MODEL_NAME = "gemini-2.5-flash"

# The metrics the CLI shows for each run, in this order.
KEY_METRICS: tuple[str, ...] = (
    "trace.duration_ms",
    "llm.calls",
    "llm.duration_ms",
    "llm.ttft_ms",
    "tokens.input",
    "tokens.output",
    "tokens.total",
    "tokens.reasoning",
    "tool.calls",
    "spans",
    "errors",
)

# Scripted model replies: text and token usage (what the emulator / fake model report).
TOPIC = "OpenTelemetry"
TOPIC_JA = "分散トレーシング"
CITY = "Kyoto"
ANSWER_TOPIC = "OpenTelemetry is a vendor-neutral standard for traces, metrics and logs."
ANSWER_TOPIC_JA = "分散トレーシングは、リクエストがサービス間をどう流れたかを記録する仕組みです。"
ANSWER_WEATHER = "It is sunny and 21 °C in Kyoto today."
USAGE_TOPIC = (42, 15, 57)  # input, output, total tokens
USAGE_TOPIC_JA = (44, 30, 80)  # total includes 6 reasoning (thinking) tokens, as Gemini reports
USAGE_TOOL_CALL = (60, 8, 68)
USAGE_TOOL_ANSWER = (85, 14, 99)
FAIL_STATUS = 500
FAIL_MESSAGE = "The demo backend failed on purpose (HTTP 500)."

MODEL_CHOICES = ("auto", "vertexai", "fake")


@dataclass(frozen=True)
class StepResult:
    """One step of the demo app: its name, the text it produced, the exception it raised."""

    name: str
    output: str | None
    error: str | None


@dataclass(frozen=True)
class RunSummary:
    """One MLflow run the demo wrote, as read back from MLflow."""

    run_id: str
    name: str
    trace_id: str
    status: str
    metrics: dict[str, float]
    params: dict[str, str]
    artifacts: tuple[str, ...]
    error_type: str | None = None


@dataclass(frozen=True)
class DemoReport:
    """What ``run_demo`` did and found."""

    tracking_uri: str
    experiment_name: str
    model_description: str
    steps: tuple[StepResult, ...]
    runs: tuple[RunSummary, ...]
    trace_ids: tuple[str, ...]
    missing: int
    ui_command: str | None = None
    flushed: bool = field(default=True)


class _RootSpanCollector(SpanProcessor):
    """Remembers the trace id of every LangChain root span that ends (in end order)."""

    def __init__(self) -> None:
        self.trace_ids: list[str] = []

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        if span.attributes and span.attributes.get(attrs.ROOT) and span.context is not None:
            trace_id = format(span.context.trace_id, "032x")
            if trace_id not in self.trace_ids:
                self.trace_ids.append(trace_id)

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class DemoFakeChatModel(BaseChatModel):
    """A scripted chat model for machines without ``langchain-google-vertexai``.

    Replies are queued (text, a tool call, or a failure) and consumed one per call; each reply
    carries ``usage_metadata`` and ``response_metadata`` like a real provider's. Streaming yields
    the text word by word with usage on the last chunk. ``bind_tools`` accepts any tools (the
    script decides when a tool is called).
    """

    model_name: str = MODEL_NAME
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    max_tokens: int | None = None
    _replies: deque[tuple[str, Any, tuple[int, int, int]]] = PrivateAttr(default_factory=deque)

    @property
    def _llm_type(self) -> str:
        return "otel-mlflow-demo-fake"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "temperature": self.temperature,
                "top_p": self.top_p, "top_k": self.top_k, "max_tokens": self.max_tokens}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "otel-mlflow-demo"
        params["ls_model_name"] = self.model_name
        if self.temperature is not None:
            params["ls_temperature"] = self.temperature
        if self.max_tokens is not None:
            params["ls_max_tokens"] = self.max_tokens
        return params

    def queue_text(self, text: str, usage: tuple[int, int, int]) -> None:
        self._replies.append(("text", text, usage))

    def queue_tool_call(self, name: str, args: dict[str, Any], usage: tuple[int, int, int]) -> None:
        self._replies.append(("tool", (name, args), usage))

    def queue_error(self, message: str) -> None:
        self._replies.append(("error", message, (0, 0, 0)))

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Any:
        return self

    def _next_message(self) -> AIMessage:
        kind, payload, (prompt, completion, total) = (
            self._replies.popleft() if self._replies else ("text", "(no scripted reply)", (1, 1, 2))
        )
        if kind == "error":
            raise RuntimeError(payload)
        usage: dict[str, Any] = {"input_tokens": prompt, "output_tokens": completion,
                                 "total_tokens": total}
        if total > prompt + completion:
            usage["output_token_details"] = {"reasoning": total - prompt - completion}
        metadata = {"model_name": self.model_name, "finish_reason": "STOP"}
        if kind == "tool":
            name, args = payload
            return AIMessage(
                content="",
                tool_calls=[{"name": name, "args": args, "id": f"call_{name}_1", "type": "tool_call"}],
                usage_metadata=usage,  # type: ignore[arg-type]
                response_metadata=metadata,
            )
        return AIMessage(content=payload, usage_metadata=usage,  # type: ignore[arg-type]
                         response_metadata=metadata)

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: Any = None, **kwargs: Any) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=self._next_message())])

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: Any = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        message = self._next_message()
        text = str(message.content)
        # Words with their trailing spaces; text without spaces (Japanese) streams per character.
        pieces = re.findall(r"\S+\s*", text) if " " in text else list(text)
        for index, piece in enumerate(pieces or [""]):
            last = index == len(pieces or [""]) - 1
            chunk = AIMessageChunk(
                content=piece,
                usage_metadata=message.usage_metadata if last else None,
                response_metadata=message.response_metadata if last else {},
            )
            if run_manager is not None:
                run_manager.on_llm_new_token(piece, chunk=ChatGenerationChunk(message=chunk))
            yield ChatGenerationChunk(message=chunk)


# --- the model ---------------------------------------------------------------------------------


def vertexai_available() -> bool:
    try:
        import langchain_google_vertexai  # noqa: F401
    except ImportError:
        return False
    return True


@contextmanager
def _vertexai_model() -> Iterator[tuple[Any, Any]]:
    """The real ChatVertexAI client over REST to a local Gemini emulator; yields (model, emulator)."""
    from otel_mlflow.testing.gemini_emulator import GeminiEmulator

    with GeminiEmulator() as emulator:
        # langchain-google-vertexai 3.2 flags ChatVertexAI as deprecated in favour of another
        # package; the demo is about tracing the Vertex AI client, so the notice is only noise.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*ChatVertexAI.*deprecated")
            model = emulator.chat_model(model=MODEL_NAME, temperature=0.2, top_p=0.9, top_k=20,
                                        max_tokens=256)
        yield model, emulator


def _fake_model() -> Any:
    return DemoFakeChatModel(model_name=MODEL_NAME, temperature=0.2, top_p=0.9, top_k=20,
                             max_tokens=256)


class _Script:
    """Queues the next replies on whichever backend the demo uses."""

    def __init__(self, model: Any, emulator: Any | None) -> None:
        self._model = model
        self._emulator = emulator

    def text(self, text: str, usage: tuple[int, int, int]) -> None:
        if self._emulator is not None:
            self._emulator.queue_text(text, usage=_usage(usage))
        else:
            self._model.queue_text(text, usage)

    def tool_call(self, name: str, args: dict[str, Any], usage: tuple[int, int, int]) -> None:
        if self._emulator is not None:
            self._emulator.queue_function_call(name, args, usage=_usage(usage))
        else:
            self._model.queue_tool_call(name, args, usage)

    def failure(self) -> None:
        if self._emulator is not None:
            self._emulator.queue_error(FAIL_STATUS, FAIL_MESSAGE)
        else:
            self._model.queue_error(FAIL_MESSAGE)


def _usage(usage: tuple[int, int, int]) -> Any:
    """An emulator ``Usage``; a total above input + output is reported as thinking tokens."""
    from otel_mlflow.testing.gemini_emulator import Usage

    prompt, candidates, total = usage
    thoughts = total - prompt - candidates
    return Usage(prompt=prompt, candidates=candidates, total=total,
                 thoughts=thoughts if thoughts > 0 else None)


# --- the app -----------------------------------------------------------------------------------


def _get_weather_tool() -> Any:
    from langchain_core.tools import tool

    @tool
    def get_weather(city: str) -> str:
        """Return today's weather for a city."""
        return json.dumps({"city": city, "sky": "sunny", "temperature_c": 21})

    return get_weather


def _run_app(model: Any, script: _Script, tracer: Any) -> list[StepResult]:
    from langchain_core.messages import HumanMessage
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate
    from langchain_core.runnables import RunnableConfig, RunnableLambda

    prompt = ChatPromptTemplate.from_messages(
        [
            ("system", "You are a concise assistant. Answer in one sentence."),
            ("human", "Explain {topic} to a new team member."),
        ]
    )
    chain = prompt | model | StrOutputParser()
    get_weather = _get_weather_tool()
    steps: list[StepResult] = []

    def base_config(run_name: str) -> RunnableConfig:
        return {"callbacks": [tracer], "run_name": run_name,
                "metadata": {"demo_step": run_name}, "tags": ["otel-mlflow-demo"]}

    def step(name: str, fn: Any) -> None:
        try:
            output = fn()
        except Exception as exc:  # noqa: BLE001 - the failing step fails on purpose
            steps.append(StepResult(name=name, output=None, error=type(exc).__name__))
        else:
            steps.append(StepResult(name=name, output=str(output), error=None))

    script.text(ANSWER_TOPIC, USAGE_TOPIC)
    step("explain_topic", lambda: chain.invoke({"topic": TOPIC}, base_config("explain_topic")))

    script.text(ANSWER_TOPIC_JA, USAGE_TOPIC_JA)
    step(
        "explain_topic_streamed",
        lambda: "".join(
            chain.stream({"topic": TOPIC_JA}, base_config("explain_topic_streamed"))
        ),
    )

    def weather_agent(question: str, config: RunnableConfig) -> str:
        messages: list[Any] = [HumanMessage(question)]
        ai = model.bind_tools([get_weather]).invoke(messages, config)
        messages.append(ai)
        for call in ai.tool_calls:
            # Invoking a tool with the whole tool call returns the ToolMessage for the model.
            messages.append(get_weather.invoke(call, config))
        final = model.invoke(messages, config)
        return str(final.content)

    script.tool_call("get_weather", {"city": CITY}, USAGE_TOOL_CALL)
    script.text(ANSWER_WEATHER, USAGE_TOOL_ANSWER)
    step(
        "weather_agent",
        lambda: RunnableLambda(weather_agent, name="weather_agent").invoke(
            f"What is the weather in {CITY} today?", base_config("weather_agent")
        ),
    )

    script.failure()
    step(
        "failing_call",
        lambda: model.invoke("Summarize the incident report.", base_config("failing_call")),
    )
    return steps


# --- reading back ------------------------------------------------------------------------------


def _read_runs(tracking_uri: str, experiment_name: str,
               trace_ids: Sequence[str]) -> list[RunSummary]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return []
    runs: list[RunSummary] = []
    for trace_id in trace_ids:
        found = client.search_runs(
            [experiment.experiment_id], filter_string=f"tags.`otel.trace_id` = '{trace_id}'"
        )
        if not found:
            continue
        run = found[0]
        artifacts = tuple(item.path for item in client.list_artifacts(run.info.run_id))
        runs.append(
            RunSummary(
                run_id=run.info.run_id,
                name=run.info.run_name or "",
                trace_id=trace_id,
                status=run.data.tags.get("otel_mlflow.status", run.info.status),
                metrics=dict(run.data.metrics),
                params=dict(run.data.params),
                artifacts=artifacts,
                error_type=run.data.tags.get("otel_mlflow.error_type"),
            )
        )
    return runs


def ui_command(tracking_uri: str) -> str | None:
    """The ``mlflow ui`` command for a local store; None for a server (open its URL instead)."""
    if tracking_uri.startswith(("http://", "https://", "databricks")):
        return None
    return f"mlflow ui --backend-store-uri {tracking_uri}"


def run_demo(tracking_uri: str | None = None, experiment_name: str | None = None,
             model: str = "auto", flush_timeout_seconds: float = 60.0) -> DemoReport:
    """Run the demo app traced into MLflow and return what it wrote.

    ``tracking_uri``: argument > ``MLFLOW_TRACKING_URI`` > ``sqlite:///mlflow.db`` (cwd).
    ``experiment_name``: argument > ``MLFLOW_EXPERIMENT_NAME`` > ``otel-mlflow-demo``.
    ``model``: ``auto`` (ChatVertexAI + emulator when installed, else fake), ``vertexai``, ``fake``.
    """
    from otel_mlflow._setup import configure
    from otel_mlflow._export.providers import flush

    if model not in MODEL_CHOICES:
        raise ValueError(f"model must be one of {MODEL_CHOICES}, not {model!r}")
    uri = tracking_uri or _config.env_str(_config.MLFLOW_TRACKING_URI,
                                          _config.DEFAULT_TRACKING_URI) or ""
    experiment = experiment_name or _config.env_str(_config.MLFLOW_EXPERIMENT_NAME,
                                                    DEFAULT_EXPERIMENT) or DEFAULT_EXPERIMENT
    use_vertexai = model == "vertexai" or (model == "auto" and vertexai_available())

    provider = TracerProvider(resource=Resource.create({"service.name": SERVICE_NAME}))
    collector = _RootSpanCollector()
    provider.add_span_processor(collector)
    tracer = configure(tracking_uri=uri, experiment_name=experiment, service_name=SERVICE_NAME,
                       tracer_provider=provider, otlp=False, set_global=False)
    with ExitStack() as stack:
        if use_vertexai:
            chat_model, emulator = stack.enter_context(_vertexai_model())
            description = f"ChatVertexAI({MODEL_NAME}) -> local Gemini emulator at {emulator.url}"
        else:
            chat_model, emulator = _fake_model(), None
            description = f"fake chat model ({MODEL_NAME}, langchain_core)"
        steps = _run_app(chat_model, _Script(chat_model, emulator), tracer)
    provider.force_flush()
    flushed = flush(flush_timeout_seconds)
    if not flushed:
        _logger.warning("otel-mlflow demo: MLflow writes still pending after %.0f s",
                        flush_timeout_seconds)
    trace_ids = tuple(collector.trace_ids)
    runs = _read_runs(uri, experiment, trace_ids)
    # A run can land a moment after flush() on a slow disk; look once more before reporting.
    if len(runs) < len(trace_ids):
        time.sleep(1.0)
        runs = _read_runs(uri, experiment, trace_ids)
    provider.shutdown()
    return DemoReport(
        tracking_uri=uri,
        experiment_name=experiment,
        model_description=description,
        steps=tuple(steps),
        runs=tuple(runs),
        trace_ids=trace_ids,
        missing=len(trace_ids) - len(runs),
        ui_command=ui_command(uri),
        flushed=flushed,
    )
