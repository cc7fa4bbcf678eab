"""``span_tree.html`` in headless Chromium (Debian's ``chromium``, ``tests/_support/browser.py``).

Pages built from real spans (real LangChain runnables and the real ``ChatVertexAI`` client over
REST to the local Gemini emulator, traced by ``OtelTracer``), and the page the real exporter wrote
into a run on the real ``mlflow server``. Each must render, show one bar per span, log no console
error, fetch nothing, and keep working inside the sandboxed iframe MLflow's artifact viewer uses
(``sandbox="allow-scripts"``, an opaque origin).
"""

from __future__ import annotations

import html
import uuid
from pathlib import Path
from typing import Any

import mlflow
import pytest
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda
from mlflow.tracking import MlflowClient
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import otel_mlflow._record as R
from otel_mlflow._export.exporter import MlflowSpanExporter
from otel_mlflow._record import span_tree_html as H
from otel_mlflow._tracing.handler import OtelTracer
from otel_mlflow.testing.gemini_emulator import GeminiEmulator, Usage
from tests._support.browser import load_page

EVIL = '</script><script>console.error("injected")</script>'
_COUNTS = {
    "bars": "document.querySelectorAll('.bar').length",
    "traces": "document.querySelectorAll('section.trace').length",
    "errors_marked": "document.querySelectorAll('.bar.error').length",
    "scripts": "document.querySelectorAll('script').length",
    "names": "Array.from(document.querySelectorAll('.name')).map(e => e.textContent)",
    "widths": "Array.from(document.querySelectorAll('.bar')).map(e => e.getBoundingClientRect().width)",
    "llm_notes": "Array.from(document.querySelectorAll('.bar-note')).map(e => e.textContent)",
}
_READY = "document.body && document.body.getAttribute('data-ready') === '1'"


def _traces(provider: TracerProvider, exporter: InMemorySpanExporter,
            emulator: GeminiEmulator) -> list[dict[str, Any]]:
    """Three real traces: a streamed chain, a chain with a failing step named EVIL, a direct call."""
    config: Any = {"callbacks": [OtelTracer(provider)]}
    llm = emulator.chat_model("gemini-2.5-flash")
    prompt = ChatPromptTemplate.from_messages([("system", "簡潔に"), ("human", "{q}")])
    emulator.queue_text("一 二 三", usage=Usage(prompt=9, candidates=3), stream_chunks=3,
                        chunk_delay_seconds=0.02)
    assert "".join((prompt | llm | StrOutputParser()).stream({"q": "数えて"}, config=config))

    def boom(_: Any) -> str:
        raise ValueError("step failed")

    emulator.queue_text("ok", usage=Usage(prompt=4, candidates=1))
    with pytest.raises(ValueError):
        (prompt | llm | StrOutputParser() | RunnableLambda(boom).with_config(run_name=EVIL)
         ).invoke({"q": "x"}, config=config)
    emulator.queue_text("direct", usage=Usage(prompt=2, candidates=1))
    llm.invoke("直接", config=config)
    by_trace: dict[int, list[Any]] = {}
    for span in exporter.get_finished_spans():
        by_trace.setdefault(span.context.trace_id, []).append(span)
    assert len(by_trace) == 3
    return [R.build_record(spans, encode=False).tree for spans in by_trace.values()]


def _spans(tree: dict[str, Any]) -> int:
    def count(nodes: list[dict[str, Any]]) -> int:
        return sum(1 + count(n.get("children") or []) for n in nodes)
    return count(tree["spans"])


def assert_renders(path: Path, *, spans: int, traces: int | None = None,
                   sandboxed: bool = True) -> dict[str, Any]:
    report = load_page(path, wait_for=_READY, evaluate=_COUNTS)
    assert report.loaded and report.ready
    assert report.errors == []
    assert report.external_requests == []
    values = report.values
    assert values["bars"] == spans
    assert all(w >= 1 for w in values["widths"])  # every bar is visible, even a 0 ms one
    assert values["scripts"] == (1 if traces is None else 2)
    if traces is not None:
        assert values["traces"] == traces
    if not sandboxed:
        return values
    # Inside MLflow's viewer: a sandboxed iframe with scripts (an opaque origin, out of the
    # page's process in current Chromium, so the frame reports to the parent by postMessage).
    framed = load_page(_sandboxed(path), wait_for="window.__msgs.some(m => 'bars' in m)",
                       evaluate={"msgs": "window.__msgs"})
    assert framed.ready and framed.errors == [] and framed.external_requests == []
    assert [m for m in framed.values["msgs"] if "bars" not in m] == []  # no error in the frame
    (done,) = [m for m in framed.values["msgs"] if "bars" in m]
    assert done == {"bars": spans, "ready": "1"}
    return values


