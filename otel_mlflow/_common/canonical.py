"""Canonical JSON and the 12-hex short hash that names chain versions and prompt templates.

Canonical form (stable across processes, restarts and Python hash seeds): ``json.dumps`` with
sorted keys, no whitespace (``(",", ":")`` separators), ``ensure_ascii=False``, NaN refused; values
that are not JSON (anything the describer could not reduce) become their type's qualified name,
never a ``repr`` (which may hold a memory address). The hash is the first 12 hex characters of the
SHA-256 of the canonical text's UTF-8 bytes.

Used by both sides: the tracer hashes a chain's description once per chain
(``otel_mlflow._tracing.version``), the record side hashes each prompt template
(``otel_mlflow._record.version``). Pure, no I/O.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

HASH_CHARS = 12


def _fallback(value: Any) -> str:
    kind = type(value)
    return f"{kind.__module__}.{kind.__qualname__}"


def canonical_json(value: Any) -> str:
    """``value`` as canonical JSON text (see the module docstring)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False, default=_fallback)


def short_hash(text: str) -> str:
    """The first 12 hex characters of SHA-256 of ``text`` (UTF-8)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:HASH_CHARS]


def canonical_hash(value: Any) -> str:
    """``short_hash(canonical_json(value))``."""
    return short_hash(canonical_json(value))
