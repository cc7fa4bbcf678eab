"""Records -> MLflow, reliably: workers, retries, circuit, durable spool, replay."""
