"""An agent with tools (``langchain.agents.create_agent``), traced into MLflow.

The agent answers a question by calling two real ``@tool`` functions, then replying. otel_mlflow
records one MLflow run (experiment ``agent-with-tools-example``) whose span tree is
``invoke_agent weather_agent`` with the model calls (``chat …``) and the tool calls
(``execute_tool get_weather``, ``execute_tool celsius_to_fahrenheit``) beneath it; the run's
metrics count them (``llm.calls``, ``tool.calls``).

The model: the real ``ChatVertexAI`` client against otel_mlflow's local Gemini emulator, scripted
to ask for the tools (needs ``pip install -e ".[vertexai]"``); without ``langchain-google-vertexai``
a scripted fake tool-calling chat model stands in. Offline either way.

Run it::

    pip install -e ".[test]"    # langchain (create_agent) + langchain-google-vertexai
    python examples/agent_with_tools.py
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from langchain.agents import create_agent
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.tools import tool

import otel_mlflow

EXPERIMENT = "agent-with-tools-example"
QUESTION = "What's the weather in Kyoto, in Fahrenheit?"

warnings.filterwarnings("ignore", message=".*ChatVertexAI.*deprecated")


@tool
def get_weather(city: str) -> str:
    """Return today's weather for a city, temperature in Celsius."""
    return json.dumps({"city": city, "sky": "sunny", "temperature_c": 21})


@tool
def celsius_to_fahrenheit(celsius: float) -> float:
    """Convert a temperature from Celsius to Fahrenheit."""
    return round(celsius * 9 / 5 + 32, 1)


TOOLS = [get_weather, celsius_to_fahrenheit]
FINAL_ANSWER = "It is sunny in Kyoto today, 69.8 °F (21 °C)."


class ToolCallingFakeModel(GenericFakeChatModel):
    """langchain_core's scripted chat model, accepting ``bind_tools`` (the script calls them)."""

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Any:
        return self


@contextmanager
def scripted_model() -> Iterator[Any]:
    try:
        import langchain_google_vertexai  # noqa: F401
    except ImportError:
        vertexai = False
    else:
        vertexai = True
    if not vertexai:
        yield ToolCallingFakeModel(
            messages=iter(
                [
                    AIMessage("", tool_calls=[{"name": "get_weather", "args": {"city": "Kyoto"},
                                               "id": "call_1", "type": "tool_call"}]),
                    AIMessage("", tool_calls=[{"name": "celsius_to_fahrenheit",
                                               "args": {"celsius": 21}, "id": "call_2",
                                               "type": "tool_call"}]),
                    AIMessage(FINAL_ANSWER),
                ]
            )
        )
        return
    from otel_mlflow.testing import GeminiEmulator
    from otel_mlflow.testing.gemini_emulator import Usage

    with GeminiEmulator() as emulator:
        emulator.queue_function_call("get_weather", {"city": "Kyoto"},
                                     usage=Usage(prompt=120, candidates=9))
        emulator.queue_function_call("celsius_to_fahrenheit", {"celsius": 21},
                                     usage=Usage(prompt=160, candidates=11))
        emulator.queue_text(FINAL_ANSWER, usage=Usage(prompt=190, candidates=16))
        yield emulator.chat_model("gemini-2.5-flash", temperature=0.0)


def main() -> None:
    tracer = otel_mlflow.configure(experiment_name=EXPERIMENT, service_name="agent-example")
    with scripted_model() as model:
        agent = create_agent(
            model,
            tools=TOOLS,
            system_prompt="You are a weather assistant. Use the tools.",
            name="weather_agent",
        )
        result = agent.invoke(
            {"messages": [{"role": "user", "content": QUESTION}]},
            config={"callbacks": [tracer]},
        )
    print("agent:", result["messages"][-1].content)
    otel_mlflow.flush()
    print(f"Run written to experiment {EXPERIMENT!r}.")


if __name__ == "__main__":
    main()
