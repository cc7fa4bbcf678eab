"""The seed article's flow, without its hand-written ``log_table``.

The article this project grew from wrapped its experiments in ``mlflow.start_run()`` …
``mlflow.end_run()``, ran a ``ChatPromptTemplate | chat`` chain and a direct model call, and then
called ``mlflow.log_table(data=tracer.mlflow_log, ...)`` by hand. With otel_mlflow the traces that
start while that run is active (in the same thread) are written *into that run*: every LLM call is
a row of its ``llm_calls.json`` table (input, output, error, latency, tokens), each trace's
metrics are logged as one more step, the ``run.*`` metrics hold the run's totals (``run.traces``,
``run.tokens.total``, ``run.latency_ms.p95``, ...) and ``span_tree.html`` draws its traces as
waterfalls. No ``log_table`` call, nothing kept in memory until the end.

Run it (offline: the real ``ChatVertexAI`` client against the local Gemini emulator; set
``GOOGLE_CLOUD_PROJECT`` and use ``ChatVertexAI(model=..., project=...)`` for the real service)::

    pip install -e ".[vertexai]"
    python examples/seed_start_run.py
"""

from __future__ import annotations

import warnings

import mlflow
from langchain_core.prompts import ChatPromptTemplate

import otel_mlflow
from otel_mlflow.testing import GeminiEmulator

EXPERIMENT = "seed-start-run-example"

warnings.filterwarnings("ignore", message=".*ChatVertexAI.*deprecated")


def main() -> None:
    tracer = otel_mlflow.configure(experiment_name=EXPERIMENT)
    # The fluent API and otel_mlflow use the same store: MLFLOW_TRACKING_URI, else sqlite:///mlflow.db.
    mlflow.set_experiment(EXPERIMENT)

    with GeminiEmulator() as emulator:
        # The article's settings: temperature=0, top_p=0.8, top_k=10, max_output_tokens=1024.
        chat = emulator.chat_model("gemini-2.5-flash", temperature=0, top_p=0.8, top_k=10,
                                   max_tokens=1024)
        prompt = ChatPromptTemplate.from_messages(
            [("system", "You are a product copywriter."), ("human", "Write a slogan for {product}.")]
        )
        chain = prompt | chat

        run = mlflow.start_run(run_name="seed-article-flow")
        print("chain: ", chain.invoke({"product": "a tea shop"}, config={"callbacks": [tracer]}).content)
        print("direct:", chat.invoke("Translate 'good morning' to Japanese.",
                                     config={"callbacks": [tracer]}).content)
        # Wait until both traces are in the run, then close it, as the article did.
        otel_mlflow.flush()
        mlflow.end_run()

    print(f"Everything landed in run {run.info.run_id} of experiment {EXPERIMENT!r}: "
          "see its llm_calls.json table, its run.* totals and span_tree.html.")


if __name__ == "__main__":
    main()
