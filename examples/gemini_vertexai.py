"""Gemini on Vertex AI, traced into MLflow.

Runs a ``prompt | ChatVertexAI | parser`` chain twice (``invoke``, then ``stream``) with otel_mlflow
tracing on. Each call becomes one MLflow run in the experiment ``gemini-vertexai-example``: latency,
time to first token (streamed call), token usage, the prompt LangChain built, the answer.

Which Gemini:
1. the real Vertex AI service when ``GOOGLE_CLOUD_PROJECT`` is set and Application Default
   Credentials are available (``gcloud auth application-default login``);
   ``GOOGLE_CLOUD_LOCATION`` picks the region (default ``us-central1``);
2. otherwise the local Gemini emulator shipped with otel_mlflow (offline, nothing leaves the
   machine; the same real ``ChatVertexAI`` client talks REST to it).

Run it::

    pip install -e ".[vertexai]"
    python examples/gemini_vertexai.py
    mlflow ui --backend-store-uri sqlite:///mlflow.db
"""

from __future__ import annotations

import os
import warnings
from contextlib import ExitStack
from typing import Any

from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate

import otel_mlflow

EXPERIMENT = "gemini-vertexai-example"
MODEL = "gemini-2.5-flash"
# The seed article's generation settings.
SETTINGS: dict[str, Any] = {"temperature": 0.0, "top_p": 0.8, "top_k": 10, "max_tokens": 1024}

warnings.filterwarnings("ignore", message=".*ChatVertexAI.*deprecated")


def real_credentials() -> bool:
    """True when a project is named and Application Default Credentials resolve."""
    if not os.environ.get("GOOGLE_CLOUD_PROJECT"):
        return False
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    try:
        google.auth.default()
    except DefaultCredentialsError:
        return False
    return True


def make_model(stack: ExitStack) -> tuple[Any, str]:
    if real_credentials():
        from langchain_google_vertexai import ChatVertexAI

        model = ChatVertexAI(
            model=MODEL,
            project=os.environ["GOOGLE_CLOUD_PROJECT"],
            location=os.environ.get("GOOGLE_CLOUD_LOCATION", "us-central1"),
            **SETTINGS,
        )
        return model, "Vertex AI"
    from otel_mlflow.testing import GeminiEmulator

    emulator = stack.enter_context(GeminiEmulator())
    return emulator.chat_model(MODEL, **SETTINGS), f"the local Gemini emulator at {emulator.url}"


def main() -> None:
    tracer = otel_mlflow.configure(experiment_name=EXPERIMENT, service_name="gemini-example")
    prompt = ChatPromptTemplate.from_messages(
        [
            ("system", "You are a helpful assistant. Answer briefly."),
            ("human", "What is {topic}? Answer in one sentence."),
        ]
    )
    with ExitStack() as stack:
        model, where = make_model(stack)
        print(f"Calling {MODEL} on {where}")
        chain = prompt | model | StrOutputParser()

        answer = chain.invoke({"topic": "OpenTelemetry"}, config={"callbacks": [tracer]})
        print("invoke:", answer)

        print("stream: ", end="")
        for piece in chain.stream({"topic": "大規模言語モデル"}, config={"callbacks": [tracer]}):
            print(piece, end="", flush=True)
        print()

    # Scripts end quickly: wait until MLflow has every run before exiting.
    otel_mlflow.flush()
    print(f"Runs written to experiment {EXPERIMENT!r}. "
          "View them: mlflow ui --backend-store-uri sqlite:///mlflow.db")


if __name__ == "__main__":
    main()
