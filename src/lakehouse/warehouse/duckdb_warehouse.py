"""The embedded warehouse: one DuckDB file, one table per source table (``<schema>.<table>``).

Loads are incremental (see :mod:`lakehouse.warehouse.changes`) and atomic: the data change and the
record of the state version it came from commit in one DuckDB transaction, so a crash leaves the
previous load in place and the next load redoes the work.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import duckdb
from tenacity import before_sleep_log, retry, retry_if_exception, stop_after_delay, wait_exponential

from lakehouse.config import TableConfig
from lakehouse.quality import SqlTarget
from lakehouse.sqlfiles import quote, sql
from lakehouse.warehouse.base import KeyProblems, LoadResult
from lakehouse.warehouse.changes import changes_since

SQL = "warehouse/duckdb/"

log = logging.getLogger(__name__)


def _locked(exc: BaseException) -> bool:
    # another process (a concurrent run, a DuckDB shell) holds the file's write lock
    return isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower()


def _one_row(cur: duckdb.DuckDBPyConnection) -> tuple[Any, ...]:
    """The row of a query that always returns one (an aggregate)."""
    row = cur.fetchone()
    assert row is not None
    return row


def target_name(table: str) -> str:
    schema, name = table.split(".", 1)
    return f"{quote(schema)}.{quote(name)}"


class DuckDBWarehouse:
    """The :class:`~lakehouse.warehouse.base.Warehouse` in one DuckDB file."""

    kind = "duckdb"

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def table_name(self, table: str) -> str:
        return f"{self.path.stem}.{table}"

    def dbt_env(self) -> dict[str, str]:
        return {"LAKEHOUSE_DBT_TARGET": "duckdb", "LAKEHOUSE_DUCKDB": str(self.path.resolve())}

    def dbt_relation(self, schema: str, name: str) -> str:
        return f"main_{schema}.{name}"

    def quality_target(self) -> SqlTarget:
        from lakehouse.warehouse.duckdb_sqlalchemy import readonly_url  # SQLAlchemy only for checks

        url, engine_kwargs = readonly_url(self.path)
        return SqlTarget(
            url, "duckdb", self.columns, self.row_count, engine_kwargs=engine_kwargs, query_assets=True
        )

    # one writing process per DuckDB file: wait for the other (saying so), then fail with DuckDB's
    # message naming the process that holds it
    @retry(
        retry=retry_if_exception(_locked),
        wait=wait_exponential(0.2, max=5),
        stop=stop_after_delay(120),
        reraise=True,
        before_sleep=before_sleep_log(log, logging.WARNING),
    )
    def connect(self, read_only: bool = False) -> duckdb.DuckDBPyConnection:
        if read_only and not self.path.exists():
            raise FileNotFoundError(f"{self.path}: no warehouse yet (load a table first)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = duckdb.connect(str(self.path), read_only=read_only)
        if not read_only:
            con.execute(sql(SQL + "init.sql"))
        return con

    def last_load(self, con: duckdb.DuckDBPyConnection, table: str) -> tuple | None:
        return con.execute(sql(SQL + "last_load.sql"), {"table_name": table}).fetchone()

    def load(
        self, state_uri: str, entry: TableConfig, full_refresh: bool = False, version: int | None = None
    ) -> LoadResult:
        """Bring the warehouse table up to the newest version of the current-state table (or to
        ``version``: a consistent root's published one)."""
        started = time.perf_counter()
        table = entry.table
        target = target_name(table)
        con = self.connect()
        try:
            last = self.last_load(con, table)
            changes = changes_since(
                state_uri,
                table,
                last[0] if last else None,
                last[1] if last else None,
                full_refresh,
                version=version,
            )
            if changes.up_to_date:
                rows = _one_row(con.execute(sql(SQL + "row_count.sql", target=target)))[0]
                return LoadResult(
                    table,
                    "up-to-date",
                    changes.reason,
                    changes.version,
                    rows,
                    0,
                    0,
                    0,
                    time.perf_counter() - started,
                )
            incoming = changes.rows()
            con.begin()
            try:
                con.register("incoming_rows", incoming)
                removed = 0
                if changes.full:
                    con.execute(
                        sql(SQL + "replace_table.sql", schema=quote(table.split(".", 1)[0]), target=target)
                    )
                else:
                    if changes.changed_keys is not None and changes.changed_keys.num_rows:
                        con.register("changed_keys", changes.changed_keys)
                        match = " AND ".join(f"t.{quote(k)} = c.{quote(k)}" for k in changes.meta.key)
                        removed = changes.changed_keys.num_rows
                        con.execute(sql(SQL + "delete_changed_keys.sql", target=target, key_match=match))
                    con.execute(sql(SQL + "insert_rows.sql", target=target))
                mode = "full" if changes.full else "incremental"
                con.execute(
                    sql(SQL + "record_load.sql", target=target),
                    {
                        "table_name": table,
                        "state_version": changes.version,
                        "fingerprint": changes.fingerprint,
                        "mode": mode,
                    },
                )
                recorded = self.last_load(con, table)
                assert recorded is not None  # the row record_load.sql just wrote
                rows = recorded[3]
                con.commit()
            except BaseException:
                con.rollback()
                raise
            finally:
                con.unregister("incoming_rows")
            read = set(changes.clusters)
            inserted = sum(c.live for c in changes.meta.clusters if c.id in read)
            return LoadResult(
                table,
                mode,
                changes.reason,
                changes.version,
                rows,
                inserted,
                removed,
                len(changes.clusters),
                time.perf_counter() - started,
            )
        finally:
            con.close()

    def load_history(self, state_uri: str, entry: TableConfig) -> int:
        """``<schema>.<table>_history``: every version of every row (history: true), replaced whole
        in one transaction."""
        from lakehouse.state.export import table_history

        rows = table_history(state_uri, entry.table)
        con = self.connect()
        try:
            con.begin()
            con.register("incoming_rows", rows)
            con.execute(
                sql(
                    SQL + "replace_table.sql",
                    schema=quote(entry.table.split(".", 1)[0]),
                    target=target_name(f"{entry.table}_history"),
                )
            )
            con.commit()
            con.unregister("incoming_rows")
        finally:
            con.close()
        return rows.num_rows

    # -- reads for checks and tests ------------------------------------------------------------

    def row_count(self, table: str) -> int:
        with self.connect(read_only=True) as con:
            return _one_row(con.execute(sql(SQL + "row_count.sql", target=target_name(table))))[0]

    def loaded_version(self, table: str) -> int | None:
        with self.connect(read_only=True) as con:
            last = self.last_load(con, table)
        return last[0] if last else None

    def column_types(self, table: str) -> list[tuple[str, str]]:
        schema, name = table.split(".", 1)
        with self.connect(read_only=True) as con:
            return con.execute(
                sql(SQL + "columns.sql"), {"schema_name": schema, "table_name": name}
            ).fetchall()

    def columns(self, table: str) -> list[str]:
        return [name for name, _ in self.column_types(table)]

    def key_problems(self, table: str, key: tuple[str, ...]) -> KeyProblems:
        cols = ", ".join(quote(k) for k in key)
        any_null = " OR ".join(f"{quote(k)} IS NULL" for k in key)
        with self.connect(read_only=True) as con:
            dup, nulls, samples = _one_row(
                con.execute(
                    sql(
                        SQL + "key_problems.sql",
                        target=target_name(table),
                        key_columns=cols,
                        any_key_null=any_null,
                    )
                )
            )
        return KeyProblems(dup, nulls, list(samples or []))

    def not_pseudonymised(self, table: str, column: str) -> int:
        with self.connect(read_only=True) as con:
            return _one_row(
                con.execute(
                    sql(SQL + "not_pseudonymised.sql", target=target_name(table), column=quote(column))
                )
            )[0]

    def read(self, table: str, columns: list[str] | None = None):
        """A warehouse table or dbt relation (``schema.name``) as Arrow, whole or some columns."""
        text = (
            sql(
                SQL + "select_columns.sql",
                target=target_name(table),
                columns=", ".join(quote(c) for c in columns),
            )
            if columns
            else sql(SQL + "select_all.sql", target=target_name(table))
        )
        with self.connect(read_only=True) as con:
            return con.execute(text).to_arrow_table()
