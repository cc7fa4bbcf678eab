"""The same spans to MLflow and to an OTLP backend (Jaeger, an OpenTelemetry Collector, ...).

``configure(otlp=True, ...)`` puts two exporters on one ``TracerProvider``: the MLflow exporter
(one run per trace, experiment ``forward-otlp-example``) and an OTLP/HTTP exporter. Both receive
the very same spans, so the trace id tagged on the MLflow run (``otel.trace_id``) is the trace id
the OTLP backend shows.

Where the OTLP spans go:
1. ``OTEL_EXPORTER_OTLP_ENDPOINT`` when it is set (e.g. ``http://localhost:4318`` for a local
   Jaeger: ``docker run -p 16686:16686 -p 4318:4318 jaegertracing/all-in-one``);
2. otherwise a tiny OTLP/HTTP receiver this script starts on 127.0.0.1, which prints what it got.

Run it::

    pip install -e ".[vertexai,otlp]"
    python examples/forward_otlp.py
"""

from __future__ import annotations

import os
import threading
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

import otel_mlflow

EXPERIMENT = "forward-otlp-example"

warnings.filterwarnings("ignore", message=".*ChatVertexAI.*deprecated")


class OtlpReceiver:
    """A minimal OTLP/HTTP (protobuf) trace receiver: ``POST /v1/traces``, spans kept in memory."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, str, str]] = []  # (trace_id, span_id, name)
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - stdlib naming
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                with receiver._lock:
                    for resource_spans in request.resource_spans:
                        for scope_spans in resource_spans.scope_spans:
                            for span in scope_spans.spans:
                                receiver.spans.append(
                                    (span.trace_id.hex(), span.span_id.hex(), span.name)
                                )
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> OtlpReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def run(tracer: Any) -> str:
    from otel_mlflow.testing import GeminiEmulator

    prompt = ChatPromptTemplate.from_template("Give one tip about {topic}.")
    with GeminiEmulator() as emulator:
        chain = prompt | emulator.chat_model("gemini-2.5-flash") | StrOutputParser()
        return chain.invoke({"topic": "observability"}, config={"callbacks": [tracer]})


def main() -> None:
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if endpoint:
        tracer = otel_mlflow.configure(experiment_name=EXPERIMENT, service_name="forward-example",
                                       otlp=True)
        print("answer:", run(tracer))
        otel_mlflow.flush()
        print(f"Spans sent to MLflow ({EXPERIMENT!r}) and to {endpoint}")
        return

    with OtlpReceiver() as receiver:
        tracer = otel_mlflow.configure(experiment_name=EXPERIMENT, service_name="forward-example",
                                       otlp=True, otlp_endpoint=receiver.endpoint)
        print("answer:", run(tracer))
        # flush() force-flushes the global provider (so the OTLP exporter sends its batch now),
        # then waits until MLflow has the run.
        otel_mlflow.flush()
        for trace_id, span_id, name in receiver.spans:
            print(f"OTLP receiver got: trace={trace_id} span={span_id} {name}")
    print(f"The same spans are in MLflow: experiment {EXPERIMENT!r}, tag otel.trace_id.")


if __name__ == "__main__":
    main()
