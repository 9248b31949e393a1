"""The Dagster code location (``dagster dev -w workspace.yaml``)."""
