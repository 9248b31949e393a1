"""The one warehouse interface: what the assets, checks, the CLI and dbt's environment use, with
the result types every warehouse returns. DuckDBWarehouse and BigQueryWarehouse implement it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    import pyarrow as pa

    from lakehouse.config import TableConfig
    from lakehouse.quality import SqlTarget


@dataclass
class LoadResult:
    table: str
    mode: str  # full | incremental | up-to-date
    reason: str
    state_version: int
    rows: int  # visible rows in the warehouse table after the load
    inserted: int  # rows written (re-inserted rows of changed clusters included)
    removed_keys: int  # keys cleared before the insert (incremental)
    clusters: int  # state clusters read
    seconds: float

    def details(self) -> dict[str, int | str | None]:
        """What this warehouse alone reports about the load (BigQuery: bytes billed, ...); none here."""
        return {}


@dataclass
class KeyProblems:
    duplicate_keys: int
    null_keys: int
    samples: list[str]


@runtime_checkable
class Warehouse(Protocol):
    """A warehouse: one table per source table (``<schema>.<table>``), loaded from the current state."""

    kind: str  # duckdb | bigquery: the asset kind and dbt's adapter

    def load(
        self, state_uri: str, entry: TableConfig, full_refresh: bool = False, version: int | None = None
    ) -> LoadResult: ...

    def load_history(self, state_uri: str, entry: TableConfig) -> int: ...

    def row_count(self, table: str) -> int: ...

    def loaded_version(self, table: str) -> int | None: ...

    def columns(self, table: str) -> list[str]: ...

    def column_types(self, table: str) -> list[tuple[str, str]]: ...

    def key_problems(self, table: str, key: tuple[str, ...]) -> KeyProblems: ...

    def not_pseudonymised(self, table: str, column: str) -> int: ...

    def read(self, table: str, columns: list[str] | None = None) -> pa.Table: ...

    def table_name(self, table: str) -> str:
        """The table's fully qualified name (``dagster/table_name``, what a user queries)."""
        ...

    def dbt_env(self) -> dict[str, str]:
        """Environment for the dbt CLI: the target and where it writes (dbt_project/profiles.yml)."""
        ...

    def dbt_relation(self, schema: str, name: str) -> str:
        """A dbt model's relation as :meth:`read` takes it (dbt schema = target schema + _ + custom)."""
        ...

    def quality_target(self) -> SqlTarget:
        """Where Great Expectations runs its suites as SQL (lakehouse.quality)."""
        ...
