"""The only modules that call MLflow for I/O (MlflowClient, the MLflow REST API)."""
