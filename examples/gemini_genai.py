"""Gemini through ``ChatGoogleGenerativeAI`` (langchain-google-genai), traced into MLflow.

The successor of ``ChatVertexAI``: one client for Vertex AI (``vertexai=True``) and the Gemini
Developer API. Runs a ``prompt | model | parser`` chain with ``invoke`` and ``stream`` (thought
summaries on: they land in the table's ``reasoning`` column, not in the answer), then a
multimodal prompt with a small PNG (recorded as ``[image/png, 68 B]``, never as bytes). Each call
becomes one MLflow run in the experiment ``gemini-genai-example``.

Which Gemini, in priority order:
1. the Gemini Developer API when ``GOOGLE_API_KEY`` (or ``GEMINI_API_KEY``) is set;
2. Vertex AI when ``GOOGLE_CLOUD_PROJECT`` is set and Application Default Credentials resolve
   (``gcloud auth application-default login``); ``GOOGLE_CLOUD_LOCATION`` picks the region;
3. otherwise the local Gemini emulator shipped with otel_mlflow (offline; the same real client,
   Vertex AI backend, with ``base_url`` pointing at the emulator).

Run it::

    pip install -e ".[genai]"
    python examples/gemini_genai.py
    mlflow ui --backend-store-uri sqlite:///mlflow.db
"""

from __future__ import annotations

import os
from contextlib import ExitStack
from typing import Any

from langchain_core.messages import HumanMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate

import otel_mlflow

EXPERIMENT = "gemini-genai-example"
MODEL = "gemini-2.5-flash"
SETTINGS: dict[str, Any] = {"temperature": 0.0, "max_output_tokens": 1024,
                            "thinking_budget": 512, "include_thoughts": True}
# A 1x1 transparent PNG (68 bytes).
PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=")


def vertex_credentials() -> bool:
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
    from langchain_google_genai import ChatGoogleGenerativeAI

    if os.environ.get("GOOGLE_API_KEY") or os.environ.get("GEMINI_API_KEY"):
        return ChatGoogleGenerativeAI(model=MODEL, vertexai=False, **SETTINGS), "the Gemini API"
    if vertex_credentials():
        model = ChatGoogleGenerativeAI(
            model=MODEL, vertexai=True, project=os.environ["GOOGLE_CLOUD_PROJECT"],
            location=os.environ.get("GOOGLE_CLOUD_LOCATION", "us-central1"), **SETTINGS)
        return model, "Vertex AI"
    from otel_mlflow.testing import GeminiEmulator

    emulator = stack.enter_context(GeminiEmulator())
    emulator.queue_text("OpenTelemetry is an open standard for traces, metrics and logs.",
                        thoughts="One sentence, plain words.")
    return (emulator.genai_chat_model(MODEL, vertexai=True, **SETTINGS),
            f"the local Gemini emulator at {emulator.url}")


def main() -> None:
    tracer = otel_mlflow.configure(experiment_name=EXPERIMENT, service_name="gemini-genai-example")
    config: Any = {"callbacks": [tracer]}
    prompt = ChatPromptTemplate.from_messages(
        [("system", "You are a helpful assistant. Answer briefly."),
         ("human", "What is {topic}? Answer in one sentence.")])
    with ExitStack() as stack:
        model, where = make_model(stack)
        print(f"Calling {MODEL} on {where}")
        chain = prompt | model | StrOutputParser()
        print("invoke:", chain.invoke({"topic": "OpenTelemetry"}, config=config))
        print("stream: ", end="")
        for piece in chain.stream({"topic": "大規模言語モデル"}, config=config):
            print(piece, end="", flush=True)
        print()
        image = HumanMessage(content=[
            {"type": "text", "text": "Describe this image in five words."},
            {"type": "image", "base64": PNG, "mime_type": "image/png"}])
        print("image:", model.invoke([image], config=config).text)

    otel_mlflow.flush()  # scripts end quickly: wait until MLflow has every run
    print(f"Runs written to experiment {EXPERIMENT!r}. "
          "View them: mlflow ui --backend-store-uri sqlite:///mlflow.db")


if __name__ == "__main__":
    main()
