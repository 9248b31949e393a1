"""Card SQL: written once, in DuckDB's dialect, run on DuckDB locally and on BigQuery in production.

A card's SQL names tables by *logical* schema, never by where they physically live:

==========  ==========================================  ==========================  ======================
logical     what                                        DuckDB warehouse            BigQuery dataset
==========  ==========================================  ==========================  ======================
``marts``   the dbt marts                               ``main_marts``              ``<prefix>marts_marts``
``auth``    current-state source tables (auth.users)    ``auth``                    ``<prefix>auth``
``scan``    current-state source tables (scan.*)        ``scan``                    ``<prefix>scan``
``meta``    the warehouse's load records (``loads``)    ``_lakehouse``              ``lakehouse_meta``
==========  ==========================================  ==========================  ======================

:func:`render_sql` is the one place where the dialect difference is handled: sqlglot parses the
DuckDB text, the schema mapping of the :class:`Target` rewrites every table reference, and sqlglot
writes the target's dialect (``transpile(read="duckdb", write=...)`` with the mapping applied in
between). Constructs sqlglot cannot carry over raise instead of producing SQL that fails later.

One rule sqlglot cannot know without column types is applied here too: DuckDB's ``date_diff`` with
a unit below a day compares timestamps, which BigQuery spells ``TIMESTAMP_DIFF`` (its ``DATE_DIFF``
takes dates). Write day-level differences over dates (``cast(ts as date)``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel, SqlglotError

DIALECTS = ("duckdb", "bigquery")
LOGICAL_SCHEMAS = ("marts", "auth", "scan", "meta")
SUB_DAY_UNITS = {"HOUR", "MINUTE", "SECOND", "MILLISECOND", "MICROSECOND"}


class CardSQLError(ValueError):
    """A card's SQL does not parse, names a table outside the logical schemas, or cannot be transpiled."""


@dataclass(frozen=True)
class Target:
    """Where the card SQL runs: a dialect, the physical schema/dataset of each logical schema and,
    on BigQuery, optionally the project (``catalog``) to qualify tables with."""

    dialect: str
    schemas: Mapping[str, str] = field(default_factory=dict)
    catalog: str | None = None

    def __post_init__(self) -> None:
        if self.dialect not in DIALECTS:
            raise ValueError(f"dialect {self.dialect!r}: expected one of {', '.join(DIALECTS)}")
        missing = [s for s in LOGICAL_SCHEMAS if s not in self.schemas]
        if missing:
            raise ValueError(f"target has no mapping for logical schema(s) {', '.join(missing)}")

    @classmethod
    def duckdb(cls) -> Target:
        """The embedded DuckDB warehouse (dbt's ``duckdb`` target: schema ``main`` + ``_marts``)."""
        return cls("duckdb", {"marts": "main_marts", "auth": "auth", "scan": "scan", "meta": "_lakehouse"})

    @classmethod
    def bigquery(
        cls, project: str | None = None, dataset_prefix: str = "", meta_dataset: str = "lakehouse_meta"
    ) -> Target:
        """BigQuery: datasets as BigQueryWarehouse and dbt's ``bigquery`` target name them."""
        return cls(
            "bigquery",
            {
                "marts": f"{dataset_prefix}marts_marts",
                "auth": f"{dataset_prefix}auth",
                "scan": f"{dataset_prefix}scan",
                "meta": meta_dataset,
            },
            catalog=project or None,
        )


def parse(sql: str) -> exp.Expression:
    """Parse one card query (DuckDB dialect)."""
    try:
        statements = [s for s in sqlglot.parse(sql, read="duckdb") if s is not None]
    except SqlglotError as exc:
        raise CardSQLError(f"does not parse as DuckDB SQL: {exc}") from None
    if len(statements) != 1:
        raise CardSQLError(f"expected one statement, found {len(statements)}")
    return statements[0]  # type: ignore[return-value]


def _cte_names(tree: exp.Expression) -> set[str]:
    return {cte.alias_or_name for cte in tree.find_all(exp.CTE)}


def referenced_tables(sql: str) -> set[tuple[str, str]]:
    """``(logical schema, table)`` of every table the query reads (CTE names excluded)."""
    tree = parse(sql)
    ctes = _cte_names(tree)
    tables = set()
    for table in tree.find_all(exp.Table):
        if not table.db:
            if table.name in ctes:
                continue
            raise CardSQLError(
                f"table {table.name!r} has no schema: write <schema>.{table.name} with "
                f"<schema> one of {', '.join(LOGICAL_SCHEMAS)}"
            )
        if table.catalog or table.db not in LOGICAL_SCHEMAS:
            raise CardSQLError(
                f"table {table.sql('duckdb')!r}: the schema must be one of "
                f"{', '.join(LOGICAL_SCHEMAS)} (mapped to the warehouse by the target)"
            )
        tables.add((table.db, table.name))
    return tables


def _timestamp_diff(node: exp.Expression) -> exp.Expression:
    if (
        isinstance(node, exp.DateDiff)
        and node.unit is not None
        and node.text("unit").upper() in SUB_DAY_UNITS
    ):
        return exp.TimestampDiff(this=node.this, expression=node.expression, unit=node.args.get("unit"))
    return node


def render_sql(sql: str, target: Target) -> str:
    """The card's SQL for ``target``: tables mapped to the target's schemas, written in its dialect."""
    referenced_tables(sql)  # validates every table reference
    tree = parse(sql)
    ctes = _cte_names(tree)
    for table in tree.find_all(exp.Table):
        if not table.db and table.name in ctes:
            continue
        table.set("db", exp.to_identifier(target.schemas[table.db]))
        if target.catalog:
            table.set("catalog", exp.to_identifier(target.catalog))
    if target.dialect == "bigquery":
        tree = tree.transform(_timestamp_diff)
    try:
        return tree.sql(dialect=target.dialect, pretty=True, unsupported_level=ErrorLevel.RAISE)
    except SqlglotError as exc:
        raise CardSQLError(f"cannot be written as {target.dialect} SQL: {exc}") from None
