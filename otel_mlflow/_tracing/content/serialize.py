"""Safe, bounded, redacting JSON for span attributes and artifacts.

``Serializer.dumps(value)`` turns anything a LangChain app hands to a callback into JSON text, in
one pass that also redacts secrets (``otel_mlflow._common.redact``). It never raises and always returns
valid JSON (``json.loads`` round-trips it); non-ASCII text is kept readable (``ensure_ascii=False``).

How values are converted, in priority order:

1. secret keys and credentials objects -> ``"[REDACTED]"``; secret substrings inside strings are
   replaced (see ``_redact``);
2. ``str`` (lone surrogates / invalid code points replaced by U+FFFD; strings longer than
   ``max_chars`` cut to a preview plus a marker; ``data:...;base64,`` URLs and long base64 blobs
   summarised as ``{"otel_mlflow.omitted": "base64", "mime_type": ..., "original_chars": n}``),
   ``bool``, ``int`` (beyond 64 bits -> string), ``float`` (NaN / inf -> ``"NaN"``,
   ``"Infinity"``, ``"-Infinity"``), ``None``;
3. mappings (keys through ``str()``; a key colliding after that gets a ``#n`` suffix), lists,
   tuples, sets (as lists);
4. ``bytes`` / ``bytearray`` / ``memoryview`` -> ``{"type": "bytes", "size": n}`` (never content);
5. pydantic models (LangChain messages, Documents, generations...) -> their fields by attribute
   access, empty values skipped (no ``model_dump`` / ``dumpd`` of whole object graphs);
   dataclasses -> their fields; enums -> value; datetime / date / time -> ISO text; UUID, Decimal,
   paths -> text; exceptions -> ``{"type", "message"}``; numpy scalars / small arrays -> numbers;
6. anything else -> its ``repr`` (capped, redacted); a failing ``repr`` -> ``<ClassName>``.
   Iterators and generators are never consumed (that would change the user's data).

Limits: strings are capped at ``max_chars`` each; nesting deeper than ``max_depth`` becomes
``"[otel_mlflow: max depth]"``; a container met again on its own path becomes
``"[otel_mlflow: cycle]"``; containers longer than ``max_items`` keep the first items plus an
``"[otel_mlflow: N more items]"`` entry. When the whole JSON text is longer than ``max_chars`` the
result is ``{"otel_mlflow.truncated": true, "original_chars": N, "preview": "<start of the
JSON text>"}`` (itself at most ``max_chars``; ``N`` is the size the full text would have had, an
estimate when strings were already cut).

``max_chars``: constructor argument > ``OTEL_MLFLOW_MAX_ATTRIBUTE_CHARS`` > 16384 (minimum 256).

Cost: ``dumps`` runs on the application thread for every callback. Plain values (short strings,
numbers, dicts with string keys, lists, pydantic models of those) take one checking pass and the
C ``json`` encoder, with value patterns redacted once over the JSON text; everything else takes
the per-value walk above (``tree_walk``). Both give the same document (a property test holds
them to it).
"""

from __future__ import annotations

import json
import math
from typing import Any

from otel_mlflow._common import settings as _config
from otel_mlflow._common.faults import report
from otel_mlflow._common.redact import REDACTED, Redactor, default_redactor
from otel_mlflow._tracing.content.json_text import (
    BASE64_MIN_CHARS,
    INT64_MAX,
    INT64_MIN,
    OMITTED_KEY,
    base64_summary,
    clean_str,
    encode,
    encode_str,
    fast_encode,
    is_empty,
    model_field_names,
)
from otel_mlflow._tracing.content.tree_walk import (
    _MAX_KEY_CHARS,
    CYCLE_MARKER,
    DEPTH_MARKER,
    TRUNCATED_KEY,
    TreeWalk,
    _Walk,
)

__all__ = ["CYCLE_MARKER", "DEPTH_MARKER", "OMITTED_KEY", "TRUNCATED_KEY", "Serializer"]

DEFAULT_MAX_CHARS = 16384
MIN_MAX_CHARS = 256
DEFAULT_MAX_DEPTH = 24
DEFAULT_MAX_ITEMS = 1000


