"""Pure: span trees (the ``span_tree.json`` data) -> ``span_tree.html``, a self-contained waterfall.

MLflow's artifact viewer shows an ``.html`` artifact inline, in an ``<iframe sandbox=
"allow-scripts">`` loaded from a blob URL (MLflow 3.17's ``ShowArtifactHtmlView``), so the page
carries everything itself: inline CSS and a few lines of inline JS, no fetches, no fonts, no CDN.

- ``trace_page(tree)``: one trace (run-per-trace mode);
- ``run_page(trees, run_id=..., total_traces=...)``: the traces of one run (active-run mode), the
  last ``MAX_PAGE_TRACES`` of them, newest first; the page says how many it leaves out;
- ``trees_from_page(html)``: the trees a ``run_page`` embedded (the writer rebuilds the page from
  them after a restart).

What a page shows: one row per span, nested by parent (indent), a bar on the trace's time axis,
coloured by kind (LLM, tool, retriever, agent, workflow, chain, other), failed spans striped red
and marked ``✕``, LLM bars labelled with their tokens (input -> output, total) and TTFT (a tick
inside the bar). Hovering a row (or clicking it, which pins the panel) shows its attributes,
events and status. The values are the tree's, so content is redacted (or left out with content
capture off) exactly as in ``span_tree.json`` and the spans. The page is bounded: one value is
cut at ``MAX_VALUE_CHARS`` characters and a trace draws at most ``MAX_PAGE_SPANS`` spans (the
page says how many it leaves out; ``span_tree.json`` keeps everything).

Everything from the trace is HTML-escaped (names, attributes, ids); the embedded tree data is JSON
with ``<``, ``>``, ``&`` and U+2028/9 written as ``\\u`` escapes, so no value (e.g. a span named
``</script>``) can end a tag early. No I/O, no MLflow import.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from otel_mlflow._common import semconv as A

MAX_PAGE_TRACES = 25
MAX_VALUE_CHARS = 2000
MAX_PAGE_SPANS = 300
PAGE_DATA_ID = "otel-mlflow-trees"

# kind -> (label, colour)
KINDS: dict[str, tuple[str, str]] = {
    "llm": ("LLM", "#2f6fdb"),
    "tool": ("tool", "#e08a00"),
    "retriever": ("retriever", "#1e9e63"),
    "agent": ("agent", "#8a4fd8"),
    "workflow": ("workflow", "#5b6b7f"),
    "chain": ("chain", "#8a9bb0"),
    "other": ("span", "#b0b7c3"),
}
_OPERATION_KINDS = {
    A.OP_CHAT: "llm", A.OP_TEXT_COMPLETION: "llm", A.OP_EXECUTE_TOOL: "tool",
    A.OP_RETRIEVAL: "retriever", A.OP_INVOKE_AGENT: "agent", A.OP_INVOKE_WORKFLOW: "workflow",
}
_RUN_TYPE_KINDS = {
    A.RUN_LLM: "llm", A.RUN_CHAT_MODEL: "llm", A.RUN_TOOL: "tool",
    A.RUN_RETRIEVER: "retriever", A.RUN_CHAIN: "chain",
}

_CSS = """
*{box-sizing:border-box}
body{font:13px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans","Noto Sans CJK JP",sans-serif;margin:12px;color:#1f2430;background:#fff}
h1{font-size:16px;margin:0 0 4px}h2{font-size:14px;margin:18px 0 4px}
.meta{color:#5b6473;margin:0 0 8px}.note-cap{background:#fff7e0;border:1px solid #f0d48a;padding:4px 8px;display:inline-block}
.legend span{display:inline-block;margin-right:10px}.legend i{display:inline-block;width:10px;height:10px;margin-right:4px;border-radius:2px;vertical-align:-1px}
table.traces{border-collapse:collapse;margin:6px 0}table.traces td,table.traces th{padding:2px 8px;border-bottom:1px solid #e6e8ee;text-align:left}
.wf{border:1px solid #e1e4ea;border-radius:4px;min-width:760px}
.row,.axis{display:grid;grid-template-columns:minmax(180px,32%) minmax(420px,1fr) 64px;align-items:center;min-height:22px}
.row{border-top:1px solid #f0f1f5;cursor:pointer}.row:hover,.row.pinned{background:#f3f6fc}
.label{white-space:nowrap;overflow:hidden;text-overflow:ellipsis;padding-right:6px}
.badge{font-size:11px;color:#fff;border-radius:3px;padding:0 4px;margin-left:4px}
.err-mark{color:#c62828;font-weight:bold;margin-right:3px}
.track{position:relative;height:22px;overflow:hidden}
.bar{position:absolute;top:5px;height:12px;border-radius:2px;min-width:2px}
.bar.error{background-image:repeating-linear-gradient(45deg,#c62828 0 4px,transparent 4px 8px);outline:2px solid #c62828}
.ttft{position:absolute;top:-2px;width:2px;height:16px;background:#111}
.bar-note{position:absolute;top:3px;font-size:11px;color:#253047;white-space:nowrap;padding:0 4px}
.bar-note.inside{color:#fff;overflow:hidden;text-overflow:ellipsis;padding-left:6px}
.dur{text-align:right;padding-right:6px;color:#5b6473;font-variant-numeric:tabular-nums}
.axis{color:#5b6473;font-size:11px;border-bottom:1px solid #e1e4ea}.tick{position:absolute;top:4px;white-space:nowrap;transform:translateX(-50%)}
.tick.first{transform:none}.tick.last{transform:translateX(-100%)}
.tip{display:none;position:fixed;right:10px;bottom:10px;width:min(46vw,640px);max-height:62vh;overflow:auto;background:#fff;border:1px solid #9aa3b5;box-shadow:0 2px 10px rgba(0,0,0,.2);padding:8px;z-index:5;cursor:auto}
.row:hover .tip,.row.pinned .tip{display:block}.wf.has-pin .row:not(.pinned):hover .tip{display:none}
.tip h3{font-size:13px;margin:0 0 4px}.tip table{border-collapse:collapse;width:100%}
.tip td{vertical-align:top;border-top:1px solid #eef0f4;padding:2px 4px}.tip td.k{color:#5b6473;white-space:nowrap}
.tip pre{margin:0;white-space:pre-wrap;word-break:break-word;font:12px/1.35 ui-monospace,Menlo,Consolas,monospace}
"""

# Click pins a row's panel (so long values can be scrolled and selected); Escape unpins.
_JS = """
(function(){
  var pinned=null;
  function unpin(){if(pinned){pinned.classList.remove('pinned');pinned.closest('.wf').classList.remove('has-pin');pinned=null;}}
  document.addEventListener('click',function(ev){
    if(ev.target.closest('.tip'))return;
    var row=ev.target.closest('.row');
    var same=row===pinned;unpin();
    if(row&&!same){pinned=row;row.classList.add('pinned');row.closest('.wf').classList.add('has-pin');}
  });
  document.addEventListener('keydown',function(ev){if(ev.key==='Escape')unpin();});
  document.body.setAttribute('data-ready','1');
})();
"""

_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_ESCAPE_RE = re.compile("[<>&\u2028\u2029]")
_DATA_RE = re.compile(
    r'<script type="application/json" id="' + PAGE_DATA_ID + r'">(.*?)</script>', re.S
)


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def script_json(value: Any) -> str:
    """JSON that is safe inside ``<script>``: no ``<``, ``>``, ``&`` or line separators."""
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, default=str)
    return _ESCAPE_RE.sub(lambda m: _ESCAPES[m.group()], text)


def span_kind(attributes: Mapping[str, Any]) -> str:
    """The colour group of a span: its GenAI operation, else its LangChain run type, else other."""
    kind = _OPERATION_KINDS.get(str(attributes.get(A.GEN_AI_OPERATION_NAME)))
    if kind is None:
        kind = _RUN_TYPE_KINDS.get(str(attributes.get(A.LC_RUN_TYPE)), "other")
    return kind


def _walk(nodes: Sequence[Mapping[str, Any]], depth: int = 0
          ) -> Iterator[tuple[int, Mapping[str, Any]]]:
    for node in nodes:
        yield depth, node
        yield from _walk(node.get("children") or (), depth + 1)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _ms(value: float) -> str:
    if value >= 10_000:
        return f"{value / 1000:.1f} s"
    if value >= 100:
        return f"{value:.0f} ms"
    if value >= 10:
        return f"{value:.1f} ms"
    return f"{value:.2f} ms"


def _cut(text: str, limit: int = MAX_VALUE_CHARS) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"\u2026 [{len(text) - limit} more characters in span_tree.json]"


def _value_text(value: Any) -> str:
    if isinstance(value, str):
        return value  # cut by page_tree already
    # A structure of cut strings can still be long: cut its JSON text as a whole too.
    return _cut(json.dumps(value, ensure_ascii=False, indent=1, default=str), 4 * MAX_VALUE_CHARS)


def _cap_values(value: Any) -> Any:
    if isinstance(value, str):
        return _cut(value)
    if isinstance(value, Mapping):
        return {str(k): _cap_values(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_cap_values(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN / Infinity
    return value


def page_tree(tree: Mapping[str, Any]) -> dict[str, Any]:
    """The tree as a page keeps it: strings cut at ``MAX_VALUE_CHARS``, at most ``MAX_PAGE_SPANS``
    spans (depth first, in start order), and ``span_count``, the trace's real number of spans.

    Bounded whatever the trace, so the writer can keep the trees of a run's page in memory. A
    tree that is already a page tree (it has ``span_count``) is returned as it is.
    """
    if "span_count" in tree:
        return dict(tree)
    budget = [MAX_PAGE_SPANS]

    def prune(nodes: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for node in nodes:
            if budget[0] <= 0:
                break
            budget[0] -= 1
            kept = {str(k): _cap_values(v) for k, v in node.items() if k != "children"}
            kept["children"] = prune(node.get("children") or ())
            out.append(kept)
        return out

    spans = tree.get("spans") or ()
    return {"trace_id": str(tree.get("trace_id") or ""), "spans": prune(spans),
            "span_count": sum(1 for _ in _walk(spans))}


def _llm_note(attrs: Mapping[str, Any]) -> tuple[str, float | None]:
    tin = _number(attrs.get(A.GEN_AI_USAGE_INPUT_TOKENS))
    tout = _number(attrs.get(A.GEN_AI_USAGE_OUTPUT_TOKENS))
    total = _number(attrs.get(A.USAGE_TOTAL_TOKENS))
    ttft = _number(attrs.get(A.TTFT_MS))
    parts = []
    if tin is not None or tout is not None:
        parts.append(f"{tin or 0:.0f}\u2192{tout or 0:.0f} tok")
    if total is not None:
        parts.append(f"{total:.0f} total")
    if ttft is not None:
        parts.append(f"TTFT {_ms(ttft)}")
    return " \u00b7 ".join(parts), ttft


def _tip(node: Mapping[str, Any], kind: str) -> str:
    status = node.get("status") or {}
    rows = [
        ("span", f"{node.get('name', '')}"),
        ("kind", f"{KINDS[kind][0]} ({node.get('kind') or 'INTERNAL'})"),
        ("span_id", node.get("span_id") or ""),
        ("status", " ".join(str(p) for p in (status.get("code"), status.get("description"))
                            if p) or "UNSET"),
        ("start", node.get("start_time") or ""),
        ("duration", _ms(_number(node.get("duration_ms")) or 0.0)),
    ]
    cells = "".join(f'<tr><td class="k">{_e(k)}</td><td><pre>{_e(v)}</pre></td></tr>'
                    for k, v in rows)
    attrs = node.get("attributes") or {}
    cells += "".join(f'<tr><td class="k">{_e(k)}</td><td><pre>{_e(_value_text(v))}</pre></td></tr>'
                     for k, v in attrs.items())
    for event in node.get("events") or ():
        text = _value_text(event.get("attributes") or {})
        cells += (f'<tr><td class="k">event {_e(event.get("name", ""))}</td>'
                  f'<td><pre>{_e(event.get("time", ""))}\n{_e(text)}</pre></td></tr>')
    return f'<div class="tip"><h3>{_e(node.get("name", ""))}</h3><table>{cells}</table></div>'


def _waterfall(tree: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The waterfall block of one page tree, and its summary (root name, status, counts)."""
    rows = list(_walk(tree.get("spans") or ()))
    span_count = int(tree.get("span_count") or len(rows))
    starts = [int(n.get("start_time_ns") or 0) for _, n in rows]
    ends = [int(n.get("end_time_ns") or n.get("start_time_ns") or 0) for _, n in rows]
    t0 = min(starts, default=0)
    span_ns = max(max(ends, default=0) - t0, 1)
    total_ms = span_ns / 1e6
    ticks = []
    for i in range(5):
        cls = " first" if i == 0 else " last" if i == 4 else ""
        ticks.append(f'<span class="tick{cls}" style="left:{i * 25}%">{_e(_ms(total_ms * i / 4))}'
                     "</span>")
    out = ['<div class="wf">',
           f'<div class="axis"><div class="label">span</div><div class="track">{"".join(ticks)}'
           '</div><div class="dur">duration</div></div>']
    errors = tokens = llm_calls = 0
    for (depth, node), start, end in zip(rows, starts, ends):
        attrs = node.get("attributes") or {}
        kind = span_kind(attrs)
        label, colour = KINDS[kind]
        failed = (node.get("status") or {}).get("code") == "ERROR"
        errors += failed
        left = (start - t0) / span_ns * 100
        width = max(end - start, 0) / span_ns * 100
        inner = note = ""
        if kind == "llm":
            llm_calls += 1
            tokens += int(_number(attrs.get(A.USAGE_TOTAL_TOKENS)) or (
                (_number(attrs.get(A.GEN_AI_USAGE_INPUT_TOKENS)) or 0)
                + (_number(attrs.get(A.GEN_AI_USAGE_OUTPUT_TOKENS)) or 0)))
            text, ttft = _llm_note(attrs)
            if ttft is not None and end > start:
                at = min(max(ttft * 1e6 / (end - start) * 100, 0.0), 100.0)
                inner = f'<span class="ttft" style="left:{at:.2f}%" title="first token"></span>'
            if text:
                # Beside the bar where there is room (right, else left), else inside it.
                if left + width <= 62:
                    cls, place = "bar-note", f"left:{left + width:.3f}%"
                elif left >= 38:
                    cls, place = "bar-note", f"right:{100 - left:.3f}%"
                else:
                    cls, place = "bar-note inside", f"left:{left:.3f}%;width:{width:.3f}%"
                note = f'<span class="{cls}" style="{place}">{_e(text)}</span>'
        mark = '<span class="err-mark" title="error">\u2715</span>' if failed else ""
        out.append(
            f'<div class="row kind-{kind}{" failed" if failed else ""}" '
            f'data-span-id="{_e(node.get("span_id") or "")}">'
            f'<div class="label" style="padding-left:{6 + depth * 14}px">{mark}'
            f'<span class="name">{_e(node.get("name", ""))}</span>'
            f'<span class="badge" style="background:{colour}">{_e(label)}</span></div>'
            f'<div class="track"><div class="bar kind-{kind}{" error" if failed else ""}" '
            f'style="left:{left:.3f}%;width:{width:.3f}%;background-color:{colour}">{inner}</div>'
            f"{note}</div>"
            f'<div class="dur">{_e(_ms(_number(node.get("duration_ms")) or 0.0))}</div>'
            f"{_tip(node, kind)}</div>"
        )
    if span_count > len(rows):
        out.append(f'<p class="meta">{span_count - len(rows)} more spans are not drawn (the page '
                   f"draws at most {MAX_PAGE_SPANS} per trace); span_tree.json holds them all.</p>")
    out.append("</div>")
    root = rows[0][1] if rows else {}
    root_status = (root.get("status") or {}).get("code") or "UNSET"
    summary = {
        "trace_id": str(tree.get("trace_id") or ""), "name": str(root.get("name") or ""),
        "status": "ERROR" if root_status == "ERROR" else "OK", "duration_ms": total_ms,
        "spans": span_count, "llm_calls": llm_calls, "tokens": tokens, "errors": errors,
        "start_time": str(root.get("start_time") or ""),
    }
    return "".join(out), summary


def _legend() -> str:
    items = "".join(f'<span><i style="background:{c}"></i>{_e(label)}</span>'
                    for label, c in KINDS.values())
    return (f'<p class="legend">{items}<span><span class="err-mark">\u2715</span>error</span>'
            "<span>hover a row for its attributes; click to pin</span></p>")


def _page(title: str, body: str, data: Any = None) -> str:
    embedded = ("" if data is None else f'<script type="application/json" id="{PAGE_DATA_ID}">'
                f"{script_json(data)}</script>")
    return ("<!DOCTYPE html>\n"
            '<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_e(title)}</title><style>{_CSS}</style></head>"
            f"<body>{body}{embedded}<script>{_JS}</script></body></html>\n")


def _summary_line(s: Mapping[str, Any]) -> str:
    return (f'{_e(s["status"])} \u00b7 {_e(_ms(s["duration_ms"]))} \u00b7 {s["spans"]} spans'
            f' \u00b7 {s["llm_calls"]} LLM calls \u00b7 {s["tokens"]} tokens'
            f' \u00b7 {s["errors"]} errors')


def trace_page(tree: Mapping[str, Any]) -> str:
    """The waterfall page of one trace (``span_tree.json``'s data)."""
    block, s = _waterfall(page_tree(tree))
    body = (f'<h1>{_e(s["name"] or "trace")}</h1>'
            f'<p class="meta">trace {_e(s["trace_id"])} \u00b7 {_e(s["start_time"])} \u00b7 '
            f"{_summary_line(s)}</p>{_legend()}{block}")
    return _page(f'{s["name"]} \u00b7 trace {s["trace_id"][:8]}', body)


def run_page(trees: Sequence[Mapping[str, Any]], *, run_id: str, total_traces: int | None = None
             ) -> str:
    """The page of one run's traces (oldest to newest in ``trees``; shown newest first).

    Only the last ``MAX_PAGE_TRACES`` trees are kept; ``total_traces`` (default: ``len(trees)``)
    is how many the run holds, so the page can say how many it leaves out.
    """
    kept = [page_tree(t) for t in list(trees)[-MAX_PAGE_TRACES:]]
    total = max(total_traces if total_traces is not None else len(trees), len(kept))
    blocks, lines = [], []
    for number, tree in reversed(list(enumerate(kept, start=total - len(kept) + 1))):
        block, s = _waterfall(tree)
        anchor = f"trace-{_e(s['trace_id'])}"
        lines.append(f'<tr><td>#{number}</td><td><a href="#{anchor}">{_e(s["name"])}</a></td>'
                     f'<td>{_e(s["status"])}</td><td>{_e(_ms(s["duration_ms"]))}</td>'
                     f'<td>{s["spans"]}</td><td>{s["llm_calls"]}</td><td>{s["tokens"]}</td>'
                     f'<td>{s["errors"]}</td><td>{_e(s["start_time"])}</td></tr>')
        blocks.append(f'<section class="trace" id="{anchor}"><h2>#{number} {_e(s["name"])}</h2>'
                      f'<p class="meta">trace {_e(s["trace_id"])} \u00b7 {_summary_line(s)}</p>'
                      f"{block}</section>")
    if total > len(kept):
        cap = (f'<p class="note-cap">This page shows the last {len(kept)} of the {total} traces '
               f"in this run (it keeps at most {MAX_PAGE_TRACES}); every trace is in "
               "<code>span_trees/</code> and the <code>llm_calls.json</code> table.</p>")
    else:
        cap = (f'<p class="meta">{total} traces in this run (this page keeps the last '
               f"{MAX_PAGE_TRACES}).</p>")
    table = ('<table class="traces"><tr><th>#</th><th>trace</th><th>status</th><th>duration</th>'
             "<th>spans</th><th>LLM calls</th><th>tokens</th><th>errors</th><th>start</th></tr>"
             f'{"".join(lines)}</table>')
    body = (f"<h1>Traces of run {_e(run_id)}</h1>{cap}{_legend()}{table}{''.join(blocks)}")
    return _page(f"run {run_id[:8]} \u00b7 {total} traces", body,
                 {"run_id": run_id, "total_traces": total, "trees": kept})


def trees_from_page(page: str) -> tuple[list[dict[str, Any]], int]:
    """The trees and trace count a ``run_page`` embedded; ``([], 0)`` for anything else."""
    match = _DATA_RE.search(page)
    if match is None:
        return [], 0
    try:
        data = json.loads(match.group(1))
        trees = [dict(t) for t in data.get("trees") or () if isinstance(t, Mapping)]
        return trees[-MAX_PAGE_TRACES:], int(data.get("total_traces") or len(trees))
    except (ValueError, TypeError, AttributeError):
        return [], 0
