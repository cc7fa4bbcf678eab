"""What the root span says about the app: chain version, session, user, active LoggedModel.

``RootIdentity.annotate(attrs, metadata)`` runs once per LangChain root run (the tracer's only
hook) and adds to the root span's attributes:

- ``otel_mlflow.chain.version``, in priority order: (1) metadata ``otel_mlflow.version``; (2) the
  tracer's ``app_version`` argument, else ``OTEL_MLFLOW_APP_VERSION``; (3) the 12-hex hash of the
  canonical description of the root runnable (``_tracing/describe.py``, hashed by
  ``_common/canonical.py``). With (3), also ``otel_mlflow.chain.description`` (the canonical JSON)
  and ``otel_mlflow.chain.name``. With (1)/(2) the description is still recorded (the run's
  prompts and LoggedModel params come from it) when the root runnable is found.
- ``session.id``: metadata ``session_id``, then ``thread_id``, then ``conversation_id``;
  ``user.id``: metadata ``user_id`` (OTel semconv registry attributes; MLflow stores them as the
  trace's session and user).
- ``otel_mlflow.mlflow.model_id``: the LoggedModel the user set with ``mlflow.set_active_model``
  (only when ``mlflow`` is already imported: never imported here).

Finding the root runnable: LangChain does not hand it to callbacks (a ``RunnableSequence`` passes
``serialized=None``), so the hook walks up the calling frames from the callback to the outermost
frame of a LangChain / LangGraph runnable method and takes its ``self``: the runnable the app
invoked. Only frames of those packages are looked at (module name check, then ``self``), at most
``_MAX_FRAMES``.

Secrets: the description goes through the tracer's redactor (secret keys such as a bound
``api_key`` and secret-looking values become ``[REDACTED]``) before it is hashed or recorded. It is
recorded with content capture off too: templates and parameters are the app's code, not its
users' content.

Cost: the description is computed once per distinct root object and cached by ``id()`` with a
weak reference (a strong one for objects that cannot be weakly referenced), at most
``_CACHE_MAX`` entries; later roots pay the frame walk and a dict lookup. A runnable changed in
place after its first run keeps its first version (build a new object to get a new version).
Never raises (the tracer wraps the call).
"""

from __future__ import annotations

import sys
import threading
import weakref
from collections.abc import Mapping
from typing import Any

from otel_mlflow._common import semconv as A
from otel_mlflow._common import settings as _config
from otel_mlflow._common.faults import report
from otel_mlflow._common.canonical import canonical_json, short_hash
from otel_mlflow._common.redact import Redactor, default_redactor
from otel_mlflow._tracing.describe import describe

_SESSION_KEYS = ("session_id", "thread_id", "conversation_id")
_USER_KEYS = ("user_id",)
_LC_MODULES = ("langchain_core.runnables", "langchain_core.language_models", "langgraph.",
               "langchain.", "langchain_core.prompts", "langchain_core.tools")
_PASS_THROUGH = ("langchain_core", "otel_mlflow", "contextvars", "asyncio", "concurrent")
_MAX_FRAMES = 64
_CACHE_MAX = 256
_runnable: Any = None  # langchain_core's ``Runnable``, imported on first use


class _Entry:
    __slots__ = ("ref", "version", "description", "name")

    def __init__(self, ref: Any, version: str, description: str, name: str) -> None:
        self.ref = ref
        self.version = version
        self.description = description
        self.name = name


def _first(metadata: Mapping[str, Any], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        found = metadata.get(key)
        if found is not None and found != "":
            return str(found)
    return None


def find_root_runnable(start: Any = None) -> Any:
    """The outermost LangChain runnable on the calling stack (see the module docstring)."""
    global _runnable  # noqa: PLW0603 - imported once, on the first root run
    if _runnable is None:
        from langchain_core.runnables import Runnable

        _runnable = Runnable
    frame = start if start is not None else sys._getframe(1)  # noqa: SLF001
    # Cheap pass: module names and code flags only; ``f_locals`` (which builds a dict) is read
    # afterwards, outermost frame first, usually once.
    candidates = []
    for _ in range(_MAX_FRAMES):
        if frame is None:
            break
        module = frame.f_globals.get("__name__")
        if type(module) is str and module.startswith(_LC_MODULES):
            code = frame.f_code
            if code.co_argcount and code.co_varnames[0] == "self":
                candidates.append(frame)
        elif candidates and type(module) is str and not module.startswith(_PASS_THROUGH):
            break  # back in the app's code: the last runnable seen is the one it invoked
        frame = frame.f_back
    for frame in reversed(candidates):
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, _runnable):
            return candidate
    return None


class RootIdentity:
    """Adds version, session, user and active-model attributes to root spans (module doc)."""

    def __init__(self, app_version: str | None = None, redactor: Redactor | None = None) -> None:
        self.app_version = app_version or _config.env_str(_config.APP_VERSION)
        self._redactor = redactor or default_redactor()
        self._cache: dict[int, _Entry] = {}
        self._lock = threading.Lock()

    def entry(self, root: Any) -> _Entry:
        """The cached description of ``root`` (computed on its first run)."""
        key = id(root)
        entry = self._cache.get(key)
        if entry is not None:
            held = entry.ref
            if (held() if isinstance(held, weakref.ref) else held) is root:
                return entry
        # Redacted before hashing: a key bound with ``.bind(api_key=...)`` is neither recorded nor
        # part of the version (rotating it keeps the version).
        text = canonical_json(self._redactor.redact_value(None, describe(root)))
        try:
            ref: Any = weakref.ref(root)
        except TypeError:
            ref = root
        name = getattr(root, "name", None) or type(root).__name__
        entry = _Entry(ref, short_hash(text), text, str(name))
        with self._lock:
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[key] = entry
        return entry

    def annotate(self, attrs: dict[str, Any], metadata: Mapping[str, Any] | None) -> None:
        """Root-span attributes (see the module docstring); call from a callback only.

        A fault (a runnable whose attributes raise, say) is reported as ``tracer.version`` and
        leaves the span without version attributes; the rest of the span is unaffected.
        """
        try:
            self._annotate(attrs, metadata, sys._getframe(2))  # noqa: SLF001
        except Exception as exc:  # noqa: BLE001 - never into the app
            report("tracer.version", exc)

    def _annotate(self, attrs: dict[str, Any], metadata: Mapping[str, Any] | None,
                  caller: Any) -> None:
        root = find_root_runnable(caller)
        version = None
        if metadata:
            session = _first(metadata, _SESSION_KEYS)
            if session is not None:
                attrs[A.SESSION_ID] = session
            user = _first(metadata, _USER_KEYS)
            if user is not None:
                attrs[A.USER_ID] = user
            override = metadata.get(A.VERSION_METADATA_KEY)
            if override is not None and override != "":
                version = str(override)
        if root is not None:
            entry = self.entry(root)
            attrs[A.CHAIN_DESCRIPTION] = entry.description
            # The run name (``run_name`` / ``with_config(run_name=...)``) names the chain best.
            attrs[A.CHAIN_NAME] = attrs.get(A.LC_NAME) or entry.name
            version = version or self.app_version or entry.version
        else:
            version = version or self.app_version
        if version:
            attrs[A.CHAIN_VERSION] = version
        mlflow = sys.modules.get("mlflow")
        if mlflow is not None:
            get_model = getattr(mlflow, "get_active_model_id", None)
            model_id = get_model() if get_model is not None else None
            if model_id:
                attrs[A.MLFLOW_MODEL_ID] = str(model_id)
