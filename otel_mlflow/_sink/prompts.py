"""I/O: a run's prompt templates matched to MLflow's Prompt Registry, linked to trace, run, model.

``PromptLinks(client_getter, register).for_record(record)`` runs before the run is created. For
each template in ``record.chain["prompts"]`` (``prompts.json``) it finds
the registry prompt versions it uses, once per template hash per writer (cached, bounded):

- **Matching, by content**: the app loaded a prompt with ``mlflow.genai.load_prompt`` and built
  its LangChain template from ``to_single_brace_format()``, so the registry version's
  single-brace text equals one message's template text (a text prompt), or its messages equal the
  template's messages, role and text (a chat prompt). The registry is scanned up to
  ``_MAX_PROMPTS`` prompts x ``_MAX_VERSIONS`` versions, newest versions first; nothing is
  registered for a match (no duplicate).
- **Registering** (``register=True``: argument ``register_prompts``, env
  ``OTEL_MLFLOW_REGISTER_PROMPTS``, default off): a template with no match is registered as a
  new prompt version named ``<chain name>.<prompt name>`` (``{x}`` placeholders become
  MLflow's ``{{x}}``; one message -> a text prompt, several -> a chat prompt), tagged
  ``otel_mlflow.prompt.hash``, and linked the same way.

Linking, as MLflow's ``link_prompt_version(s)_to_*`` do it, but through this writer's own client
(MLflow's registry-store defaults use the process's global tracking URI, which need not be the
writer's): the run and the trace get the tag ``mlflow.linkedPrompts`` (``[{"name", "version"}]``,
MLflow's ``update_linked_prompts_tag`` format; the run's at creation, the trace's with its
metadata, ``_sink/models.set_trace_model``), the trace also the store's prompt associations
(``link_prompts_to_trace``), and the LoggedModel the same tag, once per model and version per
writer. Raises on failure (the caller reports it: a prompt link never fails the run's write).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from otel_mlflow._record.model import TraceRecord
from otel_mlflow._common.forksafe import new_lock_after_fork

PROMPT_HASH_TAG = "otel_mlflow.prompt.hash"
LINKED_PROMPTS = "mlflow.linkedPrompts"  # mlflow.tracing.constant.TraceTagKey.LINKED_PROMPTS
_MAX_PROMPTS = 200
_MAX_VERSIONS = 20
_CACHE_MAX = 512
_MISS_TTL_SECONDS = 300.0  # a template not in the registry is looked up again after this
_VAR = re.compile(r"(?<!\{)\{([A-Za-z_][A-Za-z0-9_]*)\}(?!\})")
_NAME_CHARS = re.compile(r"[^A-Za-z0-9_.\-]")
_ROLES = {"human": "user", "ai": "assistant"}


def _texts(prompt: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(role, template text) of a template's messages, placeholders left out."""
    out = []
    for msg in prompt.get("messages") or []:
        template = msg.get("template")
        if isinstance(template, str):
            out.append((_ROLES.get(str(msg.get("role")), str(msg.get("role"))), template))
    return out


def matches(prompt: Mapping[str, Any], single_brace: Any) -> bool:
    """Whether a registry version (its ``to_single_brace_format()``) is used by ``prompt``."""
    texts = _texts(prompt)
    if isinstance(single_brace, str):
        return any(text == single_brace for _, text in texts)
    if isinstance(single_brace, list):
        theirs = [(_ROLES.get(str(m.get("role")), str(m.get("role"))), m.get("content"))
                  for m in single_brace if isinstance(m, Mapping)]
        return bool(theirs) and theirs == texts
    return False


def double_brace(text: str) -> str:
    """LangChain's ``{x}`` placeholders as MLflow's ``{{x}}``."""
    return _VAR.sub(r"{{\1}}", text)


class PromptLinks:
    """Registry matches and links for prompt templates (see the module docstring)."""

    def __init__(self, client: Callable[[], Any], register: bool = False) -> None:
        self._client = client
        self.register = bool(register)
        self._found: dict[str, tuple[float, list[Any]]] = {}
        self._model_links: set[tuple[str, str, str]] = set()
        self._lock = threading.Lock()
        new_lock_after_fork(self)

    def for_record(self, record: TraceRecord) -> list[Any]:
        """The registry prompt versions the record's templates use (registering if asked)."""
        prompts = (record.chain or {}).get("prompts") or []
        versions: list[Any] = []
        for prompt in prompts:
            versions.extend(self.versions(prompt, str(record.chain.get("name") or "chain")))
        return versions

    def link_trace(self, trace_id: str, versions: Sequence[Any]) -> None:
        """The trace's prompt associations (the ``mlflow.linkedPrompts`` tag is set with it)."""
        store = self._client()._tracking_client.store  # noqa: SLF001 - this client's own store
        store.link_prompts_to_trace(trace_id, list(versions))

    def link_model(self, model_id: str, versions: Sequence[Any]) -> None:
        """The LoggedModel's ``mlflow.linkedPrompts`` tag, once per model and version."""
        todo = [v for v in versions if (model_id, v.name, str(v.version)) not in self._model_links]
        if not todo:
            return
        from mlflow.tracing.utils.prompt import update_linked_prompts_tag

        client = self._client()
        current = client.get_logged_model(model_id).tags.get(LINKED_PROMPTS)
        updated = update_linked_prompts_tag(current, todo)
        if updated != current:
            client.set_logged_model_tags(model_id, {LINKED_PROMPTS: updated})
        with self._lock:
            if len(self._model_links) >= _CACHE_MAX:
                self._model_links.clear()
            self._model_links.update((model_id, v.name, str(v.version)) for v in todo)

    def versions(self, prompt: Mapping[str, Any], chain_name: str) -> list[Any]:
        digest = str(prompt.get("hash"))
        cached = self._found.get(digest)
        if cached is not None and (cached[1] or time.monotonic() < cached[0]):
            return cached[1]
        with self._lock:
            found = self._search(prompt)
            if not found and self.register:
                found = [self._register(prompt, chain_name)]
            if len(self._found) >= _CACHE_MAX:
                self._found.clear()
            self._found[digest] = (time.monotonic() + _MISS_TTL_SECONDS, found)
        return found

    def _search(self, prompt: Mapping[str, Any]) -> list[Any]:
        client = self._client()
        found = []
        for registered in client.search_prompts(max_results=_MAX_PROMPTS):
            versions = client.search_prompt_versions(registered.name, max_results=_MAX_VERSIONS)
            items: Sequence[Any] = getattr(versions, "prompt_versions", versions) or []
            for version in sorted(items, key=lambda v: -int(v.version)):
                try:
                    text = version.to_single_brace_format()
                except Exception:  # noqa: BLE001 - a version we cannot read is no match
                    continue
                if matches(prompt, text):
                    found.append(version)
                    break  # the newest matching version of each prompt
        return found

    def _register(self, prompt: Mapping[str, Any], chain_name: str) -> Any:
        texts = _texts(prompt)
        template: Any
        if len(texts) == 1:
            template = double_brace(texts[0][1])
        else:
            template = [{"role": role, "content": double_brace(text)} for role, text in texts]
        name = _NAME_CHARS.sub("_", f"{chain_name}.{prompt.get('name')}")[:200]
        return self._client().register_prompt(
            name=name, template=template, tags={PROMPT_HASH_TAG: str(prompt.get("hash"))},
            commit_message="registered by otel_mlflow",
        )
