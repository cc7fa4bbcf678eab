"""The OpenTelemetry SpanExporter: spans -> per-trace buffer -> records handed to delivery."""
