"""Data quality with Great Expectations 1.x (GX Core), run where the data is: GX's SQL datasource on
the warehouse (the DuckDB file or BigQuery), so a check sends aggregate queries and receives counts
and a few samples, never the table. Dagster runs the suites as asset checks (dagster-ge targets GX
below 1.0, so this small helper wires GX 1.x itself).

Rules GX has no SQL for on every warehouse (a regex on DuckDB, a cross-table count) are
``UnexpectedRowsExpectation`` queries kept in ``sql/quality/``, written for DuckDB and carried to the
warehouse's dialect by sqlglot. Results carry, per failed expectation, the column, the failing count
and a few sample values."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlglot

from lakehouse.sqlfiles import template

CATEGORIES = ["plastic", "glass", "paper", "can", "vinyl", "styrofoam", "food_waste", "general"]
# the relations with a suite, known without importing GX (it takes seconds; code locations load often)
RELATIONS = (
    "auth.users",
    "scan.scans",
    "scan.classification_results",
    "scan.rag_retrievals",
    "scan.llm_call_log",
    "scan.feedback",
    "mart:mart_cost_per_scan",  # the cross-layer reconciliation; per-column mart rules are dbt tests
)
BATCH = "__gx_batch__"  # stands for GX's ``{batch}`` while sqlglot reads a query
SOURCE = "__gx_source__"


@dataclass(frozen=True)
class SqlTarget:
    """Where GX runs a suite: the warehouse's SQLAlchemy URL and engine arguments, its sqlglot
    dialect, and where a relation (``schema.name`` as the warehouse and dbt name it) lives there."""

    url: str
    dialect: str
    columns: Callable[[str], list[str]]  # a relation's columns from the warehouse's metadata (no scan)
    row_count: Callable[[str], int]  # a relation's rows (BigQuery: a count(*) bills no bytes)
    schema_of: Callable[[str], str] = lambda schema: schema
    engine_kwargs: dict[str, Any] = field(default_factory=dict)
    query_assets: bool = False  # GX drops a table asset's schema on dialects it does not know (DuckDB)

    def locate(self, relation: str) -> tuple[str, str]:
        schema, name = relation.split(".", 1)
        return self.schema_of(schema), name

    def qualified(self, relation: str) -> str:
        schema, name = self.locate(relation)
        return sqlglot.exp.table_(name, db=schema, quoted=True).sql(dialect=self.dialect)

    def add_asset(self, datasource, label: str, relation: str):
        """The relation as a GX asset: a table asset, or on DuckDB a query over the table (GX runs
        the bare query once; local, so cheap) that the metrics wrap and DuckDB prunes."""
        schema, name = self.locate(relation)
        if not self.query_assets:
            return datasource.add_table_asset(name=label, table_name=name, schema_name=schema)
        query = sqlglot.select("*").from_(self.qualified(relation), dialect=self.dialect)
        return datasource.add_query_asset(name=label, query=query.sql(self.dialect))


def unexpected_rows(name: str, dialect: str, column: str, description: str, **tables: str):
    """``sql/quality/<name>.sql`` as a GX ``UnexpectedRowsExpectation`` in the warehouse's dialect,
    about ``column`` (kept in its ``meta``: left out when the table lacks it, named in failures);
    ``tables`` fill ``{source}``-style placeholders with already-qualified names."""
    import great_expectations.expectations as e

    text = template(f"quality/{name}.sql").replace("{batch}", BATCH)
    for placeholder in tables:
        text = text.replace("{" + placeholder + "}", f"__gx_{placeholder}__")
    query = sqlglot.transpile(text, read="duckdb", write=dialect)[0]
    query = query.replace("{", "{{").replace("}", "}}").replace(BATCH, "{batch}")  # GX formats it
    for placeholder, qualified in tables.items():
        query = query.replace(f"__gx_{placeholder}__", qualified)
    return e.UnexpectedRowsExpectation(
        unexpected_rows_query=query, description=description, meta={"column": column}
    )


def suites(dialect: str = "duckdb") -> dict[str, list]:
    """Expectations per relation: ``<schema>.<table>`` for warehouse tables (the layer dbt reads),
    ``mart:<name>`` for a mart rule that spans layers."""
    import great_expectations.expectations as e

    def not_null_unique(c):
        return [e.ExpectColumnValuesToNotBeNull(column=c), e.ExpectColumnValuesToBeUnique(column=c)]

    return {
        "auth.users": [
            *not_null_unique("id"),
            e.ExpectColumnValuesToBeInSet(column="provider", value_set=["kakao", "google", "apple", "email"]),
            unexpected_rows("email_is_pseudonym", dialect, "email", "a 64-hex-digit pseudonym"),
        ],
        "scan.scans": [
            *not_null_unique("id"),
            e.ExpectColumnValuesToBeInSet(column="status", value_set=["pending", "completed", "failed"]),
        ],
        "scan.classification_results": [
            *not_null_unique("id"),
            e.ExpectColumnValuesToBeBetween(column="confidence", min_value=0, max_value=1),
            e.ExpectColumnValuesToBeInSet(column="category", value_set=CATEGORIES),
        ],
        "scan.rag_retrievals": [
            *not_null_unique("id"),
            e.ExpectColumnValuesToBeBetween(column="relevance_score", min_value=0, max_value=1),
            e.ExpectColumnValuesToBeBetween(column="rank", min_value=1),
        ],
        "scan.llm_call_log": [
            *not_null_unique("id"),
            e.ExpectColumnValuesToBeBetween(column="latency_ms", min_value=0),
            e.ExpectColumnValuesToBeBetween(column="prompt_tokens", min_value=0),
            e.ExpectColumnValuesToBeBetween(column="completion_tokens", min_value=0),
            e.ExpectColumnValuesToBeInSet(column="stage", value_set=["vision", "embedding", "answer"]),
            e.ExpectColumnValuesToBeInSet(column="status", value_set=["ok", "error", "timeout"]),
        ],
        "scan.feedback": [
            *not_null_unique("id"),
            e.ExpectColumnValuesToNotBeNull(column="thumbs_up"),
            e.ExpectColumnValuesToBeInSet(column="corrected_category", value_set=CATEGORIES),
        ],
        # rules on one mart column are dbt tests in dbt_project/models/marts/_marts.yml (run by dbt
        # build, next to the model); what stays here spans layers (RECONCILE, added by the check)
        "mart:mart_cost_per_scan": [],
    }


@dataclass
class Failure:
    expectation: str
    column: str | None
    unexpected_count: int | None
    samples: list = field(default_factory=list)

    def describe(self) -> str:
        where = f"{self.column}: " if self.column else ""
        count = f"{self.unexpected_count} rows" if self.unexpected_count is not None else "failed"
        return f"{where}{self.expectation} ({count}; e.g. {self.samples[:5]})"


@dataclass
class Validation:
    relation: str
    rows: int
    evaluated: int
    failures: list[Failure]

    @property
    def success(self) -> bool:
        return not self.failures


# row-count reconciliation between layers: a mart column whose sum must equal the rows of a
# warehouse table (non-null in a column); mart_cost_per_scan is rebuilt in full each run
RECONCILE = {"mart:mart_cost_per_scan": ("calls", "scan.llm_call_log", "scan_id")}


def reconciliation(relation: str, target: SqlTarget) -> list:
    """The reconciliation expectation of ``relation``: one query the warehouse answers."""
    column, source, _ = RECONCILE[relation]
    described = f"sums to the {source} rows that belong to a scan"
    return [
        unexpected_rows("calls_reconcile", target.dialect, column, described, source=target.qualified(source))
    ]


def validate(relation: str, target: SqlTarget, table: str, expectations: list | None = None) -> Validation:
    """Run the relation's suite (or ``expectations``) in an ephemeral GX context on ``table`` (the
    warehouse's ``schema.name``) through a SQL datasource: the warehouse computes every metric.
    Expectations on columns the table lacks are left out (a policy may keep a column in the lake)."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    expectations = expectations if expectations is not None else suites(target.dialect)[relation]
    present = set(target.columns(table))
    runnable = [e for e in expectations if _column_of(e) in present | {None}]
    label = relation.replace(":", "_").replace(".", "_")
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    datasource = context.data_sources.add_sql(  # type: ignore[call-arg]  # GX's stub lacks the model's kwargs
        f"{label}_source", connection_string=target.url, kwargs=target.engine_kwargs
    )
    batch = target.add_asset(datasource, label, table).add_batch_definition_whole_table("all_rows")
    try:
        # a passing rule costs one bundled aggregate per column; samples of the failing ones only
        # (GX's SUMMARY reads each column again for them: on BigQuery, bytes billed per query)
        outcome = _run(context, gx, batch, f"{label}_all", runnable, "BOOLEAN_ONLY")
        failing = [e for e, r in zip(runnable, outcome, strict=True) if not r.success]
        detailed = _run(context, gx, batch, f"{label}_failing", failing, "SUMMARY") if failing else []
    finally:  # DuckDB allows one configuration per file and process: close GX's connections now
        datasource.get_execution_engine().close()
        datasource.get_engine().dispose()
    failures = [_failure(r) for r in detailed if not r.success]
    return Validation(relation, target.row_count(table), len(runnable), failures)


