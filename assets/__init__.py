"""Dagster assets: thin wiring over the ``lakehouse`` core (no business logic here)."""
