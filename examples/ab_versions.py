"""Two versions of a chain served side by side (an A/B split), then compared.

Version A and version B of a small question-answering chain differ in their prompt and their
temperature. Each request is routed to one of them by a stable hash of the user id (the same user
always sees the same version), as an A/B test in production would. Tracing is today's setup,
``otel_mlflow.configure()``; the only extra is LangChain metadata naming the variant, so MLflow
holds it as the tag ``langchain.metadata.variant``. (Every run also carries the chain-version
tag ``otel_mlflow.chain.version``, so ``otel-mlflow compare --experiment ab-versions-example``
groups the two versions apart with no metadata at all.)

At the end the script runs ``otel-mlflow compare`` over the experiment and prints the table:
one row per variant with runs, errors, latency and TTFT percentiles, tokens, cost and feedback.

Which Gemini: the local Gemini emulator shipped with otel_mlflow (offline, nothing leaves the
machine; the real ``ChatVertexAI`` client talks REST to it). Point ``make_model`` at Vertex AI
(see ``examples/gemini_vertexai.py``) for real answers.

Run it::

    pip install -e ".[vertexai]"
    python examples/ab_versions.py
    otel-mlflow compare --experiment ab-versions-example --by tag:langchain.metadata.variant \\
        --html compare.html
"""

from __future__ import annotations

import hashlib
import warnings
from typing import Any

from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate

import otel_mlflow
from otel_mlflow import cli
from otel_mlflow.testing import GeminiEmulator

EXPERIMENT = "ab-versions-example"
MODEL = "gemini-2.5-flash"
VERSIONS: dict[str, dict[str, Any]] = {
    "A": {"system": "You are a helpful assistant. Answer briefly.", "temperature": 0.2},
    "B": {"system": "You are a friendly expert. Answer in one short sentence, then give one "
                    "example.", "temperature": 0.7},
}
REQUESTS = [  # (user id, question)
    ("u-1", "What is OpenTelemetry?"), ("u-2", "What is MLflow?"), ("u-3", "あなたは誰?"),
    ("u-4", "What is a trace?"), ("u-5", "What is a span?"), ("u-6", "What is an A/B test?"),
]

warnings.filterwarnings("ignore", message=".*ChatVertexAI.*deprecated")


def variant_for(user_id: str) -> str:
    """A stable 50/50 split: the same user always gets the same version."""
    return "A" if hashlib.sha256(user_id.encode()).digest()[0] % 2 == 0 else "B"


def build_chains(emulator: GeminiEmulator) -> dict[str, Any]:
    chains = {}
    for name, version in VERSIONS.items():
        prompt = ChatPromptTemplate.from_messages([("system", version["system"]),
                                                   ("human", "{question}")])
        model = emulator.chat_model(MODEL, temperature=version["temperature"])
        chains[name] = prompt | model | StrOutputParser()
    return chains


def main() -> None:
    tracer = otel_mlflow.configure(experiment_name=EXPERIMENT, service_name="ab-example")
    with GeminiEmulator() as emulator:
        chains = build_chains(emulator)
        for user_id, question in REQUESTS:
            variant = variant_for(user_id)
            config: Any = {"callbacks": [tracer],
                           "metadata": {"variant": variant, "user_id": user_id}}
            # Stream, as a chat UI would: the runs then carry the time to first token.
            answer = "".join(chains[variant].stream({"question": question}, config=config))
            print(f"[{variant}] {user_id}: {question} -> {answer[:60]}")
    # Scripts end quickly: wait until MLflow has every run before comparing.
    otel_mlflow.flush()
    print()
    code = cli.main(["compare", "--experiment", EXPERIMENT,
                     "--by", "tag:langchain.metadata.variant"])
    if code:
        raise SystemExit(code)


if __name__ == "__main__":
    main()