def _run(context, gx, batch, name: str, expectations: list, result_format: str) -> list:
    """Each expectation's result, in the order given (matched by id, not by GX's result order)."""
    copies = [e.copy() for e in expectations]  # an expectation belongs to one suite
    suite = context.suites.add(gx.ExpectationSuite(name=name, expectations=copies))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=name, data=batch, suite=suite)
    )
    by_id = {r.expectation_config.id: r for r in definition.run(result_format=result_format).results}
    return [by_id[e.id] for e in suite.expectations]


def _column_of(expectation) -> str | None:
    """The column a rule (or a result's configuration) is about: ``column``, or a SQL rule's ``meta``."""
    if hasattr(expectation, "column"):
        return expectation.column
    return (getattr(expectation, "meta", None) or {}).get("column")


def _failure(r) -> Failure:
    raised = _raised(r.exception_info)
    if raised:  # a query the warehouse refused: say so, never pass
        return Failure(r.expectation_config.type, r.expectation_config.kwargs.get("column"), None, [raised])
    if r.expectation_config.type == "unexpected_rows_expectation":  # the query's rows are the failures
        column = _column_of(r.expectation_config)
        return Failure(r.expectation_config.type, column, r.result.get("observed_value"))
    samples = [_plain(v) for v in (r.result.get("partial_unexpected_list") or [])[:5]]
    return Failure(
        r.expectation_config.type,
        r.expectation_config.kwargs.get("column"),
        r.result.get("unexpected_count"),
        samples,
    )


def _raised(info: dict) -> str | None:
    """GX's exception info: flat for the expectation, or keyed by the metric that failed."""
    for entry in (info, *(v for v in info.values() if isinstance(v, dict))):
        if entry.get("raised_exception"):
            return str(entry.get("exception_message") or "raised").splitlines()[0][:300]
    return None


def _plain(value):
    return value.item() if hasattr(value, "item") else value
