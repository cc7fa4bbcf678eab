"""The ``gemini_emulator`` fixture: a fresh local Gemini REST emulator per test.

``langchain_google_vertexai`` is imported once here (it takes seconds), not in every test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from otel_mlflow.testing.gemini_emulator import GeminiEmulator


@pytest.fixture(scope="session")
def vertexai_imported() -> None:
    """Import the real Vertex AI client once per session."""
    import langchain_google_vertexai  # noqa: F401


@pytest.fixture
def gemini_emulator(vertexai_imported: None) -> Iterator[GeminiEmulator]:
    """A started emulator on a random port; stopped after the test."""
    with GeminiEmulator() as emulator:
        yield emulator
