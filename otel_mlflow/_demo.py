"""The offline demo behind ``otel-mlflow demo``: a small traced LangChain app, then its runs.

What it runs, in order, each as its own LangChain root run (so each becomes one MLflow run):

1. ``explain_topic``: ``ChatPromptTemplate | chat model | StrOutputParser``, ``invoke``.
2. ``explain_topic_streamed``: the same chain, ``stream`` with a Japanese topic (time to first
   token; Japanese text stays readable in MLflow).
3. ``weather_agent``: a tool-calling step: the model asks for the real ``@tool`` ``get_weather``,
   the tool runs, the model answers with its result.
4. ``failing_call``: a direct model call that fails (the model backend answers HTTP 500); the
   demo catches the exception, the run records it.

The chat model (``model="auto"``), by priority: the real ``ChatGoogleGenerativeAI`` client
(Vertex AI backend, thought summaries on) against the built-in Gemini emulator
(``otel_mlflow.testing``) when ``langchain-google-genai`` is installed (the ``genai`` extra); the
real ``ChatVertexAI`` client over REST to the same emulator when ``langchain-google-vertexai`` is
(the ``vertexai`` extra); otherwise a scripted fake chat model built on ``langchain_core``
(``_demo_models``). Nothing leaves the machine.

The demo builds its own ``TracerProvider`` (not the global one) through ``configure()``, flushes,
then reads the runs back from MLflow by their ``otel.trace_id`` tag. It returns a ``DemoReport``;
printing is the CLI's job.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider

from otel_mlflow import _demo_models as _models
from otel_mlflow._common import semconv as attrs
from otel_mlflow._common import settings as _config
from otel_mlflow._demo_models import FAIL_MESSAGE, MODEL_NAME  # noqa: F401 - part of the demo's script

_logger = logging.getLogger(__name__)

DEFAULT_EXPERIMENT = "otel-mlflow-demo"
SERVICE_NAME = "otel-mlflow-demo"

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
    "cost.usd",
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
# The thought summary of that answer (ChatGoogleGenerativeAI asks for it: the reasoning column).
THOUGHTS_TOPIC_JA = "The reader is new to the team: one plain sentence, no jargon."
USAGE_TOOL_CALL = (60, 8, 68)
USAGE_TOOL_ANSWER = (85, 14, 99)

MODEL_CHOICES = _models.MODEL_CHOICES


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
    chain_version: str | None = None
    model_id: str | None = None


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


# --- the app -----------------------------------------------------------------------------------


def _get_weather_tool() -> Any:
    from langchain_core.tools import tool

    @tool
    def get_weather(city: str) -> str:
        """Return today's weather for a city."""
        return json.dumps({"city": city, "sky": "sunny", "temperature_c": 21})

    return get_weather


def _run_app(model: Any, script: _models.Script, tracer: Any) -> list[StepResult]:
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

    script.text(ANSWER_TOPIC_JA, USAGE_TOPIC_JA, thoughts=THOUGHTS_TOPIC_JA)
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
                chain_version=run.data.tags.get("otel_mlflow.chain.version"),
                model_id=run.data.tags.get("otel_mlflow.model_id"),
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
    ``model``: ``auto`` (the first installed of ``genai``, ``vertexai``, else ``fake``; see the
    module docstring), ``genai``, ``vertexai`` or ``fake``.
    """
    from otel_mlflow._setup import configure
    from otel_mlflow._export.providers import flush

    if model not in MODEL_CHOICES:
        raise ValueError(f"model must be one of {MODEL_CHOICES}, not {model!r}")
    uri = tracking_uri or _config.env_str(_config.MLFLOW_TRACKING_URI,
                                          _config.DEFAULT_TRACKING_URI) or ""
    experiment = experiment_name or _config.env_str(_config.MLFLOW_EXPERIMENT_NAME,
                                                    DEFAULT_EXPERIMENT) or DEFAULT_EXPERIMENT
    kind = _models.resolve(model)

    provider = TracerProvider(resource=Resource.create({"service.name": SERVICE_NAME}))
    collector = _RootSpanCollector()
    provider.add_span_processor(collector)
    tracer = configure(tracking_uri=uri, experiment_name=experiment, service_name=SERVICE_NAME,
                       tracer_provider=provider, otlp=False, set_global=False)
    with ExitStack() as stack:
        chat_model, emulator, description = stack.enter_context(_models.chat_model(kind))
        steps = _run_app(chat_model, _models.Script(chat_model, emulator), tracer)
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
