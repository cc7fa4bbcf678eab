"""The per-value walk of ``Serializer`` (``serialize``): the conversion steps of its docstring.

Used for every value the fast path (one checking pass + the C ``json`` encoder) cannot take:
redaction of keys, strings and credentials objects value by value, cycles, depth and width limits,
pydantic models / dataclasses / enums / dates / numpy values, ``repr`` of the rest. A base class
of ``Serializer``, which holds the limits and the redactor it reads.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import json
import uuid
from collections.abc import Mapping
from decimal import Decimal
from pathlib import PurePath
from typing import Any

from otel_mlflow._common.redact import REDACTED, Redactor
from otel_mlflow._tracing.content.json_text import (
    BASE64_MIN_CHARS,
    INT64_MAX,
    INT64_MIN,
    base64_summary,
    clean_str,
    is_empty,
    json_float,
    model_field_names,
)

TRUNCATED_KEY = "otel_mlflow.truncated"
CYCLE_MARKER = "[otel_mlflow: cycle]"
DEPTH_MARKER = "[otel_mlflow: max depth]"
_MAX_KEY_CHARS = 256
_MAX_REPR_CHARS = 2048


class _Walk:
    """State of one conversion: the path (for cycles) and the characters cut from strings."""

    __slots__ = ("path", "cut")

    def __init__(self) -> None:
        self.path: set[int] = set()
        self.cut = 0




class TreeWalk:
    """Value-by-value conversion into JSON-ready values (for a ``Serializer``: see the docstring)."""

    redactor: Redactor
    max_chars: int
    max_depth: int
    max_items: int
    _string_cap: int

    def dumps(self, value: Any, key: str | None = None) -> str:  # ``Serializer.dumps``
        raise NotImplementedError

    def _str(self, text: str, key: str | None, walk: _Walk) -> Any:
        if len(text) >= BASE64_MIN_CHARS:
            summary = base64_summary(text)
            if summary is not None:
                walk.cut += len(text)
                return summary
        if len(text) > self._string_cap:
            # Redact a little beyond the cut so a secret straddling it is still recognised;
            # only this window is copied, never the whole (possibly 10 MB) string.
            cap = self._string_cap
            window = self.redactor.redact_text(clean_str(text[: cap + 512]))
            walk.cut += len(text) - cap
            preview = window[:cap]
            if self.redactor.has_mask:
                preview = self._leaf_mask(key, preview, walk)
            return {TRUNCATED_KEY: True, "original_chars": len(text), "preview": preview}
        text = self.redactor.redact_text(clean_str(text))
        if self.redactor.has_mask:
            return self._leaf_mask(key, text, walk)
        return text

    def _leaf_mask(self, key: str | None, value: Any, walk: _Walk) -> Any:
        masked = self.redactor.apply_mask(key, value)
        if masked is value or isinstance(masked, (str, bool, int, float)) or masked is None:
            if isinstance(masked, float):
                return json_float(masked)
            return masked
        # A hook returning a structure: convert it once, without calling the hook again (a
        # ``Serializer`` of the same size, default redaction, no hook).
        plain = Redactor(extra_keys=(), extra_patterns=())
        fresh = type(self)(self.max_chars, plain)  # type: ignore[call-arg]
        return json.loads(fresh.dumps(masked))

    def _convert(self, value: Any, key: str | None, depth: int, walk: _Walk) -> Any:
        cls = type(value)
        if cls is str:
            return self._str(value, key, walk)
        if value is None or cls is bool:
            return self._leaf_mask(key, value, walk) if self.redactor.has_mask else value
        if cls is int:
            out: Any = value if INT64_MIN <= value <= INT64_MAX else self._bigint(value)
            return self._leaf_mask(key, out, walk) if self.redactor.has_mask else out
        if cls is float:
            return self._leaf_mask(key, json_float(value), walk) if self.redactor.has_mask \
                else json_float(value)
        if depth >= self.max_depth:
            return DEPTH_MARKER
        if cls is dict or isinstance(value, Mapping):
            return self._mapping(value, depth, walk)
        if cls is list or cls is tuple or isinstance(value, (list, tuple, set, frozenset)):
            return self._sequence(value, key, depth, walk)
        return self._object(value, key, depth, walk)

    def _bigint(self, value: int) -> str:
        try:
            return str(value)
        except ValueError:  # beyond the interpreter's int -> str digit limit
            return f"<int of {value.bit_length()} bits>"

    def _mapping(self, value: Mapping[Any, Any], depth: int, walk: _Walk) -> Any:
        ident = id(value)
        if ident in walk.path:
            return CYCLE_MARKER
        walk.path.add(ident)
        try:
            out: dict[str, Any] = {}
            redactor = self.redactor
            for index, (raw_key, item) in enumerate(value.items()):
                if index >= self.max_items:
                    out[f"otel_mlflow.more_items#{index}"] = (
                        f"[otel_mlflow: {len(value) - index} more items]"
                    )
                    break
                k = raw_key if type(raw_key) is str else self._key(raw_key)
                if len(k) > _MAX_KEY_CHARS:
                    k = k[:_MAX_KEY_CHARS]
                if not k.isascii():
                    k = clean_str(k)
                if k in out:
                    k = f"{k}#{index}"
                if redactor.is_secret_key(k):
                    out[k] = REDACTED
                else:
                    out[k] = self._convert(item, k, depth + 1, walk)
            return out
        finally:
            walk.path.discard(ident)

    def _key(self, raw_key: Any) -> str:
        if raw_key is None or isinstance(raw_key, (bool, int, float)):
            return str(raw_key)
        if isinstance(raw_key, enum.Enum):
            return str(raw_key.value)
        try:
            text = str(raw_key)
        except Exception:  # noqa: BLE001 - a key whose __str__ fails still needs a name
            text = f"<{type(raw_key).__name__}>"
        return self.redactor.redact_text(text)

    def _sequence(self, value: Any, key: str | None, depth: int, walk: _Walk) -> Any:
        ident = id(value)
        if ident in walk.path:
            return CYCLE_MARKER
        walk.path.add(ident)
        try:
            out: list[Any] = []
            for index, item in enumerate(value):
                if index >= self.max_items:
                    out.append(f"[otel_mlflow: {len(value) - index} more items]")
                    break
                out.append(self._convert(item, key, depth + 1, walk))
            return out
        finally:
            walk.path.discard(ident)

    def _object(self, value: Any, key: str | None, depth: int, walk: _Walk) -> Any:
        redactor = self.redactor
        if redactor.is_secret_object(value):
            return REDACTED
        if isinstance(value, (bytes, bytearray, memoryview)):
            return {"type": "bytes", "size": value.nbytes if isinstance(value, memoryview)
                    else len(value)}
        if isinstance(value, str):  # str subclasses
            return self._str(str.__str__(value), key, walk)
        if isinstance(value, bool):
            return bool(value)
        if isinstance(value, int):
            return self._convert(int(value), key, depth, walk)
        if isinstance(value, float):
            return self._convert(float(value), key, depth, walk)
        if isinstance(value, enum.Enum):
            return self._convert(value.value, key, depth + 1, walk)
        cls = type(value)
        names = model_field_names(cls)
        if names is not None:
            return self._fields(value, names, depth, walk)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return self._fields(value, tuple(f.name for f in dataclasses.fields(value)),
                                depth, walk, skip_empty=False)
        if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
            return value.isoformat()
        if isinstance(value, (uuid.UUID, PurePath)):
            return str(value)
        if isinstance(value, Decimal):
            return json_float(float(value)) if value.is_finite() else str(value)
        if isinstance(value, BaseException):
            return {"type": cls.__name__,
                    "message": self._convert(self._safe_str(value), "message", depth + 1, walk)}
        if cls.__module__ == "numpy":
            return self._numpy(value, key, depth, walk)
        return self._str(self._safe_repr(value), key, walk)

    def _fields(self, value: Any, names: tuple[str, ...], depth: int, walk: _Walk,
                skip_empty: bool = True) -> Any:
        ident = id(value)
        if ident in walk.path:
            return CYCLE_MARKER
        walk.path.add(ident)
        try:
            out: dict[str, Any] = {}
            redactor = self.redactor
            for name in names:
                try:
                    item = getattr(value, name)
                except Exception:  # noqa: BLE001 - a field that cannot be read is skipped
                    continue
                if skip_empty and is_empty(item):
                    continue
                if redactor.is_secret_key(name):
                    out[name] = REDACTED
                else:
                    out[name] = self._convert(item, name, depth + 1, walk)
            extra = getattr(value, "__pydantic_extra__", None)
            if isinstance(extra, dict) and extra:
                for name, item in extra.items():
                    k = str(name)
                    out[k] = REDACTED if redactor.is_secret_key(k) else self._convert(
                        item, k, depth + 1, walk)
            return out
        finally:
            walk.path.discard(ident)

    def _numpy(self, value: Any, key: str | None, depth: int, walk: _Walk) -> Any:
        size = getattr(value, "size", None)
        if isinstance(size, int) and size <= self.max_items and hasattr(value, "tolist"):
            return self._convert(value.tolist(), key, depth, walk)
        return {"type": type(value).__name__, "shape": list(getattr(value, "shape", ()) or ()),
                "dtype": str(getattr(value, "dtype", ""))}

    @staticmethod
    def _safe_str(value: Any) -> str:
        try:
            return str(value)
        except Exception:  # noqa: BLE001
            return f"<{type(value).__name__}>"

    @staticmethod
    def _safe_repr(value: Any) -> str:
        try:
            text = repr(value)
        except Exception:  # noqa: BLE001 - a broken __repr__ must not break tracing
            return f"<{type(value).__name__}>"
        if not isinstance(text, str):
            return f"<{type(value).__name__}>"
        return text if len(text) <= _MAX_REPR_CHARS else text[:_MAX_REPR_CHARS] + "..."
