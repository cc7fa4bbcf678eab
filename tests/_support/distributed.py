"""The two processes of a distributed trace, for tests/e2e/test_receiver_distributed.py.

``python -m tests._support.distributed worker PORT OTLP_URL``: an LLM worker (starlette +
uvicorn) whose ``POST /ask`` extracts the W3C ``traceparent`` with the SDK's
``TraceContextTextMapPropagator``, opens a SERVER span under it and runs a LangChain chain
(prompt | fake chat model | parser) under ``OtelTracer``.

``python -m tests._support.distributed front WORKER_URL OTLP_URL``: a front service script
that starts the root span, calls the worker with the context injected, prints the trace id.

Both export with the SDK's ``OTLPSpanExporter`` (HTTP/protobuf) to the receiver only.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator

from opentelemetry import context as otel_context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

FRONT_ROOT = "POST /chat"
FRONT_CLIENT = "call llm-worker"
WORKER_SERVER = "POST /ask"


def provider_for(service: str, otlp_url: str) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_url), schedule_delay_millis=200)
    )
    return provider


def run_worker(port: int, otlp_url: str) -> None:
    import uvicorn
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from otel_mlflow import OtelTracer
    from tests._support.fake_models import FakeChatModel

    provider = provider_for("llm-worker", otlp_url)
    tracer = provider.get_tracer("llm-worker")
    chain = (ChatPromptTemplate.from_messages([("human", "Answer briefly: {question}")])
             | FakeChatModel(responses=["forty-two"]) | StrOutputParser())
    handler = OtelTracer(provider)
    propagator = TraceContextTextMapPropagator()

    def answer(question: str, headers: dict[str, str]) -> str:
        token = otel_context.attach(propagator.extract(headers))
        try:
            with tracer.start_as_current_span(WORKER_SERVER, kind=SpanKind.SERVER):
                return str(chain.invoke({"question": question}, config={"callbacks": [handler]}))
        finally:
            otel_context.detach(token)

    async def ask(request: Request) -> JSONResponse:
        from starlette.concurrency import run_in_threadpool

        body = await request.json()
        text = await run_in_threadpool(answer, body["question"], dict(request.headers))
        return JSONResponse({"answer": text})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        provider.shutdown()

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/ask", ask, methods=["POST"]), Route("/healthz", healthz)],
                    lifespan=lifespan)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def run_front(worker_url: str, otlp_url: str) -> None:
    import requests

    provider = provider_for("front", otlp_url)
    tracer = provider.get_tracer("front")
    with tracer.start_as_current_span(FRONT_ROOT, kind=SpanKind.SERVER) as root:
        with tracer.start_as_current_span(FRONT_CLIENT, kind=SpanKind.CLIENT):
            headers: dict[str, str] = {}
            TraceContextTextMapPropagator().inject(headers)
            reply = requests.post(worker_url, json={"question": "meaning of life?"},
                                  headers=headers, timeout=30)
            reply.raise_for_status()
        root.set_attribute("answer", reply.json()["answer"])
        trace_id = root.get_span_context().trace_id
    provider.shutdown()
    print(f"{trace_id:032x}", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "worker":
        run_worker(int(sys.argv[2]), sys.argv[3])
    else:
        run_front(sys.argv[2], sys.argv[3])
