"""Serializer: valid JSON for anything, size caps with an explicit marker, no secret survives."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import enum
import json
import math
import os
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from langchain_core.documents import Document
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from pydantic import BaseModel, SecretStr

from otel_mlflow._common.faults import fault_counts
from otel_mlflow._common.redact import REDACTED, Redactor
from otel_mlflow._tracing.content.serialize import (
    CYCLE_MARKER,
    DEPTH_MARKER,
    OMITTED_KEY,
    TRUNCATED_KEY,
    Serializer,
)

EXAMPLES = {"count": 0}


@pytest.fixture(scope="module", autouse=True)
def _report_examples(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"hypothesis examples run in test_serialize: {EXAMPLES['count']}")


def _valid(text: str, cap: int) -> Any:
    assert isinstance(text, str)
    assert len(text) <= cap, (len(text), cap)
    text.encode("utf-8")  # no lone surrogates: the OTLP and MLflow encoders would fail
    return json.loads(text)


class Color(enum.Enum):
    RED = "red"


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    label: str


class Settings(BaseModel):
    name: str
    api_key: SecretStr
    nested: dict[str, Any] = {}


class BrokenRepr:
    def __repr__(self) -> str:
        raise RuntimeError("repr failed")


class BrokenStrKey:
    def __str__(self) -> str:
        raise RuntimeError("str failed")

    def __hash__(self) -> int:
        return 1


def _cycle_list() -> list[Any]:
    value: list[Any] = [1]
    value.append(value)
    return value


def _cycle_dict() -> dict[str, Any]:
    value: dict[str, Any] = {"a": 1}
    value["self"] = value
    return value


def _deep(levels: int) -> list[Any]:
    root: list[Any] = []
    cur = root
    for _ in range(levels):
        nxt: list[Any] = []
        cur.append(nxt)
        cur = nxt
    return root


TABLE: list[tuple[str, Any, Any]] = [
    ("plain str", "hello", "hello"),
    ("japanese and emoji kept readable", "日本語のテキスト 🎉", "日本語のテキスト 🎉"),
    ("small dict", {"question": "What?"}, {"question": "What?"}),
    ("int", 5, 5),
    ("bool", True, True),
    ("none", None, None),
    ("nan", float("nan"), "NaN"),
    ("inf list", [math.inf, -math.inf], ["Infinity", "-Infinity"]),
    ("bytes summary", b"\x00\xffabc", {"type": "bytes", "size": 5}),
    ("bytearray summary", bytearray(b"ab"), {"type": "bytes", "size": 2}),
    ("non-string keys", {1: "a", None: "b", (1, 2): "c"}, {"1": "a", "None": "b", "(1, 2)": "c"}),
    ("colliding keys kept", {1: "int", "1": "str"}, {"1": "int", "1#1": "str"}),
    ("lone surrogate replaced", "a\ud800b", "a\ufffdb"),
    ("tuple and set", (1, 2), [1, 2]),
    ("dataclass", Point(1, "p"), {"x": 1, "label": "p"}),
    ("enum", Color.RED, "red"),
    ("datetime", dt.datetime(2024, 5, 1, 12, 0), "2024-05-01T12:00:00"),
    ("uuid", uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
    ("decimal", Decimal("1.5"), 1.5),
    ("big int", 2**80, str(2**80)),
    ("huge int", 10**5000, "<int of 16610 bits>"),
    ("exception", ValueError("bad"), {"type": "ValueError", "message": "bad"}),
    ("broken repr", BrokenRepr(), "<BrokenRepr>"),
    ("cycle list", _cycle_list(), [1, CYCLE_MARKER]),
    ("cycle dict", _cycle_dict(), {"a": 1, "self": CYCLE_MARKER}),
    ("human message", HumanMessage("hi"), {"type": "human", "content": "hi"}),
    ("system message", SystemMessage("be brief"), {"type": "system", "content": "be brief"}),
    ("tool message", ToolMessage("42", tool_call_id="c1"),
     {"type": "tool", "content": "42", "tool_call_id": "c1", "status": "success"}),
    ("document", Document(page_content="text", metadata={"source": "a"}),
     {"type": "Document", "metadata": {"source": "a"}, "page_content": "text"}),
    ("pydantic with secret", Settings(name="n", api_key=SecretStr("s3cr3t-value")),
     {"name": "n", "api_key": REDACTED}),
]


@pytest.mark.parametrize(("name", "value", "expected"), TABLE, ids=[t[0] for t in TABLE])
def test_conversion_table(name: str, value: Any, expected: Any) -> None:
    ser = Serializer()
    assert _valid(ser.dumps(value), ser.max_chars) == expected


def test_ai_message_with_tool_calls_keeps_calls() -> None:
    msg = AIMessage("", tool_calls=[{"name": "add", "args": {"a": 1}, "id": "c1"}])
    out = json.loads(Serializer().dumps(msg))
    assert out["type"] == "ai"
    assert out["tool_calls"][0]["name"] == "add"
    assert out["tool_calls"][0]["args"] == {"a": 1}


def test_non_ascii_is_not_escaped() -> None:
    assert "日本語" in Serializer().dumps({"q": "日本語"})
    assert "\\u" not in Serializer().dumps({"q": "日本語 🎉"})


def test_key_whose_str_raises() -> None:
    out = json.loads(Serializer().dumps({BrokenStrKey(): 1}))
    assert out == {"<BrokenStrKey>": 1}


def test_depth_cap_marker() -> None:
    ser = Serializer(max_depth=5)
    text = ser.dumps(_deep(50))
    assert DEPTH_MARKER in text
    assert text.count("[") == 6


def test_iterators_are_not_consumed() -> None:
    items = iter([1, 2, 3])
    Serializer().dumps({"it": items})
    assert list(items) == [1, 2, 3]


def test_input_is_not_mutated() -> None:
    value = {"api_key": "AIza" + "x" * 35, "list": [1, {"password": "p"}], "s": "y" * 50_000}
    before = repr(value)
    Serializer().dumps(value)
    assert repr(value) == before


def test_whole_document_truncation_marker_and_original_size() -> None:
    ser = Serializer(max_chars=1000)
    value = [f"item {i}" for i in range(1000)]
    full = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    text = ser.dumps(value)
    out = _valid(text, 1000)
    assert out[TRUNCATED_KEY] is True
    assert out["original_chars"] == len(full)
    assert full.startswith(out["preview"])
    assert len(text) > 900  # the preview uses the room it has (quotes escape to two chars)


def test_long_string_inside_structure_capped_individually() -> None:
    ser = Serializer(max_chars=2000)
    out = _valid(ser.dumps({"short": "a", "long": "word " * 100_000}), 2000)
    assert out["short"] == "a"
    assert out["long"][TRUNCATED_KEY] is True
    assert out["long"]["original_chars"] == 500_000
    top = Serializer(max_chars=2000)
    inner = _valid(top.dumps("word " * 100_000), 2000)
    assert inner == {TRUNCATED_KEY: True, "original_chars": 500_000,
                     "preview": ("word " * 500)[: 2000 - 128]}


def test_ten_megabyte_string_is_capped_and_fast_enough() -> None:
    big = "日本語 text " * 1_000_000  # ~10 M characters
    ser = Serializer()
    out = _valid(ser.dumps({"doc": big}), ser.max_chars)
    assert out["doc"][TRUNCATED_KEY] is True
    assert out["doc"]["original_chars"] == len(big)
    scalar = ser.scalar(big)
    assert isinstance(scalar, str) and len(scalar) <= ser.max_chars
    assert f"original_chars={len(big)}" in scalar


def test_escapes_do_not_break_the_cap() -> None:
    ser = Serializer(max_chars=300)
    # Control characters expand six-fold when escaped.
    _valid(ser.dumps(["\x01" * 5000, '"' * 5000]), 300)
    _valid(ser.dumps("\x01" * 5000), 300)


def test_base64_image_data_url_summarised() -> None:
    raw = base64.b64encode(os.urandom(30_000)).decode()
    value = {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{raw}"}}
    out = _valid(Serializer().dumps(value), 16384)
    summary = out["image_url"]["url"]
    assert summary == {OMITTED_KEY: "base64", "mime_type": "image/png",
                       "original_chars": len(raw) + len("data:image/png;base64,")}
    assert raw[:100] not in json.dumps(out)


def test_raw_base64_block_summarised_but_prose_kept() -> None:
    raw = base64.b64encode(os.urandom(5000)).decode()
    out = json.loads(Serializer().dumps({"type": "image", "base64": raw}))
    assert out["base64"][OMITTED_KEY] == "base64"
    prose = "A sentence. " * 200
    assert json.loads(Serializer().dumps(prose)) == prose


def test_numpy_values() -> None:
    np = pytest.importorskip("numpy")  # installed with mlflow; skip only in a minimal env
    out = json.loads(Serializer().dumps({"a": np.arange(3), "f": np.float32(1.5),
                                         "big": np.zeros((100, 100))}))
    assert out["a"] == [0, 1, 2]
    assert out["f"] == 1.5
    assert out["big"] == {"type": "ndarray", "shape": [100, 100], "dtype": "float64"}


def test_many_items_capped() -> None:
    ser = Serializer(max_items=10, max_chars=100_000)
    out = json.loads(ser.dumps(list(range(100))))
    assert out[:10] == list(range(10))
    assert out[10] == "[otel_mlflow: 90 more items]"


def test_min_max_chars_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Serializer(max_chars=10).max_chars == 256
    monkeypatch.setenv("OTEL_MLFLOW_MAX_ATTRIBUTE_CHARS", "5000")
    assert Serializer().max_chars == 5000
    assert Serializer(max_chars=700).max_chars == 700  # argument beats the environment


def test_scalar_kinds() -> None:
    ser = Serializer()
    assert ser.scalar(3) == 3
    assert ser.scalar(1.5) == 1.5
    assert ser.scalar(True) is True
    assert ser.scalar("x") == "x"
    assert ser.scalar(2**70) == str(2**70)
    assert ser.scalar({"a": [1]}) == '{"a":[1]}'
    assert ser.scalar("anything", key="api_key") == REDACTED
    assert ser.scalar("Bearer abc123def456ghi") == REDACTED
    assert ser.scalar("\udcff") == "\ufffd"


def test_dumps_key_argument_redacts() -> None:
    assert json.loads(Serializer().dumps({"x": 1}, key="credentials")) == REDACTED


def test_mask_hook_sees_leaves_and_can_return_structures() -> None:
    seen: list[tuple[str | None, Any]] = []

    def mask(key: str | None, value: Any) -> Any:
        seen.append((key, value))
        if key == "email":
            return "***"
        if key == "obj":
            return {"replaced": True}
        return value

    ser = Serializer(redactor=Redactor(extra_keys=(), extra_patterns=(), mask=mask))
    out = json.loads(ser.dumps({"email": "a@b.c", "n": 1, "obj": "x", "s": "keep"}))
    assert out == {"email": "***", "n": 1, "obj": {"replaced": True}, "s": "keep"}
    assert ("n", 1) in seen
    assert ser.scalar("a@b.c", key="email") == "***"


def test_failing_mask_fails_closed_and_is_counted() -> None:
    def mask(key: str | None, value: Any) -> Any:
        raise RuntimeError("hook bug")

    before = fault_counts().get("redact.mask", 0)
    ser = Serializer(redactor=Redactor(extra_keys=(), extra_patterns=(), mask=mask))
    assert json.loads(ser.dumps({"a": "visible"})) == {"a": REDACTED}
    assert fault_counts()["redact.mask"] > before


# --- properties ---------------------------------------------------------------------------

_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(),
    st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)),
    st.binary(max_size=64),
    st.sampled_from(["日本語", "🎉👍🏽", "AIzaSyA1234567890abcdefghijklmnopqrstuv", "x" * 3000]),
)
_key = st.one_of(st.text(max_size=20), st.integers(), st.none(), st.floats(), st.booleans())
_values = st.recursive(
    _leaf,
    lambda children: st.one_of(
        st.lists(children, max_size=6),
        st.tuples(children, children),
        st.dictionaries(_key, children, max_size=6),
    ),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=_values, cap=st.integers(min_value=256, max_value=4096))
def test_property_always_valid_json_within_cap(value: Any, cap: int) -> None:
    EXAMPLES["count"] += 1
    ser = Serializer(max_chars=cap)
    parsed = _valid(ser.dumps(value), cap)
    if isinstance(parsed, dict) and parsed.get(TRUNCATED_KEY) is True and "preview" in parsed:
        assert isinstance(parsed["original_chars"], int) and parsed["original_chars"] > 0
    scalar = ser.scalar(value)
    assert isinstance(scalar, (str, int, float, bool))
    if isinstance(scalar, str):
        assert len(scalar) <= cap
        scalar.encode("utf-8")


@settings(max_examples=150, deadline=None)
@given(text=st.text(min_size=1, max_size=5000))
def test_property_small_enough_strings_round_trip(text: str) -> None:
    EXAMPLES["count"] += 1
    ser = Serializer(max_chars=100_000, redactor=Redactor(extra_keys=(), extra_patterns=()))
    parsed = json.loads(ser.dumps(text))
    if any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        assert isinstance(parsed, str) and "\ufffd" in parsed
    elif isinstance(parsed, str):
        # Ordinary text is either kept as it is or had a secret-looking part replaced.
        assert parsed == text or REDACTED in parsed
    else:
        assert parsed[OMITTED_KEY] == "base64"  # only long base64-looking runs are summarised


_secretish = st.sampled_from([
    "AIzaSyA1234567890abcdefghijklmnopqrstuv", "Bearer abc.def123456", "Bearer\tabc.def123456",
    "sk-proj-abcdefghijklmnopqrstuvwxyz12", "password: \"hunter2!x\"", "api_key=abcd1234",
    "-----BEGIN PRIVATE KEY-----\nMIIEv\"QI\\BAD\n-----END PRIVATE KEY-----",
    "-----BEGIN PRIVATE KEY-----\nMIIEvQIBAD", "https://bob:pw12345@host/x", "eyJhbGciOi.eyJzdWIiOi.sig_abcdef",
    'quote " back \\ newline \n tab \t', "日本語 🎉", "",
])
_plain_text = st.one_of(_secretish, st.text(max_size=30),
                        st.builds(lambda a, b, c: a + b + c, st.text(max_size=10), _secretish,
                                  st.text(max_size=10)))
_plain = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1),
              st.floats(allow_nan=False, allow_infinity=False), _plain_text),
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(st.one_of(st.text(max_size=8), st.sampled_from(["api_key", "token"])),
                        children, max_size=5),
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(value=_plain)
def test_property_fast_path_matches_full_walk(value: Any) -> None:
    """The C-encoder fast path and the per-value walk give the same document."""
    EXAMPLES["count"] += 1
    fast = Serializer(max_chars=100_000)
    # An identity mask hook forces the per-value walk.
    walk = Serializer(max_chars=100_000, redactor=Redactor(mask=lambda key, v: v))
    assert json.loads(fast.dumps(value)) == json.loads(walk.dumps(value))


_tricky_piece = st.one_of(
    st.text(alphabet=st.sampled_from(list("\x00\x08\t\n\x0b\x0c\r\x1b\x1c\x1f\\\"' :=@/ab01")),
            max_size=10),
    st.sampled_from(["password", "api_key", "Bearer ", "https://u:", "secret_key=", "@h/",
                     "AIzaSyA1234567890abcdefghijklmnopqrstuv", "-----BEGIN PRIVATE KEY-----"]),
)
_tricky = st.lists(_tricky_piece, max_size=8).map("".join)


@settings(max_examples=300, deadline=None)
@given(value=st.one_of(_tricky, st.lists(_tricky, max_size=3),
                       st.dictionaries(st.text(max_size=5), _tricky, max_size=3)))
@example(value=["\\bpassword:0000"])  # a backslash, then "b": no word start before "password"
@example(value=["\bpassword:0000"])  # a backspace: a word start, so the pair is redacted
@example(value=["\\\bpassword:0000"])  # a backslash, then a backspace
def test_property_json_text_redaction_handles_escapes(value: Any) -> None:
    """Escaped quotes, backslashes and control characters: same redaction, still valid JSON."""
    EXAMPLES["count"] += 1
    fast = Serializer(max_chars=100_000)
    walk = Serializer(max_chars=100_000, redactor=Redactor(mask=lambda key, v: v))
    assert json.loads(fast.dumps(value)) == json.loads(walk.dumps(value))
