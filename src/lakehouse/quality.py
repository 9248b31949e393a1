"""Data quality with Great Expectations 1.x (GX Core): expectation suites as code, run through an
ephemeral context and validation definitions on a table's rows. Dagster runs them as asset checks
(dagster-ge targets GX below 1.0, so this small helper wires GX 1.x itself).

Results carry, per failed expectation, the column, the failing count and a few sample values."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import pyarrow as pa

CATEGORIES = ["plastic", "glass", "paper", "can", "vinyl", "styrofoam", "food_waste", "general"]
# the relations with a suite, known without importing GX (it takes seconds; code locations load often)
RELATIONS = (
    "auth.users",
    "scan.scans",
    "scan.classification_results",
    "scan.rag_retrievals",
    "scan.llm_call_log",
    "scan.feedback",
    "mart:mart_llm_latency_daily",
    "mart:mart_llm_cost_daily",
    "mart:mart_rlhf_golden",
    "mart:mart_cost_per_scan",
    "mart:mart_rag_quality_daily",
)


def suites() -> dict[str, list]:
    """Expectations per relation: ``<schema>.<table>`` for warehouse tables, ``mart:<name>`` for marts."""
    import great_expectations.expectations as e

    def not_null_unique(c):
        return [e.ExpectColumnValuesToNotBeNull(column=c), e.ExpectColumnValuesToBeUnique(column=c)]

    return {
        "auth.users": [
            *not_null_unique("id"),
            e.ExpectColumnValuesToBeInSet(column="provider", value_set=["kakao", "google", "apple", "email"]),
            e.ExpectColumnValuesToMatchRegex(column="email", regex=r"^[0-9a-f]{64}$"),
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
        "mart:mart_llm_latency_daily": [
            e.ExpectColumnValuesToBeBetween(column="error_rate", min_value=0, max_value=1),
            e.ExpectColumnValuesToBeBetween(column="timeout_rate", min_value=0, max_value=1),
            e.ExpectColumnValuesToBeBetween(column="p95_latency_ms", min_value=0),
            e.ExpectColumnValuesToBeInSet(column="stage", value_set=["vision", "embedding", "answer"]),
        ],
        "mart:mart_llm_cost_daily": [
            e.ExpectColumnValuesToBeBetween(column="cost_usd", min_value=0),
            e.ExpectColumnValuesToBeBetween(column="prompt_tokens", min_value=0),
            e.ExpectColumnValuesToBeBetween(column="unpriced_calls", min_value=0, max_value=0),
        ],
        "mart:mart_rlhf_golden": [
            *not_null_unique("scan_id"),
            e.ExpectColumnValuesToBeInSet(column="golden_category", value_set=CATEGORIES),
            e.ExpectColumnValuesToBeInSet(column="golden_source", value_set=["correction", "confirmed"]),
            e.ExpectColumnValuesToBeBetween(column="predicted_confidence", min_value=0, max_value=1),
            e.ExpectColumnValuesToNotBeNull(column="image_path"),
        ],
        "mart:mart_cost_per_scan": [
            e.ExpectColumnValuesToBeBetween(column="cost_usd", min_value=0),
            *not_null_unique("scan_id"),
        ],
        "mart:mart_rag_quality_daily": [
            e.ExpectColumnValuesToBeBetween(column="thumbs_up_rate", min_value=0, max_value=1),
            e.ExpectColumnValuesToBeBetween(column="relevance_bucket", min_value=0, max_value=0.9),
        ],
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


def reconciliation(relation: str, source_rows: pa.Table) -> list:
    """The reconciliation expectation of ``relation`` given the source table's rows (one column)."""
    import great_expectations.expectations as e

    column, _, counted = RECONCILE[relation]
    n = source_rows.num_rows - source_rows.column(counted).null_count
    return [e.ExpectColumnSumToBeBetween(column=column, min_value=n, max_value=n)]


def columns_of(relation: str) -> list[str]:
    """Columns a suite reads (fetch only those)."""
    return sorted({e.column for e in suites()[relation] if getattr(e, "column", None)})


def validate(relation: str, rows: pa.Table, expectations: list | None = None) -> Validation:
    """Run the relation's suite (or ``expectations``) on ``rows`` in an ephemeral GX context."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    expectations = expectations if expectations is not None else suites()[relation]
    present = set(rows.column_names)
    runnable = [e for e in expectations if getattr(e, "column", None) in present or not hasattr(e, "column")]
    name = relation.replace(":", "_").replace(".", "_")
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = (
        context.data_sources.add_pandas(f"{name}_source")
        .add_dataframe_asset(name=name)
        .add_batch_definition_whole_dataframe("all_rows")
    )
    suite = context.suites.add(gx.ExpectationSuite(name=f"{name}_suite", expectations=runnable))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{name}_validation", data=batch, suite=suite)
    )
    result = definition.run(batch_parameters={"dataframe": rows.to_pandas()}, result_format="SUMMARY")
    failures = []
    for r in result.results:
        if r.success:
            continue
        failures.append(
            Failure(
                r.expectation_config.type,
                r.expectation_config.kwargs.get("column"),
                r.result.get("unexpected_count"),
                [_plain(v) for v in (r.result.get("partial_unexpected_list") or [])[:5]],
            )
        )
    return Validation(relation, rows.num_rows, len(runnable), failures)


def _plain(value):
    return value.item() if hasattr(value, "item") else value
