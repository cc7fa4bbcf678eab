"""The tracer's cheap span path: span writer, LiteSpan, deferred content."""
