"""LangChain callbacks -> OpenTelemetry spans (the app-thread side)."""