class Serializer(TreeWalk):
    """Redacting, size-capped JSON for one attribute or artifact value (module docstring).

    Thread-safe and reusable; build one per tracer / exporter. ``dumps`` and ``scalar`` never
    raise: an internal fault is counted (``otel_mlflow._common.faults``) and yields a valid placeholder.
    """

    def __init__(
        self,
        max_chars: int | None = None,
        redactor: Redactor | None = None,
        *,
        max_depth: int = DEFAULT_MAX_DEPTH,
        max_items: int = DEFAULT_MAX_ITEMS,
    ) -> None:
        if max_chars is None:
            max_chars = _config.env_int(_config.MAX_ATTRIBUTE_CHARS, DEFAULT_MAX_CHARS)
        self.max_chars = max(int(max_chars), MIN_MAX_CHARS)
        self.redactor = redactor if redactor is not None else default_redactor()
        # A cut string plus its marker still fits in one attribute.
        self._string_cap = self.max_chars - 128
        self.max_depth = max_depth
        self.max_items = max_items
        # Without a user hook, plain short strings need no per-value redaction call.
        self._plain_str_ok = not self.redactor.has_mask
        # Plain structures may go through the C encoder, redacted as JSON text afterwards.
        self._json_text_ok = self.redactor.json_text_safe

    # --- public -----------------------------------------------------------------------------
    def dumps(self, value: Any, key: str | None = None) -> str:
        """JSON text for ``value`` (``key``: the name it was found under, for key redaction)."""
        try:
            if key is not None and self.redactor.is_secret_key(key):
                return encode_str(REDACTED)
            cls = type(value)
            # Fast paths: most callback payloads are short strings or small plain structures.
            if isinstance(value, str) and len(value) <= self.max_chars and self._plain_str_ok:
                text = self.redactor.redact_text(
                    clean_str(value if cls is str else str.__str__(value)))
                if len(text) < BASE64_MIN_CHARS or base64_summary(text) is None:
                    out = encode_str(text)
                    if len(out) <= self.max_chars:
                        return out
            elif value is None or cls is bool or (
                cls is int and INT64_MIN <= value <= INT64_MAX
            ):
                if self._plain_str_ok:
                    return encode(value)
            elif self._json_text_ok:
                out = self._fast(value)
                if out is not None:
                    return out
            walk = _Walk()
            data = self._convert(value, key, 0, walk)
            out = encode(data)
            if len(out) <= self.max_chars:
                return out
            return self._truncated(out, len(out) + walk.cut)
        except Exception as exc:  # noqa: BLE001 - never raise into the host app
            report("serialize.dumps", exc)
            return encode({TRUNCATED_KEY: True, "error": type(exc).__name__})

    def scalar(self, value: Any, key: str | None = None) -> str | int | float | bool:
        """One attribute value: bool / int / float kept, str redacted and capped, else JSON."""
        try:
            if key is not None and self.redactor.is_secret_key(key):
                return REDACTED
            if isinstance(value, bool):
                return self._masked(key, value)
            if isinstance(value, int):
                if INT64_MIN <= value <= INT64_MAX:
                    return self._masked(key, int(value))
                return self._masked(key, self._bigint(value))
            if isinstance(value, float):
                return self._masked(key, float(value))
            if isinstance(value, str):
                text = self.redactor.redact_text(clean_str(value))
                if len(text) > self.max_chars:
                    suffix = f"...[otel_mlflow.truncated original_chars={len(value)}]"
                    text = text[: self.max_chars - len(suffix)] + suffix
                return self._masked(key, text)
            return self.dumps(value, key)
        except Exception as exc:  # noqa: BLE001 - never raise into the host app
            report("serialize.scalar", exc)
            return f"<{type(value).__name__}>"

    def fragment(self, value: Any, depth: int = 0) -> str | None:
        """The JSON text ``dumps`` writes for ``value`` at nesting ``depth`` of a document, or None.

        For documents built piece by piece (``otel_mlflow._tracing.content.values``): a string within the cap
        that is no base64 blob, or a plain structure (see ``_fast``), gives exactly the text the
        whole-document walk would write for it; anything needing a marker, a summary or the mask
        hook gives None, and the caller falls back to ``dumps`` of the whole document. The caller
        checks the finished document against ``max_chars``.
        """
        if not self._plain_str_ok:
            return None
        try:
            if type(value) is str:
                if len(value) >= BASE64_MIN_CHARS and (
                    len(value) > self._string_cap or base64_summary(value) is not None
                ):
                    return None
                return encode_str(self.redactor.redact_text(clean_str(value)))
            if value is None or type(value) is bool or (
                type(value) is int and INT64_MIN <= value <= INT64_MAX
            ):
                return encode(value)
            if not self._json_text_ok or self._scan(value, depth, self.max_chars) < 0:
                return None
            out = fast_encode(value)
            if not out.isascii():
                out.encode("utf-8")
            return self.redactor.redact_json_text(out)
        except Exception:  # noqa: BLE001 - NaN, surrogates, odd fields: the caller's dumps copes
            return None

    # --- internals --------------------------------------------------------------------------
    def _fast(self, value: Any) -> str | None:
        """JSON text through the C encoder when ``value`` is plain, else None (full walk).

        Plain: dicts with short str keys that name no secret, lists, tuples, strings shorter
        than the base64 threshold, numbers, bools, None and pydantic models of those, within
        ``max_depth`` and roughly ``max_chars``. Value patterns are then redacted on the JSON
        text (``Redactor.redact_json_text``), which keeps it valid.
        """
        try:
            if self._scan(value, 0, self.max_chars) < 0:
                return None
            out = fast_encode(value)
        except Exception:  # noqa: BLE001 - NaN, huge ints, odd fields: the full walk copes
            return None
        if not out.isascii():
            try:
                out.encode("utf-8")
            except UnicodeEncodeError:
                return None
        out = self.redactor.redact_json_text(out)
        return out if len(out) <= self.max_chars else None

    def _scan(self, value: Any, depth: int, budget: int) -> int:
        """Remaining character budget if ``value`` is plain (see ``_fast``), else -1."""
        if depth > self.max_depth:
            return -1
        cls = type(value)
        is_secret = self.redactor.is_secret_key
        if cls is dict:
            if len(value) > self.max_items:
                return -1
            known = self.redactor.key_cache  # a plain dict read: no call for known keys
            for k, item in value.items():
                if type(k) is not str or len(k) > _MAX_KEY_CHARS:
                    return -1
                secret = known.get(k)
                if secret is None:
                    secret = is_secret(k)
                if secret:
                    return -1
                budget -= len(k) + 4
                tv = type(item)
                if tv is str:
                    n = len(item)
                    if n >= BASE64_MIN_CHARS:
                        return -1
                    budget -= n + 3
                elif item is None or tv is bool or (
                    tv is int and INT64_MIN <= item <= INT64_MAX
                ):
                    budget -= 6
                else:
                    budget = self._scan(item, depth + 1, budget)
                if budget < 0:
                    return -1
            return budget
        if cls is list or cls is tuple:
            if len(value) > self.max_items:
                return -1
            for item in value:
                tv = type(item)
                if tv is str:
                    n = len(item)
                    if n >= BASE64_MIN_CHARS:
                        return -1
                    budget -= n + 3
                elif item is None or tv is bool or (
                    tv is int and INT64_MIN <= item <= INT64_MAX
                ):
                    budget -= 6
                else:
                    budget = self._scan(item, depth + 1, budget)
                if budget < 0:
                    return -1
            return budget
        if cls is str:
            return budget - len(value) - 2 if len(value) < BASE64_MIN_CHARS else -1
        if value is None or cls is bool or (cls is int and INT64_MIN <= value <= INT64_MAX):
            return budget - 6
        if cls is float:
            return budget - 24 if math.isfinite(value) else -1
        names = model_field_names(cls)
        if names is None or self.redactor.is_secret_object(value):
            return -1
        if getattr(value, "__pydantic_extra__", None):
            return -1
        for name in names:
            item = getattr(value, name)
            if is_empty(item):
                continue
            if is_secret(name):
                return -1
            budget = self._scan(item, depth + 1, budget - len(name) - 4)
            if budget < 0:
                return -1
        return budget

    def _masked(self, key: str | None, value: Any) -> str | int | float | bool:
        if not self.redactor.has_mask:
            return value  # type: ignore[no-any-return]
        masked = self.redactor.apply_mask(key, value)
        if isinstance(masked, (str, bool, int, float)):
            return masked
        return self.dumps(masked)

    def _truncated(self, text: str, original_chars: int) -> str:
        """The truncation marker with as much of ``text`` as fits in ``max_chars``."""
        shell = encode({TRUNCATED_KEY: True, "original_chars": original_chars,
                                 "preview": ""})
        room = self.max_chars - len(shell)
        take = room
        while take > 0:
            preview = encode_str(clean_str(text[:take]))
            if len(preview) - 2 <= room:
                return encode({TRUNCATED_KEY: True, "original_chars": original_chars,
                                        "preview": json.loads(preview)})
            # Escapes made it longer; shrink in proportion and try again.
            take = max(0, min(take - 1, int(take * room / (len(preview) - 2)) - 1))
        return shell
