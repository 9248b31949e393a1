"""Warehouse layer: current-state tables loaded into DuckDB (embedded) or BigQuery."""
