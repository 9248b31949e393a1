"""Great Expectations suites (lakehouse.quality) as blocking asset checks on the warehouse tables
(the current state as loaded) and on the marts: downstream assets of the run do not build on bad
data; the check's metadata names the failing columns, counts and sample values."""
# no "from __future__ import annotations": Dagster inspects the real annotations

import dagster as dg

from assets.keys import configured_tables, table_key
from lakehouse.quality import RECONCILE, RELATIONS, reconciliation, suites, validate
from lakehouse.warehouse import Warehouse


def build_gx_check(relation: str) -> dg.AssetChecksDefinition:
    if relation.startswith("mart:"):
        mart = relation.split(":", 1)[1]
        key = dg.AssetKey(["marts", mart])
    else:
        mart, key = None, table_key("warehouse", relation)

    @dg.asset_check(
        asset=key,
        name="great_expectations",
        blocking=True,
        description=f"Great Expectations suite for {relation} (lakehouse.quality.suites).",
    )
    def _check(warehouse: dg.ResourceParam[Warehouse]) -> dg.AssetCheckResult:
        # the warehouse runs the suite as SQL: only aggregates and a few samples come back
        source = warehouse.dbt_relation("marts", mart) if mart else relation
        target = warehouse.quality_target()
        expectations = suites(target.dialect)[relation]
        if relation in RECONCILE:  # the mart accounts for every row of the layer below
            expectations += reconciliation(relation, target)
        result = validate(relation, target, source, expectations)
        return dg.AssetCheckResult(
            passed=result.success,
            metadata={
                "rows": result.rows,
                "expectations": result.evaluated,
                "failed": len(result.failures),
                "failed_rows": sum(f.unexpected_count or 0 for f in result.failures),
                "failures": dg.MetadataValue.md(
                    "\n".join(f"- {f.describe()}" for f in result.failures) or "none"
                ),
                **{f"failed_rows.{f.column}": f.unexpected_count for f in result.failures if f.column},
            },
        )

    return _check


GX_RELATIONS = [t.table for t in configured_tables() if t.table in RELATIONS] + [
    r for r in RELATIONS if r.startswith("mart:")
]
gx_checks = [build_gx_check(r) for r in GX_RELATIONS]
