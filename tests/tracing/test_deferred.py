"""Deferred content (``otel_mlflow._tracing.fastpath.deferred``): snapshots, once-only computation, same spans, and
the JSON written on the exporter's thread, with real chains and the real SDK pipeline."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import tool
from langchain_core.runnables.utils import AddableDict
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_mlflow._common import semconv as A
from otel_mlflow._common import faults as _faults
from otel_mlflow._tracing.fastpath.deferred import (
    MAX_ITEMS, NOT_SAFE, Deferred, Pending, capture, materialize, put, snapshot,
)
from otel_mlflow._tracing.handler import OtelTracer
from tests._support.fake_models import FakeChatModel


# --- snapshot ------------------------------------------------------------------------------------
def test_snapshot_copies_containers_and_keeps_frozen_leaves() -> None:
    message = HumanMessage("hi")
    value = {"q": "x", "n": [1, 2.5, None, True], "t": ("a", {"k": "v"}), "m": [message]}
    copy = snapshot(value)
    assert copy == value and copy is not value
    assert copy["n"] is not value["n"] and copy["t"][1] is not value["t"][1]
    assert copy["m"][0] is message  # LangChain messages are immutable by contract
    value["n"].append(3)
    value["t"][1]["k"] = "changed"
    assert copy["n"] == [1, 2.5, None, True] and copy["t"][1] == {"k": "v"}


@pytest.mark.parametrize("value", [
    object(),
    {"k": object()},
    {1: "non-str key"},
    AddableDict(a=1),  # a dict subclass: serialized in the callback
    [[[[[[["deep"]]]]]]],
    list(range(MAX_ITEMS + 1)),
])
def test_snapshot_refuses_what_it_cannot_copy_safely(value: Any) -> None:
    assert snapshot(value) is NOT_SAFE


def test_deferred_computes_once_and_reports_faults() -> None:
    calls: list[Any] = []
    deferred = Deferred(lambda v: calls.append(v) or f"<{v}>", "x")
    assert deferred.get() == "<x>" and deferred.get() == "<x>"
    assert calls == ["x"]

    def broken(_: Any) -> str:
        raise ValueError("boom")

    before = _faults.fault_counts().get("tracer.deferred_content", 0)
    failed = Deferred(broken, "x")
    assert '"error":"ValueError"' in failed.get().replace(" ", "")
    assert _faults.fault_counts().get("tracer.deferred_content", 0) == before + 1


def test_a_failed_pair_leaves_its_marker_on_the_first_key() -> None:
    def broken(_: Any) -> tuple[str, str]:
        raise ValueError("boom")

    pair = Deferred(broken, "x")
    attrs: dict[str, Any] = {}
    materialize([("in", pair, 0), ("system", pair, 1), ("out", Deferred(str.upper, "ok"), None)],
                attrs)
    assert set(attrs) == {"in", "out"} and attrs["out"] == "OK"
    assert '"error":"ValueError"' in attrs["in"].replace(" ", "")


def test_capture_passes_exactly_the_arguments_it_is_given_now_and_deferred() -> None:
    def seen(*args: Any) -> str:
        return repr(args)

    # None is an argument like any other (a root run's memo is None).
    for lazy in (False, True):
        got = [capture(lazy, seen, ["v"]), capture(lazy, seen, ["v"], None),
               capture(lazy, seen, ["v"], None, {"m": 1})]
        values = [g.get() if type(g) is Deferred else g for g in got]
        assert values == ["(['v'],)", "(['v'], None)", "(['v'], None, {'m': 1})"]
        assert all(type(g) is Deferred for g in got) is lazy


def test_put_writes_plain_values_and_queues_deferred_ones_in_order() -> None:
    attrs: dict[str, Any] = {}
    pending: Pending = []
    pair = Deferred(lambda v: (v, None), "msgs")
    put(attrs, pending, "plain", "x")
    put(attrs, pending, "none", None)
    put(attrs, pending, "in", pair, 0)
    put(attrs, pending, "system", pair, 1)
    put(attrs, pending, "half", ("a", None), 1)
    assert attrs == {"plain": "x"} and [key for key, _, _ in pending] == ["in", "system"]
    materialize(pending, attrs)
    assert attrs == {"plain": "x", "in": "msgs"}


# --- with the tracer -----------------------------------------------------------------------------
@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def _chains() -> list[tuple[Any, Any]]:
    prompt = ChatPromptTemplate.from_messages([("system", "Be brief."), ("human", "{q}")])
    model = FakeChatModel()

    def step(inputs: dict[str, Any], config: Any) -> str:
        total = add.invoke({"a": 2, "b": 3}, config=config)
        return str(model.invoke(f"{inputs['q']} {total}", config=config).content)

    return [(prompt | model | StrOutputParser(), {"q": "hello"}),
            (RunnableLambda(step, name="agent_step"), {"q": "add"})]


def _spans(defer: bool, batch: bool) -> list[dict[str, Any]]:
    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    processor = BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
    provider.add_span_processor(processor)
    tracer = OtelTracer(provider, defer_content=defer)
    for chain, arg in _chains():
        chain.invoke(arg, config={"callbacks": [tracer]})
    provider.force_flush()
    skip = (A.LC_RUN_ID, A.LC_PARENT_RUN_ID)
    return sorted(({k: v for k, v in (s.attributes or {}).items() if k not in skip} | {"name": s.name}
                   for s in exporter.get_finished_spans()), key=lambda d: d["name"])


def test_deferred_content_gives_the_same_spans() -> None:
    eager = _spans(defer=False, batch=False)
    assert len(eager) == 7
    assert any(A.GEN_AI_TOOL_CALL_RESULT in s for s in eager)
    assert any(A.GEN_AI_SYSTEM_INSTRUCTIONS in s for s in eager)
    assert _spans(defer=True, batch=True) == eager
    assert _spans(defer=True, batch=False) == eager


class _ReadingExporter(InMemorySpanExporter):
    """Reads every span's attributes in ``export``, as the OTLP and MLflow exporters do."""

    def export(self, spans: Any) -> Any:
        for span in spans:
            dict(span.attributes or {})
        return super().export(spans)


