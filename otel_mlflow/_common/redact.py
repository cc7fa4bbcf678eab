"""Secret redaction for everything otel_mlflow writes (spans, artifacts, spool, logs).

A value is replaced by :data:`REDACTED` when, in this priority order:

1. its key (case-insensitive, ``-`` treated as ``_``) names a secret: ``api_key``, ``apikey``,
   ``google_api_key``, ``x-api-key``, ``token`` and ``*_token`` / ``*token`` (but not ``*_tokens``
   counters such as ``max_tokens``), ``secret``, ``password``, ``passwd``, ``credentials``,
   ``authorization``, ``cookie``, ``private_key``, ``access_key``; plus the user's key regexes;
2. its type is a credentials object (``google.auth`` / ``google.oauth2`` credentials, any class
   named ``*Credentials``, pydantic ``SecretStr`` / ``SecretBytes``);
3. otherwise, inside strings, only the matching part of a value pattern is replaced: Google API
   keys (``AIza...``), Google OAuth access tokens (``ya29.``), ``Bearer ...``, OpenAI-style
   ``sk-...``, JWTs, PEM private keys, AWS access key ids, GitHub / Slack tokens, passwords in URLs
   (``scheme://user:password@``), ``api_key=...`` / ``password: ...`` pairs inside text, and the
   user's value regexes;
4. finally the user's ``mask(key, value) -> value`` hook sees every remaining leaf value and may
   replace it. A hook that raises fails closed: the value becomes :data:`REDACTED`.

Extra key / value regexes: constructor argument > ``OTEL_MLFLOW_REDACT_KEYS`` /
``OTEL_MLFLOW_REDACT_PATTERNS`` (comma-separated regexes) > none. An invalid user regex is logged
and ignored (the built-in rules still apply).

Cost: the key decision is cached per key string (bounded); value patterns are one compiled
alternation, run only on strings long enough to hold a secret and that contain one of the
patterns' literal anchors (a handful of ``in`` checks, far cheaper than the regex).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from otel_mlflow._common import settings as _config
from otel_mlflow._common.faults import report

_logger = logging.getLogger(__name__)

REDACTED = "[REDACTED]"

# Keys are normalised (lower case, "-" -> "_") before this runs; see the module docstring.
_SECRET_KEY_RE = re.compile(
    r"api_?key|apikey|(?<!s)token$|secret|passw(?:or)?d|credential|authorization"
    r"|^auth$|cookie|private_?key|access_?key|^pwd$|session_?key|signing_?key"
)

# Prefilter: a string holding none of these (case-sensitive) anchors, and none of the
# lower-case anchors in its lower-cased form, cannot match a built-in value pattern.
_ANCHORS = ("AIza", "ya29.", "sk-", "eyJ", "PRIVATE KEY", "AKIA", "ASIA", "ghp_", "gho_", "ghu_",
            "ghs_", "ghr_", "xox", "://")
_LOWER_ANCHORS = ("bearer", "api_key", "api-key", "apikey", "access", "auth", "refresh", "secret",
                  "passw")
# The shortest built-in match is longer than this; shorter strings are never scanned.
_MIN_SECRET_CHARS = 12


def _value_patterns(json_text: bool) -> tuple[str, ...]:
    """The built-in value patterns; ``json_text`` variants run over compact JSON text.

    Both variants must redact the same characters: in JSON text a match never crosses a string
    boundary nor splits an escape (the result stays valid JSON), and the characters ``json``
    escapes (backslash, control characters) are matched in their escaped form.
    """
    if json_text:
        body = r'(?:[^"\\]|\\.)'
        end = r'(?=")'
        white = r"(?:\s|\\[tnrf]|\\u00(?:0b|1[c-f]))"

        def chars(extra: str) -> str:
            # One character of a token: a plain one, or an escaped backslash / non-space control.
            return rf'(?:[^\s"\\{extra}]|\\\\|\\b|\\u00(?:0[0-7ef]|1[0-9ab]))'

        quote = r"(?:\\?[\"'])?"
        # A word start also follows an escaped control character such as "\n", but not an
        # escaped backslash followed by a letter (JSON "\\b" is a backslash and "b": no boundary):
        # the escape's backslash must be preceded by an even number of backslashes (0 or 2 here).
        word = (rf"(?:\b|(?<=(?<!\\)\\[tnrfb])|(?<=(?<!\\)\\\\\\[tnrfb])"
                rf"|(?<=(?<!\\)\\u00[0-9a-f]{{2}})|(?<=(?<!\\)\\\\\\u00[0-9a-f]{{2}}))")
    else:
        body = r"[\s\S]"
        end = r"\Z"
        white = r"\s"

        def chars(extra: str) -> str:
            return rf'[^\s"{extra}]'

        quote = r"[\"']?"
        word = r"\b"
    kv_stop = "',;&}"
    return (
        r"AIza[0-9A-Za-z_\-]{35}",
        r"ya29\.[0-9A-Za-z_\-.]{20,}",
        # "Bearer <token>": the token must hold a digit or token punctuation, so prose such as
        # "bearer responsibility" survives.
        rf"(?i:bearer){white}+(?=[\w\-.~+/]*[\d\-.~+/])[\w\-.~+/]{{8,}}=*",
        r"sk-(?:proj-|ant-|live-|test-)?[A-Za-z0-9_\-]{20,}",
        r"eyJ[A-Za-z0-9_\-]{4,}\.eyJ[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]{4,}",
        rf"-----BEGIN[A-Z ]*PRIVATE KEY-----{body}*?(?:-----END[A-Z ]*PRIVATE KEY-----|{end})",
        r"(?:AKIA|ASIA)[A-Z0-9]{16}",
        r"gh[pousr]_[A-Za-z0-9]{36,}",
        r"xox[abposr]-[A-Za-z0-9\-]{10,}",
        # user:password in a URL: only the password part is replaced (see _replace).
        rf"(?<=://)(?P<url_user>{chars('/:@')}+):(?P<url_pw>{chars('/@')}+)(?=@)",
        # key=value / key: value inside text: only the value is replaced.
        rf"(?P<kv_key>{word}(?i:(?:api[_\-]?key|access[_\-]?token|auth[_\-]?token|refresh[_\-]?token"
        rf"|client[_\-]?secret|secret[_\-]?key|password|passwd)){quote}{white}*[:=]{white}*"
        rf"{quote})(?P<kv_val>{chars(kv_stop)}{{4,}})",
    )


_TEXT_RE = re.compile("|".join(_value_patterns(json_text=False)))
_JSON_RE = re.compile("|".join(_value_patterns(json_text=True)))

_KEY_CACHE_MAX = 4096


def _replace(match: re.Match[str]) -> str:
    """Replace the secret part of a match, keeping the key or user name around it."""
    groups = match.groupdict()
    if groups.get("kv_val") is not None:
        return f"{groups['kv_key']}{REDACTED}"
    if groups.get("url_pw") is not None:
        return f"{groups['url_user']}:{REDACTED}"
    return REDACTED


def _may_hold(text: str) -> bool:
    """Cheap prefilter: False proves no built-in value pattern matches ``text``."""
    for anchor in _ANCHORS:
        if anchor in text:
            return True
    low = text.lower()
    for anchor in _LOWER_ANCHORS:
        if anchor in low:
            return True
    return False


def _compile_user(patterns: Iterable[str], what: str) -> list[re.Pattern[str]]:
    compiled: list[re.Pattern[str]] = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern, re.IGNORECASE if what == "key" else 0))
        except re.error as exc:
            _logger.warning("otel_mlflow: ignoring invalid redaction %s regex %r: %s",
                            what, pattern, exc)
    return compiled


class Redactor:
    """Replaces secrets by key, by type and by value pattern (see the module docstring).

    ``extra_keys`` / ``extra_patterns``: regexes (strings); ``None`` reads the environment.
    ``mask``: ``mask(key, value) -> value`` called for every leaf value after the built-in rules
    (``key`` is the nearest mapping key, or ``None``). Thread-safe; instances are reusable.
    """

    def __init__(
        self,
        extra_keys: Iterable[str] | None = None,
        extra_patterns: Iterable[str] | None = None,
        mask: Callable[[str | None, Any], Any] | None = None,
    ) -> None:
        keys = list(extra_keys) if extra_keys is not None else _config.env_list(_config.REDACT_KEYS)
        patterns = (
            list(extra_patterns)
            if extra_patterns is not None
            else _config.env_list(_config.REDACT_PATTERNS)
        )
        self._user_keys = _compile_user(keys, "key")
        user_values = _compile_user(patterns, "value")
        self._value_re = (
            re.compile("|".join([*_value_patterns(False), *(f"(?:{p.pattern})"
                                                              for p in user_values)]))
            if user_values
            else _TEXT_RE
        )
        # With user value patterns the literal prefilter no longer proves absence.
        self._always_scan = bool(user_values)
        self._mask = mask
        self._key_cache: dict[str, bool] = {}
        self._cache_lock = threading.Lock()
        self._type_cache: dict[type, bool] = {}

    @property
    def has_mask(self) -> bool:
        return self._mask is not None

    @property
    def key_cache(self) -> Mapping[str, bool]:
        """Decisions of :meth:`is_secret_key` so far (read-only view for hot loops)."""
        return self._key_cache

    @property
    def json_text_safe(self) -> bool:
        """True when :meth:`redact_json_text` is equivalent to redacting each string.

        A mask hook needs every leaf and a user value regex may cross JSON syntax, so either
        one requires per-value redaction.
        """
        return self._mask is None and not self._always_scan

    def is_secret_key(self, key: object) -> bool:
        """True when a mapping key names a secret (cached per key)."""
        if not isinstance(key, str):
            return False
        cached = self._key_cache.get(key)
        if cached is not None:
            return cached
        norm = key.lower().replace("-", "_")
        secret = _SECRET_KEY_RE.search(norm) is not None or any(
            p.search(key) for p in self._user_keys
        )
        with self._cache_lock:
            if len(self._key_cache) >= _KEY_CACHE_MAX:
                self._key_cache.clear()
            self._key_cache[key] = secret
        return secret

    def is_secret_object(self, value: object) -> bool:
        """True for credentials objects, recognised by type (cached per type)."""
        cls = type(value)
        cached = self._type_cache.get(cls)
        if cached is not None:
            return cached
        secret = False
        try:
            for klass in cls.__mro__:
                module = getattr(klass, "__module__", "") or ""
                name = klass.__name__
                if (
                    module.startswith(("google.auth", "google.oauth2"))
                    or name.endswith(("Credentials", "Credential"))
                    or name in ("SecretStr", "SecretBytes", "Secret")
                ):
                    secret = True
                    break
        except Exception:  # noqa: BLE001 - exotic metaclasses: treat as not secret
            secret = False
        with self._cache_lock:
            if len(self._type_cache) >= _KEY_CACHE_MAX:
                self._type_cache.clear()
            self._type_cache[cls] = secret
        return secret

    def redact_text(self, text: str) -> str:
        """Replace secret substrings of ``text`` (value patterns only)."""
        if not self._always_scan and (len(text) < _MIN_SECRET_CHARS or not _may_hold(text)):
            return text
        try:
            return self._value_re.sub(_replace, text)
        except Exception as exc:  # noqa: BLE001 - fail closed
            report("redact.text", exc)
            return REDACTED

    def redact_json_text(self, text: str) -> str:
        """Replace secret substrings inside the strings of a JSON document; stays valid JSON.

        Only for redactors where :attr:`json_text_safe` is true (built-in patterns only).
        """
        if len(text) < _MIN_SECRET_CHARS or not _may_hold(text):
            return text
        return _JSON_RE.sub(_replace, text)

    def apply_mask(self, key: str | None, value: Any) -> Any:
        """Run the user's hook on one leaf value; a failing hook yields :data:`REDACTED`."""
        if self._mask is None:
            return value
        try:
            return self._mask(key, value)
        except Exception as exc:  # noqa: BLE001 - user hook: fail closed, never raise
            report("redact.mask", exc)
            return REDACTED

    def redact_value(self, key: str | None, value: Any, _depth: int = 0) -> Any:
        """Return ``value`` with secrets replaced; containers are copied, never mutated.

        Plain JSON-like values (str, numbers, mappings, lists, tuples) are handled; other objects
        are returned unchanged unless they are credentials (use ``Serializer`` for arbitrary
        objects). Nesting deeper than 64 levels is returned as :data:`REDACTED` (fail closed).
        """
        if key is not None and self.is_secret_key(key):
            return REDACTED
        if isinstance(value, str):
            return self.apply_mask(key, self.redact_text(value))
        if value is None or isinstance(value, (bool, int, float)):
            return self.apply_mask(key, value)
        if _depth > 64:
            return REDACTED
        if isinstance(value, Mapping):
            return {k: self.redact_value(k if isinstance(k, str) else str(k), v, _depth + 1)
                    for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            items = [self.redact_value(key, v, _depth + 1) for v in value]
            return items if isinstance(value, list) else tuple(items)
        if self.is_secret_object(value):
            return REDACTED
        return self.apply_mask(key, value)


_default: Redactor | None = None
_default_lock = threading.Lock()


def default_redactor() -> Redactor:
    """A process-wide ``Redactor()`` (environment-configured), built on first use."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Redactor()
    return _default