_FRAME_PRELUDE = """<script>
(function(){
  function post(kind, text){ parent.postMessage({kind: kind, text: String(text)}, '*'); }
  window.addEventListener('error', function(e){ post('exception', e.message); });
  ['error', 'warn'].forEach(function(level){
    var orig = console[level];
    console[level] = function(){ post(level, Array.from(arguments).join(' ')); orig.apply(console, arguments); };
  });
  window.addEventListener('load', function(){
    parent.postMessage({bars: document.querySelectorAll('.bar').length,
                        ready: document.body.getAttribute('data-ready')}, '*');
  });
})();
</script>"""


def _sandboxed(path: Path) -> Path:
    """A page holding ``path`` the way MLflow does: ``<iframe sandbox="allow-scripts">``.

    A test-only prelude in the frame forwards errors and the bar count to the parent page.
    """
    page = path.read_text("utf-8").replace("<head>", "<head>" + _FRAME_PRELUDE, 1)
    wrapper = path.with_name(path.stem + "-sandboxed.html")
    wrapper.write_text(
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>viewer</title><script>'
        "window.__msgs = []; window.addEventListener('message', e => window.__msgs.push(e.data));"
        '</script></head><body><iframe sandbox="allow-scripts" style="width:1200px;height:800px"'
        f' srcdoc="{html.escape(page, quote=True)}"></iframe></body></html>', encoding="utf-8")
    return wrapper


def test_the_sandbox_check_sees_errors_in_the_frame(tmp_path: Path) -> None:
    """The iframe check can fail: a page touching storage throws in MLflow's sandbox."""
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>'
                   '<div class="bar"></div><script>localStorage.setItem("a", "b")</script>'
                   "</body></html>", encoding="utf-8")
    framed = load_page(_sandboxed(bad), wait_for="window.__msgs.some(m => 'bars' in m)",
                       evaluate={"msgs": "window.__msgs"})
    assert [m["kind"] for m in framed.values["msgs"] if "kind" in m] == ["exception"]


def test_trace_and_run_pages_render_every_span(memory, gemini_emulator: GeminiEmulator,
                                               tmp_path: Path) -> None:
    provider, exporter = memory
    trees = _traces(provider, exporter, gemini_emulator)
    for i, tree in enumerate(trees):
        path = tmp_path / f"trace{i}.html"
        path.write_text(H.trace_page(tree), encoding="utf-8")
        assert_renders(path, spans=_spans(tree), sandboxed=False)
    run = tmp_path / "run.html"
    run.write_text(H.run_page(trees, run_id=EVIL), encoding="utf-8")
    values = assert_renders(run, spans=sum(_spans(t) for t in trees), traces=3)
    assert EVIL in values["names"]  # the name shows as text; it opened no script
    assert values["errors_marked"] >= 2  # the failing step and the chain above it
    assert any("TTFT" in note and "9\u21923 tok" in note for note in values["llm_notes"])


def test_hover_and_click_show_the_attributes(memory, gemini_emulator: GeminiEmulator,
                                             tmp_path: Path) -> None:
    provider, exporter = memory
    tree = _traces(provider, exporter, gemini_emulator)[0]
    path = tmp_path / "trace.html"
    path.write_text(H.trace_page(tree), encoding="utf-8")
    click = ("(() => { const row = document.querySelectorAll('.row')[1];"
             " row.dispatchEvent(new MouseEvent('click', {bubbles: true}));"
             " const tip = row.querySelector('.tip');"
             " return [row.classList.contains('pinned'), getComputedStyle(tip).display,"
             " tip.textContent]; })()")
    report = load_page(path, wait_for=_READY, evaluate={
        "hidden": "getComputedStyle(document.querySelector('.tip')).display", "clicked": click})
    assert report.errors == []
    assert report.values["hidden"] == "none"
    pinned, display, text = report.values["clicked"]
    assert pinned is True and display == "block"
    assert "otel_mlflow.langchain.run_type" in text and "ChatPromptTemplate" in text


def test_the_page_written_into_a_run_renders(mlflow_server: Any, gemini_emulator: GeminiEmulator,
                                             monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path) -> None:
    uri = str(mlflow_server.url)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    client = MlflowClient(uri)
    exp_id = client.create_experiment(f"browser-{uuid.uuid4().hex[:8]}")
    exporter = MlflowSpanExporter(grace_seconds=0.2, spool_dir=str(tmp_path / "spool"))
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=50))
    try:
        with mlflow.start_run(experiment_id=exp_id) as run:
            config: Any = {"callbacks": [OtelTracer(provider)]}
            llm = gemini_emulator.chat_model("gemini-2.5-flash")
            for q in ("一", "二"):
                gemini_emulator.queue_text(f"答え{q}", usage=Usage(prompt=3, candidates=2))
                (ChatPromptTemplate.from_messages([("human", "{q}")]) | llm
                 | StrOutputParser()).invoke({"q": q}, config=config)
            assert provider.force_flush() and exporter.force_flush(120_000)
    finally:
        provider.shutdown()
    local = Path(client.download_artifacts(run.info.run_id, R.ARTIFACT_TREE_HTML,
                                           str(tmp_path / "a")))
    trees, total = H.trees_from_page(local.read_text("utf-8"))
    assert total == 2
    assert_renders(local, spans=sum(_spans(t) for t in trees), traces=2)
