"""The DuckDB warehouse file as a SQLAlchemy URL for Great Expectations' SQL datasource.

GX reads a query's rows after handing its connection back to the pool, and SQLAlchemy's rollback on
return makes DuckDB drop the pending result (GX then sees no rows). Checks only read, so this
dialect runs every statement in DuckDB's own autocommit: begin, commit and rollback do nothing, and
the file is opened read-only."""

from __future__ import annotations

from pathlib import Path

from duckdb_engine import Dialect as DuckDBDialect
from sqlalchemy.dialects import registry

DRIVER = "duckdb.readonly"


class ReadOnlyDuckDBDialect(DuckDBDialect):
    supports_statement_cache = False  # as duckdb_engine (says so, rather than warning each query)

    def do_begin(self, dbapi_connection) -> None:
        pass

    def do_commit(self, dbapi_connection) -> None:
        pass

    def do_rollback(self, dbapi_connection) -> None:
        pass


def readonly_url(path: str | Path) -> tuple[str, dict]:
    """The URL and engine arguments that open ``path`` read-only through this dialect."""
    registry.register(DRIVER, __name__, ReadOnlyDuckDBDialect.__name__)
    return f"duckdb+readonly:///{Path(path).resolve()}", {"connect_args": {"read_only": True}}
