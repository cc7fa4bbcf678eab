"""The Gemini emulator's parts: scripted replies (``script``), response bodies (``responses``),
the HTTP server and its routes (``server``) and the real clients wired to it (``clients``).

The public names are re-exported by ``otel_mlflow.testing`` and ``otel_mlflow.testing.gemini_emulator``.
"""
