"""Settings live in one place: env names, shared defaults, the tracking-URI and version lookups.

The AST checks read the package's own source (no imports needed), so a copy that creeps back in
(an env-name literal, a second ``DEFAULT_WORKERS``, a local ``_env`` helper) fails here. The
exporter checks build a real ``MlflowSpanExporter`` with a list sink (``write=``) and a real
``Delivery``; nothing is mocked.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

import otel_mlflow
from otel_mlflow._common import settings
from otel_mlflow._delivery import workers as _workers
from otel_mlflow._export import exporter as E
from otel_mlflow._export import settings as _export_settings

PACKAGE = Path(otel_mlflow.__file__).parent
SETTINGS = Path(settings.__file__)

# A string that is exactly an environment variable name of ours or of the standards we read.
_ENV_NAME = re.compile(r"(OTEL|MLFLOW|XDG)_[A-Z0-9_]+")
# Names that must be bound (assigned or defined) only in settings.py.
_SETTINGS_ONLY = {
    "DEFAULT_WORKERS", "DEFAULT_SHUTDOWN_TIMEOUT_SECONDS", "DEFAULT_RETRY_MAX_SECONDS",
    "DEFAULT_TRACKING_URI", "DEFAULT_OTLP_PROTOCOL", "resolve_tracking_uri", "package_version",
    "_env", "_version", "_VERSION",
}


def _modules() -> Iterator[tuple[Path, ast.Module]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        if path != SETTINGS:
            yield path, ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _bound_names(tree: ast.Module) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            yield node.name
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    yield target.id
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)) and isinstance(
            node.target, ast.Name
        ):
            yield node.target.id


def test_the_scan_covers_the_whole_package() -> None:
    names = {path.relative_to(PACKAGE).as_posix() for path, _ in _modules()}
    assert {"_setup.py", "cli.py", "_delivery/spool.py", "_export/exporter.py"} <= names
    assert "_common/settings.py" not in names


def test_no_env_variable_name_literal_outside_settings() -> None:
    found = [
        f"{path.relative_to(PACKAGE)}:{node.lineno}: {node.value}"
        for path, tree in _modules()
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
        and _ENV_NAME.fullmatch(node.value)
    ]
    assert found == []


def test_settings_holds_the_env_names_the_scan_looks_for() -> None:
    source = SETTINGS.read_text(encoding="utf-8")
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                 "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
                 "OTEL_MLFLOW_WORKERS", "OTEL_MLFLOW_SHUTDOWN_TIMEOUT_SECONDS", "XDG_CACHE_HOME"):
        assert source.count(f'"{name}"') == 1, name


def test_shared_defaults_and_lookups_are_defined_only_in_settings() -> None:
    found = [
        f"{path.relative_to(PACKAGE)}: {name}"
        for path, tree in _modules()
        for name in _bound_names(tree)
        if name in _SETTINGS_ONLY
    ]
    assert found == []


def test_only_settings_reads_the_environment_or_package_metadata() -> None:
    found = []
    for path, tree in _modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "importlib.metadata":
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: importlib.metadata")
            if isinstance(node, ast.Attribute) and node.attr == "getenv":
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: getenv")
            # os.environ is only written (cli's setdefault of MLflow's HTTP retry settings).
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
                    and node.value.attr == "environ" and node.attr not in {"setdefault"}):
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: environ.{node.attr}")
            if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) and (
                node.value.attr == "environ" and isinstance(node.ctx, ast.Load)
            ):
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: environ[...]")
    assert found == []


def test_exporter_and_delivery_share_one_default_per_knob() -> None:
    # The exporter's documented default (docs/configuration.md: 4 writer threads).
    assert settings.DEFAULT_WORKERS == 4
    assert _workers.DEFAULT_WORKERS is settings.DEFAULT_WORKERS
    assert _workers.DEFAULT_SHUTDOWN_TIMEOUT_SECONDS is settings.DEFAULT_SHUTDOWN_TIMEOUT_SECONDS
    # The exporter resolves every knob through ExporterSettings, from settings' defaults only.
    src = Path(_export_settings.__file__).read_text(encoding="utf-8")
    for name in ("DEFAULT_WORKERS", "DEFAULT_SHUTDOWN_TIMEOUT_SECONDS", "DEFAULT_RETRY_MAX_SECONDS"):
        assert f"_config.{name}" in src


def test_package_version_is_the_installed_distribution_version() -> None:
    assert settings.package_version() == version("otel-mlflow")
    assert otel_mlflow.__version__ == settings.package_version()


def test_tracking_uri_argument_beats_env_beats_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(settings.MLFLOW_TRACKING_URI, raising=False)
    assert settings.resolve_tracking_uri(None) == settings.DEFAULT_TRACKING_URI
    monkeypatch.setenv(settings.MLFLOW_TRACKING_URI, "  http://env:5000 ")
    assert settings.resolve_tracking_uri(None) == "http://env:5000"
    assert settings.resolve_tracking_uri("http://arg:5000") == "http://arg:5000"


@pytest.fixture
def make_exporter(tmp_path: Path) -> Iterator[Any]:
    made: list[E.MlflowSpanExporter] = []

    def make(**kwargs: Any) -> E.MlflowSpanExporter:
        exporter = E.MlflowSpanExporter(
            "sqlite:///unused.db", spool_dir=str(tmp_path / "spool"), write=lambda record: None,
            **kwargs,
        )
        made.append(exporter)
        return exporter

    yield make
    for exporter in made:
        exporter.shutdown()


def test_exporter_workers_argument_beats_env_beats_default(
    make_exporter: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(settings.WORKERS, raising=False)
    assert len(make_exporter().delivery._threads) == settings.DEFAULT_WORKERS
    monkeypatch.setenv(settings.WORKERS, "3")
    assert len(make_exporter().delivery._threads) == 3
    assert len(make_exporter(workers=1).delivery._threads) == 1


def test_exporter_shutdown_timeout_argument_beats_env_beats_default(
    make_exporter: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(settings.SHUTDOWN_TIMEOUT_SECONDS, raising=False)
    default = make_exporter()
    assert default.shutdown_timeout_seconds == settings.DEFAULT_SHUTDOWN_TIMEOUT_SECONDS
    assert default.delivery._shutdown_timeout == settings.DEFAULT_SHUTDOWN_TIMEOUT_SECONDS
    monkeypatch.setenv(settings.SHUTDOWN_TIMEOUT_SECONDS, "7")
    assert make_exporter().shutdown_timeout_seconds == 7.0
    explicit = make_exporter(shutdown_timeout_seconds=2.5)
    assert explicit.shutdown_timeout_seconds == 2.5
    assert explicit.delivery._shutdown_timeout == 2.5


def test_env_defaults_fill_only_unset_names_and_restore_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "99")
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    import os

    with settings.env_defaults({"MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
                                "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2"}):
        assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "99"  # the user's value stays
        assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "2"
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "99"
