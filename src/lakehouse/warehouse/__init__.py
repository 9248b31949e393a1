"""Warehouse layer: current-state tables loaded into DuckDB (embedded) or BigQuery, behind one
interface (:mod:`lakehouse.warehouse.base`)."""

from lakehouse.warehouse.base import KeyProblems, LoadResult, Warehouse

__all__ = ["KeyProblems", "LoadResult", "Warehouse"]
