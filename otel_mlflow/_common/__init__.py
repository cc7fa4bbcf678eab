"""Shared by every layer: settings (env vars, defaults, parsers), semconv names, faults, redaction."""
