"""``span_tree.html``: the waterfall page built from the same tree as ``span_tree.json`` (pure).

Trees come from real spans: a synthetic GenAI trace on a real TracerProvider, and real LangChain
runnables traced by ``OtelTracer``. The page is parsed with the standard library's HTML parser;
the browser check (rendering, console, bar count) is ``tests/e2e/test_span_tree_html_browser.py``.
"""

from __future__ import annotations

import json
from html.parser import HTMLParser
from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Status, StatusCode

import otel_mlflow._record as R
from otel_mlflow._common import semconv as A
from otel_mlflow._record import span_tree_html as H
from otel_mlflow._tracing.handler import OtelTracer

EVIL = '</script><script>alert("x")</script><b onmouseover=alert(1)>'
GOOGLE_KEY = "AIzaSyC4mP9xQ2vL8nR5tW1yB6kJ3hF0dG7sE2a"


def waterfall_trace(provider: TracerProvider, *, root_name: str = "invoke_workflow qa") -> None:
    """A workflow: a streamed chat call with tokens and TTFT, a tool in an agent, a failed tool."""
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span(root_name, attributes={
            A.ROOT: True, A.GEN_AI_OPERATION_NAME: A.OP_INVOKE_WORKFLOW,
            A.LC_RUN_TYPE: A.RUN_CHAIN, A.INPUT: json.dumps({"q": "日本の首都は？"})}):
        with tracer.start_as_current_span("chat gemini-2.5-flash", attributes={
                A.GEN_AI_OPERATION_NAME: A.OP_CHAT, A.LC_RUN_TYPE: A.RUN_CHAT_MODEL,
                A.GEN_AI_USAGE_INPUT_TOKENS: 12, A.GEN_AI_USAGE_OUTPUT_TOKENS: 30,
                A.USAGE_TOTAL_TOKENS: 47, A.TTFT_MS: 0.01, A.STREAMED: True}):
            pass
        with tracer.start_as_current_span("invoke_agent helper", attributes={
                A.GEN_AI_OPERATION_NAME: A.OP_INVOKE_AGENT}):
            with tracer.start_as_current_span(EVIL, attributes={
                    A.GEN_AI_OPERATION_NAME: A.OP_EXECUTE_TOOL, A.LC_RUN_TYPE: A.RUN_TOOL,
                    A.GEN_AI_TOOL_CALL_ARGUMENTS: json.dumps({"html": EVIL})}):
                pass
        broken = tracer.start_span("execute_tool broken", attributes={
            A.GEN_AI_OPERATION_NAME: A.OP_EXECUTE_TOOL, A.ERROR_TYPE: "ValueError"})
        broken.set_status(Status(StatusCode.ERROR, "bad input"))
        broken.end()


class _Page(HTMLParser):
    """Collects the page's elements by class, text per element, and script bodies."""

    def __init__(self) -> None:
        super().__init__()
        self.classes: list[list[str]] = []
        self.scripts: list[tuple[dict[str, Any], str]] = []
        self.names: list[str] = []
        self.external: list[str] = []
        self.handlers: list[str] = []
        self.tags: set[str] = set()
        self._stack: list[tuple[str, dict[str, Any]]] = []
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.add(tag)
        self.handlers += [k for k in a if k.startswith("on")]
        self.classes.append((a.get("class") or "").split())
        for key in ("src", "href"):
            value = a.get(key) or ""
            if value and not value.startswith("#"):
                self.external.append(value)
        if tag == "link":
            self.external.append(str(a))
        self._stack.append((tag, a))
        self._text = []

    def handle_endtag(self, tag: str) -> None:
        if not self._stack:
            return
        open_tag, a = self._stack.pop()
        text = "".join(self._text)
        if open_tag == "script":
            self.scripts.append((a, text))
        if "name" in (a.get("class") or "").split():
            self.names.append(text)
        self._text = []

    def handle_data(self, data: str) -> None:
        self._text.append(data)


def _parse(page: str) -> _Page:
    parser = _Page()
    parser.feed(page)
    parser.close()
    return parser


def _count(parser: _Page, cls: str) -> int:
    return sum(1 for classes in parser.classes if cls in classes)


def test_one_bar_per_span_nested_coloured_and_errors_marked(memory) -> None:
    provider, exporter = memory
    waterfall_trace(provider)
    rec = R.build_record(exporter.get_finished_spans(), encode=False)
    page = H.trace_page(rec.tree)
    parsed = _parse(page)
    assert _count(parsed, "bar") == 5 == len(exporter.get_finished_spans())
    assert _count(parsed, "kind-llm") == 2  # the row and its bar
    assert _count(parsed, "kind-tool") == 4 and _count(parsed, "kind-agent") == 2
    assert _count(parsed, "kind-workflow") == 2
    assert _count(parsed, "error") == 1 and _count(parsed, "err-mark") >= 1
    assert "12\u219230 tok \u00b7 47 total \u00b7 TTFT 0.01 ms" in page
    assert _count(parsed, "ttft") == 1
    # nesting: the tool inside the agent is indented two levels
    assert 'padding-left:34px"><span class="name">&lt;/script&gt;' in page
    assert "bad input" in page  # the status description is in the hover panel
    assert "日本の首都は？" in page  # content reads as text, not \\u escapes


def test_a_span_named_script_end_cannot_break_the_page(memory) -> None:
    provider, exporter = memory
    waterfall_trace(provider, root_name=EVIL)
    rec = R.build_record(exporter.get_finished_spans(), encode=False)
    for page in (H.trace_page(rec.tree), H.run_page([rec.tree], run_id=EVIL)):
        parsed = _parse(page)
        assert EVIL not in page
        assert EVIL in parsed.names  # shown as text, escaped
        # only our own scripts: the embedded data (run page) and the page script
        assert all(a.get("id") in (None, H.PAGE_DATA_ID) for a, _ in parsed.scripts)
        assert len(parsed.scripts) == (2 if "id=\"otel-mlflow-trees\"" in page else 1)
        assert parsed.external == []  # no fetches: no src, no stylesheet links
        assert parsed.handlers == [] and "b" not in parsed.tags  # no injected element


