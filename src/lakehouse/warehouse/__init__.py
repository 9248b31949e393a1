"""Warehouse layer: current-state tables loaded into DuckDB (embedded) or BigQuery."""

from __future__ import annotations

from typing import Protocol

from lakehouse.config import TableConfig


class Warehouse(Protocol):
    """What the assets and checks use; DuckDBWarehouse and BigQueryWarehouse implement it."""

    def load(
        self, state_uri: str, entry: TableConfig, full_refresh: bool = False, version: int | None = None
    ): ...

    def load_history(self, state_uri: str, entry: TableConfig) -> int: ...

    def row_count(self, table: str) -> int: ...

    def loaded_version(self, table: str) -> int | None: ...

    def columns(self, table: str) -> list[str]: ...

    def column_types(self, table: str) -> list[tuple[str, str]]: ...

    def key_problems(self, table: str, key: tuple[str, ...]): ...

    def not_pseudonymised(self, table: str, column: str) -> int: ...

    def read(self, table: str, columns: list[str] | None = None): ...
