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
def gemini_emulator(vertexai_imported: None, no_adc: None) -> Iterator[GeminiEmulator]:
    """A started emulator on a random port; stopped after the test (ADC lookups refused)."""
    with GeminiEmulator() as emulator:
        yield emulator


@pytest.fixture(scope="session")
def genai_imported() -> None:
    """Import the real ``ChatGoogleGenerativeAI`` client (google-genai) once per session."""
    import langchain_google_genai  # noqa: F401


@pytest.fixture
def no_adc(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if anything looks up Application Default Credentials (Google's auth).

    The emulator's clients must never need them: a lookup would search the machine for a
    user's credentials and could reach Google's metadata server.
    """
    import google.auth

    def _refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("google.auth.default() called: ADC lookup in an offline test")

    monkeypatch.setattr(google.auth, "default", _refuse)
    monkeypatch.delenv("GOOGLE_GENAI_USE_VERTEXAI", raising=False)


@pytest.fixture
def genai_emulator(genai_imported: None, no_adc: None) -> Iterator[GeminiEmulator]:
    """A started emulator for ``ChatGoogleGenerativeAI`` tests, with ADC lookups refused."""
    with GeminiEmulator() as emulator:
        yield emulator
