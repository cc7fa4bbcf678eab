"""The package's layering: every module imports on its own, and the layers keep their rules.

Rules (``docs/architecture.md``):
- every module imports alone in a fresh interpreter (no import cycles, no order dependence);
- ``_record`` and ``_tracing`` share only ``_common``: the span is the only contract between them;
- ``_record`` is pure: it never imports ``mlflow``;
- among the private layers, only ``_sink`` imports ``mlflow`` (the I/O boundary); the one
  exception is ``mlflow.exceptions``, whose types delivery reads to classify a failed write;
- ``_receive`` (the OTLP receiver) sits beside the app side: it feeds ``_export`` and never
  imports the tracer; nothing below it (``_common``, ``_record``, ``_export``, ``_delivery``,
  ``_sink``) imports it.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "otel_mlflow"


def _modules() -> list[str]:
    names = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.append(".".join(parts))
    return names


def _imports(path: Path) -> set[str]:
    """Absolute module names imported by ``path`` (top-level and inside functions)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _files(layer: str) -> list[Path]:
    return sorted((PKG / layer).rglob("*.py"))


def test_every_module_imports_alone_in_a_fresh_interpreter() -> None:
    script = (
        "import importlib, sys\n"
        "failed = []\n"
        "for name in sys.argv[1:]:\n"
        "    import subprocess\n"
        "    r = subprocess.run([sys.executable, '-c', f'import {name}'], capture_output=True, text=True)\n"
        "    if r.returncode:\n"
        "        failed.append((name, r.stderr.strip().splitlines()[-1:]))\n"
        "print(failed)\n"
        "sys.exit(1 if failed else 0)\n"
    )
    mods = _modules()
    assert len(mods) > 30
    result = subprocess.run([sys.executable, "-c", script, *mods], capture_output=True, text=True,
                            cwd=PKG.parent, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("layer, forbidden", [
    ("_record", "otel_mlflow._tracing"),
    ("_tracing", "otel_mlflow._record"),
    ("_tracing", "otel_mlflow._export"),
    ("_tracing", "otel_mlflow._delivery"),
    ("_tracing", "otel_mlflow._sink"),
    ("_record", "otel_mlflow._export"),
    ("_record", "otel_mlflow._delivery"),
    ("_record", "otel_mlflow._sink"),
    ("_common", "otel_mlflow._tracing"),
    ("_common", "otel_mlflow._record"),
    ("_common", "otel_mlflow._export"),
    ("_common", "otel_mlflow._delivery"),
    ("_common", "otel_mlflow._sink"),
    ("_receive", "otel_mlflow._tracing"),
    ("_common", "otel_mlflow._receive"),
    ("_record", "otel_mlflow._receive"),
    ("_export", "otel_mlflow._receive"),
    ("_delivery", "otel_mlflow._receive"),
    ("_sink", "otel_mlflow._receive"),
    ("_tracing", "otel_mlflow._receive"),
])
def test_layer_does_not_import_a_layer_it_must_not_know(layer: str, forbidden: str) -> None:
    offenders = {
        str(path.relative_to(PKG)): sorted(m for m in _imports(path)
                                             if m == forbidden or m.startswith(forbidden + "."))
        for path in _files(layer)
    }
    assert {k: v for k, v in offenders.items() if v} == {}


@pytest.mark.parametrize("layer", ["_common", "_tracing", "_record", "_export", "_delivery",
                                   "_receive"])
def test_only_the_sink_imports_mlflow(layer: str) -> None:
    offenders = {
        str(path.relative_to(PKG)): sorted(m for m in _imports(path)
                                             if (m == "mlflow" or m.startswith("mlflow."))
                                             and not m.startswith("mlflow.exceptions"))
        for path in _files(layer)
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_compare_reads_mlflow_only_in_its_reader_and_the_pipeline_never_imports_it() -> None:
    offenders = {
        str(path.relative_to(PKG)): sorted(m for m in _imports(path)
                                             if m == "mlflow" or m.startswith("mlflow."))
        for path in _files("compare") if path.name != "reader.py"
    }
    assert {k: v for k, v in offenders.items() if v} == {}
    assert any(m.startswith("mlflow") for m in _imports(PKG / "compare" / "reader.py"))
    users = {str(path.relative_to(PKG)) for layer in ("_common", "_tracing", "_record", "_export",
                                                      "_delivery", "_sink")
             for path in _files(layer)
             if any(m == "otel_mlflow.compare" or m.startswith("otel_mlflow.compare.")
                    for m in _imports(path))}
    assert users == set()