def _mask_threads(defer: bool | None) -> tuple[set[int], dict[str, Any]]:
    """Thread ids the serializer ran on (through a mask hook), and the root's attributes."""
    threads: set[int] = set()

    def mask(key: str | None, value: Any) -> Any:
        threads.add(threading.get_ident())
        return value

    provider = TracerProvider()
    exporter = _ReadingExporter()
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=10))
    tracer = OtelTracer(provider, mask=mask, defer_content=defer)
    chain, arg = _chains()[0]
    chain.invoke(arg, config={"callbacks": [tracer]})
    # No force_flush: it would export on this thread. The worker exports within milliseconds.
    deadline = time.monotonic() + 10
    while len(exporter.get_finished_spans()) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    root = next(s for s in exporter.get_finished_spans() if (s.attributes or {}).get(A.ROOT))
    return threads, dict(root.attributes or {})


def test_content_is_written_on_the_exporter_thread() -> None:
    threads, root = _mask_threads(True)
    assert threads and threading.get_ident() not in threads
    assert '"hello"' in root[A.INPUT]


def test_nobody_reading_means_nothing_serialized_until_read() -> None:
    provider = TracerProvider()
    exporter = InMemorySpanExporter()  # stores spans without reading them
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    chain, arg = _chains()[0]
    chain.invoke(arg, config={"callbacks": [OtelTracer(provider)]})
    spans = exporter.get_finished_spans()
    assert all(s._pending for s in spans if s.name.startswith("chat"))  # type: ignore[attr-defined]
    chat = next(s for s in spans if s.name.startswith("chat"))
    assert '"hello"' in (chat.attributes or {})[A.GEN_AI_INPUT_MESSAGES]
    assert chat._pending is None  # type: ignore[attr-defined]


def test_defer_content_off_by_argument_or_env(monkeypatch: pytest.MonkeyPatch) -> None:
    threads, _ = _mask_threads(False)
    assert threading.get_ident() in threads
    monkeypatch.setenv("OTEL_MLFLOW_DEFER_CONTENT", "false")
    threads, _ = _mask_threads(None)
    assert threading.get_ident() in threads


@dataclass
class _State:
    items: list[str] = field(default_factory=list)


def test_values_changed_by_the_app_after_the_call_are_recorded_as_they_were() -> None:
    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    # A long delay: the spans are read well after the app changed its objects.
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=60_000))
    tracer = OtelTracer(provider)
    history = ["first"]
    state = _State(["first"])
    echo = RunnableLambda(lambda inputs: inputs, name="echo")
    echo.invoke({"history": history}, config={"callbacks": [tracer]})
    echo.invoke(state, config={"callbacks": [tracer]})  # not copyable: serialized at once
    history.append("later")
    state.items.append("later")
    provider.force_flush()
    texts = [(s.attributes or {})[A.INPUT] + (s.attributes or {})[A.OUTPUT]
             for s in exporter.get_finished_spans()]
    assert len(texts) == 2
    assert all("first" in t and "later" not in t for t in texts)
