"""The public API type-checks under ``mypy --strict`` (``tests/typing/api.py``), and mypy would notice.

The second test feeds mypy a deliberately wrong use of the same API, so the first one cannot pass
because mypy checked nothing.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _mypy(*paths: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental", *paths],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_public_api_passes_mypy_strict() -> None:
    result = _mypy("tests/typing/api.py")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_rejects_a_wrong_use_of_the_public_api(tmp_path: Path) -> None:
    bad = ROOT / "tests" / "typing" / f"_wrong_{tmp_path.name}.py"
    bad.write_text("from otel_mlflow import flush\nx: str = flush(1.0)\n", encoding="utf-8")
    try:
        result = _mypy(str(bad.relative_to(ROOT)))
    finally:
        bad.unlink()
    assert result.returncode == 1
    assert 'Incompatible types in assignment (expression has type "bool"' in result.stdout
