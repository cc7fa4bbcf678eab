"""JSON text primitives for ``otel_mlflow._tracing.content.serialize`` (pure, no I/O).

One reused C encoder per mode (``JSONEncoder.encode`` builds a new one per call), string cleaning
(lone surrogates), base64 detection, JSON-safe floats, and the cached field names of pydantic
models (read by attribute, never ``model_dump``). ``Serializer`` builds on these.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

OMITTED_KEY = "otel_mlflow.omitted"
# Base64 payloads shorter than this are kept as they are (small icons, test fixtures).
BASE64_MIN_CHARS = 1024
_BASE64_PREFIX_CHARS = 256
_BASE64_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_")

_SURROGATES = re.compile("[\ud800-\udfff]")
encode_str = json.encoder.encode_basestring  # type: ignore[attr-defined]  # C, ensure_ascii=False
INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)


def clean_str(text: str) -> str:
    """Replace lone surrogates (not encodable as UTF-8) by U+FFFD."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATES.sub("\ufffd", text)
    return text


def json_float(value: float) -> float | str:
    if math.isfinite(value):
        return value
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def base64_summary(text: str) -> dict[str, Any] | None:
    """A summary for a ``data:`` URL or a long base64 blob, or ``None`` for ordinary text."""
    if len(text) < BASE64_MIN_CHARS:
        return None
    if text.startswith("data:"):
        head, sep, _ = text[:_BASE64_PREFIX_CHARS].partition(",")
        if sep and head.endswith(";base64"):
            return {OMITTED_KEY: "base64", "mime_type": head[5:-7] or None,
                    "original_chars": len(text)}
        return None
    prefix = text[:_BASE64_PREFIX_CHARS]
    # Encoded binary mixes cases and digits; a long run of one letter is not base64 data.
    if (
        _BASE64_ALPHABET.issuperset(prefix)
        and any(c.isdigit() for c in prefix)
        and not prefix.isupper()
        and not prefix.islower()
    ):
        return {OMITTED_KEY: "base64", "mime_type": None, "original_chars": len(text)}
    return None


def is_empty(item: Any) -> bool:
    """Model fields left out of the JSON: None and empty strings / mappings / sequences."""
    return item is None or (isinstance(item, (str, dict, list, tuple)) and not item)


def _model_default(obj: Any) -> dict[str, Any]:
    """``JSONEncoder.default`` for the fast path: a pydantic model's non-empty fields."""
    names = model_field_names(type(obj))
    if names is None:
        raise TypeError(type(obj).__name__)
    out: dict[str, Any] = {}
    for name in names:
        item = getattr(obj, name)
        if not is_empty(item):
            out[name] = item
    return out


def _no_default(obj: Any) -> Any:
    raise TypeError(type(obj).__name__)


def _make_encoder(default: Any) -> Any:
    """A reusable compact, strict JSON encoder: ``encode(obj) -> str``.

    ``JSONEncoder.encode`` builds a new C encoder object on every call (a few µs on the hot
    path); the C encoder itself is stateless without circular-reference markers, so one is
    built here and reused. Falls back to ``JSONEncoder`` where the C accelerator is missing.
    """
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # pragma: no cover - interpreters without the C accelerator
        return json.JSONEncoder(ensure_ascii=False, allow_nan=False, check_circular=False,
                                separators=(",", ":"), default=default).encode
    iterencode = make(None, default, encode_str, None, ":", ",", False, False, False)

    def encode(obj: Any) -> str:
        return "".join(iterencode(obj, 0))

    return encode


fast_encode = _make_encoder(_model_default)
encode = _make_encoder(_no_default)


_pydantic_fields_cache: dict[type, tuple[str, ...] | None] = {}


def model_field_names(cls: type) -> tuple[str, ...] | None:
    """Field names of a pydantic v2 model class (cached), else ``None``."""
    try:
        return _pydantic_fields_cache[cls]
    except KeyError:
        pass
    names: tuple[str, ...] | None = None
    fields = getattr(cls, "__pydantic_fields__", None)
    if isinstance(fields, dict):
        names = tuple(fields)
        # "type" first: it says what the rest is (LangChain messages and documents carry one).
        if "type" in names:
            names = ("type", *(n for n in names if n != "type"))
    if len(_pydantic_fields_cache) > 4096:
        _pydantic_fields_cache.clear()
    _pydantic_fields_cache[cls] = names
    return names
