"""Test helpers shipped with otel_mlflow: a local Gemini REST emulator for offline runs."""

from __future__ import annotations

from otel_mlflow.testing.gemini_emulator import (
    FunctionCall,
    GeminiEmulator,
    Grounding,
    ReceivedRequest,
    Reply,
    Usage,
)

__all__ = ["FunctionCall", "GeminiEmulator", "Grounding", "ReceivedRequest", "Reply", "Usage"]
