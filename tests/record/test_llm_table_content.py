"""``llm_calls.json`` rows of multimodal and thinking LLM spans (pure: real SDK spans, no I/O).

Thought summaries read in the ``reasoning`` column and never in ``output``; media parts read as
``[mime, size]`` / ``[mime, uri]`` placeholders.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import otel_mlflow._record as R
from otel_mlflow._common import semconv as A
from otel_mlflow._record.llm_table import messages_text, reasoning_text, table_row


def _span(provider: TracerProvider, attrs: dict[str, Any],
          exporter: InMemorySpanExporter) -> ReadableSpan:
    with provider.get_tracer("t").start_as_current_span("chat gemini-2.5-flash") as span:
        span.set_attributes({A.GEN_AI_OPERATION_NAME: A.OP_CHAT, **attrs})
    return exporter.get_finished_spans()[-1]


def test_thought_summaries_go_to_the_reasoning_column(memory) -> None:
    provider, exporter = memory
    output = [{"role": "assistant", "finish_reason": "STOP", "parts": [
        {"type": "reasoning", "content": "Step 1: greet."},
        {"type": "text", "content": "Bonjour"},
        {"type": "reasoning", "content": "Step 2: done."}]}]
    span = _span(provider, {A.GEN_AI_OUTPUT_MESSAGES: json.dumps(output)}, exporter)
    row = dict(zip(R.TABLE_COLUMNS, table_row(span)))
    assert row["output"] == "Bonjour"
    assert row["reasoning"] == "Step 1: greet.\n\nStep 2: done."


def test_no_reasoning_is_null() -> None:
    plain = json.dumps([{"role": "assistant", "parts": [{"type": "text", "content": "hi"}]}])
    assert reasoning_text(plain) is None
    assert reasoning_text(None) is None
    assert reasoning_text("not json [") is None


@pytest.mark.parametrize(("part", "text"), [
    ({"type": "blob", "modality": "image", "mime_type": "image/png", "size": 12 * 1024},
     "[image/png, 12 KB]"),
    ({"type": "blob", "modality": "image", "mime_type": "image/png", "size": 2 * 1024 * 1024},
     "[image/png, 2.0 MB]"),
    ({"type": "blob", "modality": "audio", "mime_type": "audio/wav", "size": 900},
     "[audio/wav, 900 B]"),
    ({"type": "blob", "modality": "image"}, "[image, inline]"),
    ({"type": "uri", "modality": "file", "mime_type": "application/pdf",
      "uri": "gs://bucket/doc.pdf"}, "[application/pdf, gs://bucket/doc.pdf]"),
    ({"type": "file", "modality": "file", "file_id": "files/f1"}, "[file, file files/f1]"),
])
def test_media_parts_read_as_placeholders(part: dict[str, Any], text: str) -> None:
    raw = json.dumps([{"role": "user", "parts": [{"type": "text", "content": "Look:"}, part]}])
    assert messages_text(raw) == f"Look:\n{text}"
