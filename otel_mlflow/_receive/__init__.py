"""The OTLP/HTTP receiver (``otel-mlflow receive``): app, convert, durable span log, metrics."""
