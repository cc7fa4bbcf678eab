"""I/O: what a chain version adds to a run write (the writer's two hooks, ``_sink/runs.py``).

``VersionWriter.prepare(experiment_id, record)`` (before ``create_run``): MLflow's source tags
(``_sink/models.source_tags``), ``otel_mlflow.model_id`` (the version's LoggedModel,
``_sink/models.ChainModels``) and ``mlflow.linkedPrompts`` (the registry prompt versions the
templates use, ``_sink/prompts.PromptLinks``). ``VersionWriter.finish(plan, ...)`` (after the
artifacts and the Traces-view write): ``prompts.json``; when the trace went to the Traces view,
one ``StartTraceV3`` with ``mlflow.modelId`` / ``mlflow.sourceRun`` metadata and the trace's
``mlflow.linkedPrompts`` tag, the trace's prompt associations and the model's prompt tag.

Failure policy: the LoggedModel lookup and the trace metadata raise like every other write (the
delivery layer retries; the run is completed on the retry), except where the store cannot hold
LoggedModels at all (``NotImplementedError``, an old server's ENDPOINT_NOT_FOUND): reported once
through ``otel_mlflow._common.faults`` and skipped. Prompt-registry links never fail the write:
a failure is reported (``writer.prompt_links``) and the run is written without them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from otel_mlflow._common import faults as _faults
from otel_mlflow._common import settings as _config
from otel_mlflow._record.model import TraceRecord
from otel_mlflow._record.schema import ARTIFACT_PROMPTS, TAG_MODEL_ID
from otel_mlflow._sink.models import ChainModels, set_trace_model, source_tags
from otel_mlflow._sink.prompts import LINKED_PROMPTS, PromptLinks

_UNSUPPORTED_CODES = frozenset({"ENDPOINT_NOT_FOUND", "NOT_IMPLEMENTED"})


def _unsupported(exc: BaseException) -> bool:
    if isinstance(exc, NotImplementedError):
        return True
    return str(getattr(exc, "error_code", "")) in _UNSUPPORTED_CODES


class VersionPlan:
    """What ``VersionWriter.prepare`` resolved for one run: its extra tags, model, prompts."""

    __slots__ = ("tags", "model_id", "prompts")

    def __init__(self, tags: dict[str, str], model_id: str | None, prompts: list[Any]) -> None:
        self.tags = tags
        self.model_id = model_id
        self.prompts = prompts


class VersionWriter:
    """The chain-version part of a run write (see the module docstring)."""

    def __init__(self, client: Callable[[], Any], *, register_prompts: bool | None = None,
                 link_traces: bool = True) -> None:
        self.register_prompts = (
            register_prompts if register_prompts is not None
            else _config.env_bool(_config.REGISTER_PROMPTS, False)
        )
        self.link_traces = link_traces
        self._client = client
        self._models = ChainModels(client)
        self._prompts = PromptLinks(client, self.register_prompts)
        self._no_models = False

    def prepare(self, experiment_id: str, record: TraceRecord) -> VersionPlan:
        """Before ``create_run``: source tags, ``otel_mlflow.model_id``, ``mlflow.linkedPrompts``."""
        tags = {k: v for k, v in source_tags().items() if k not in record.tags}
        model_id = self._model_id(experiment_id, record)
        if model_id:
            tags[TAG_MODEL_ID] = model_id
        prompts: list[Any] = []
        if (record.chain or {}).get("prompts"):
            try:
                prompts = self._prompts.for_record(record)
            except Exception as exc:  # noqa: BLE001 - links never fail the run's write
                _faults.report("writer.prompt_links", exc)
        if prompts:
            tags[LINKED_PROMPTS] = _linked(prompts)
        return VersionPlan(tags, model_id, prompts)

    def _model_id(self, experiment_id: str, record: TraceRecord) -> str | None:
        if not record.chain or self._no_models:
            return str(record.chain.get("model_id")) if record.chain.get("model_id") else None
        try:
            return self._models.model_id(experiment_id, record.chain)
        except Exception as exc:
            if not _unsupported(exc):
                raise
            self._no_models = True
            _faults.report("writer.logged_models_unsupported", exc,
                           "the tracking store has no LoggedModels; runs are written without "
                           "otel_mlflow.model_id")
            return None

    def finish(self, plan: VersionPlan, experiment_id: str, record: TraceRecord, run_id: str,
               upload: Callable[[str, Any], None]) -> None:
        """After the Traces-view write: ``prompts.json``, the trace's metadata, prompt links."""
        prompts = (record.chain or {}).get("prompts")
        if prompts:
            upload(ARTIFACT_PROMPTS, {"chain_version": record.chain.get("version"),
                                      "prompts": prompts})
        self.finish_trace(plan, experiment_id, record, run_id)

    def finish_trace(self, plan: VersionPlan, experiment_id: str, record: TraceRecord,
                     run_id: str) -> None:
        """After the Traces-view write: the trace's ``mlflow.modelId`` metadata, prompt links."""
        if not (self.link_traces and record.otlp) or not (plan.model_id or plan.prompts):
            return
        tags = {LINKED_PROMPTS: plan.tags[LINKED_PROMPTS]} if plan.prompts else None
        set_trace_model(self._client(), experiment_id, record, run_id, plan.model_id, tags)
        if plan.prompts:
            try:
                self._prompts.link_trace("tr-" + record.trace_id, plan.prompts)
                if plan.model_id:
                    self._prompts.link_model(plan.model_id, plan.prompts)
            except Exception as exc:  # noqa: BLE001 - links never fail the run's write
                _faults.report("writer.prompt_links", exc)


def _linked(versions: list[Any]) -> str:
    """``mlflow.linkedPrompts``: ``[{"name", "version"}]`` as MLflow writes it."""
    from mlflow.tracing.utils.prompt import update_linked_prompts_tag

    return str(update_linked_prompts_tag(None, versions))