def test_the_run_page_lists_its_traces_newest_first_and_says_what_it_leaves_out(memory) -> None:
    provider, exporter = memory
    trees = []
    for i in range(H.MAX_PAGE_TRACES + 3):
        exporter.clear()
        waterfall_trace(provider, root_name=f"invoke_workflow step{i}")
        trees.append(R.build_record(exporter.get_finished_spans(), encode=False).tree)
    page = H.run_page(trees, run_id="abc123", total_traces=len(trees) + 10)
    parsed = _parse(page)
    assert _count(parsed, "trace") == H.MAX_PAGE_TRACES
    assert _count(parsed, "bar") == 5 * H.MAX_PAGE_TRACES
    assert f"the last {H.MAX_PAGE_TRACES} of the {len(trees) + 10} traces" in page
    newest, oldest_kept = f"step{len(trees) - 1}", f"step{len(trees) - H.MAX_PAGE_TRACES}"
    assert page.index(newest) < page.index(oldest_kept)
    assert "invoke_workflow step2<" not in page  # dropped by the cap
    kept, total = H.trees_from_page(page)
    assert total == len(trees) + 10
    assert [t["trace_id"] for t in kept] == [t["trace_id"] for t in trees[-H.MAX_PAGE_TRACES:]]


def test_embedded_trees_round_trip_and_long_values_are_cut(memory) -> None:
    provider, exporter = memory
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span(EVIL, attributes={A.ROOT: True, A.INPUT: "x" * 10_000,
                                                        "ratio": float("nan")}):
        pass
    tree = R.build_record(exporter.get_finished_spans(), encode=False).tree
    page = H.run_page([tree], run_id="r1")
    (data,) = [text for a, text in _parse(page).scripts if a.get("id") == H.PAGE_DATA_ID]
    json.loads(data, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    kept, total = H.trees_from_page(page)
    assert total == 1 and kept[0]["spans"][0]["name"] == EVIL
    cut = kept[0]["spans"][0]["attributes"][A.INPUT]
    assert cut == "x" * H.MAX_VALUE_CHARS + "\u2026 [8000 more characters in span_tree.json]"
    assert H.page_tree(kept[0]) == kept[0]  # a page tree is not cut twice
    assert "8000 more characters in span_tree.json" in H.trace_page(tree)
    assert H.trees_from_page("<html>not ours</html>") == ([], 0)


def test_content_is_redacted_as_in_span_tree_json(memory) -> None:
    """A real chain: the secret is redacted by the tracer, the page shows what the tree holds."""
    provider, exporter = memory
    reply = AIMessage(content="ok", usage_metadata={"input_tokens": 3, "output_tokens": 1,
                                                    "total_tokens": 4})
    chain = (ChatPromptTemplate.from_messages([("human", "key {k}")])
             | GenericFakeChatModel(messages=iter([reply])) | StrOutputParser())
    chain.invoke({"k": GOOGLE_KEY}, config={"callbacks": [OtelTracer(provider)]})
    rec = R.build_record(exporter.get_finished_spans(), encode=False)
    tree_json = json.dumps(rec.tree, ensure_ascii=False)
    assert GOOGLE_KEY not in tree_json and "REDACTED" in tree_json
    for page in (H.trace_page(rec.tree), H.run_page([rec.tree], run_id="r")):
        assert GOOGLE_KEY not in page
        assert "REDACTED" in page
        assert _count(_parse(page), "bar") == len(exporter.get_finished_spans())


def test_a_huge_trace_draws_a_bounded_number_of_spans(memory) -> None:
    provider, exporter = memory
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("invoke_workflow big", attributes={A.ROOT: True}):
        for i in range(H.MAX_PAGE_SPANS + 50):
            with tracer.start_as_current_span(f"step {i}"):
                pass
    tree = R.build_record(exporter.get_finished_spans(), encode=False).tree
    page = H.trace_page(tree)
    parsed = _parse(page)
    assert _count(parsed, "bar") == H.MAX_PAGE_SPANS
    assert f"{H.MAX_PAGE_SPANS + 51} spans" in page  # the summary counts every span
    assert f"51 more spans are not drawn (the page draws at most {H.MAX_PAGE_SPANS}" in page


@pytest.mark.parametrize(("attrs", "kind"), [
    ({A.GEN_AI_OPERATION_NAME: A.OP_CHAT}, "llm"),
    ({A.GEN_AI_OPERATION_NAME: A.OP_TEXT_COMPLETION}, "llm"),
    ({A.LC_RUN_TYPE: A.RUN_CHAT_MODEL}, "llm"),
    ({A.GEN_AI_OPERATION_NAME: A.OP_EXECUTE_TOOL}, "tool"),
    ({A.LC_RUN_TYPE: A.RUN_RETRIEVER}, "retriever"),
    ({A.GEN_AI_OPERATION_NAME: A.OP_INVOKE_AGENT, A.LC_RUN_TYPE: A.RUN_CHAIN}, "agent"),
    ({A.GEN_AI_OPERATION_NAME: A.OP_INVOKE_WORKFLOW}, "workflow"),
    ({A.LC_RUN_TYPE: A.RUN_CHAIN}, "chain"),
    ({"http.method": "GET"}, "other"),
])
def test_span_kind_table(attrs: dict[str, Any], kind: str) -> None:
    assert H.span_kind(attrs) == kind
