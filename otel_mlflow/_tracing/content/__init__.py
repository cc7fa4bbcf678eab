"""LangChain inputs, outputs and messages -> bounded, redacted JSON text (pure)."""
