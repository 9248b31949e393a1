"""Great Expectations suites (lakehouse.quality) as blocking asset checks on the warehouse tables
(the current state as loaded) and on the marts: downstream assets of the run do not build on bad
data; the check's metadata names the failing columns, counts and sample values."""
# no "from __future__ import annotations": Dagster inspects the real annotations

import dagster as dg

from assets.keys import configured_tables, table_key
from assets.resources import WarehouseResource
from lakehouse.quality import RECONCILE, RELATIONS, columns_of, reconciliation, suites, validate


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
    def _check(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        source = warehouse.dbt_relation("marts", mart) if mart else relation
        wh = warehouse.warehouse()
        expectations = suites()[relation]
        if relation in RECONCILE:  # the mart accounts for every row of the layer below
            column, table, counted = RECONCILE[relation]
            expectations += reconciliation(relation, wh.read(table, columns=[counted]))
        rows = wh.read(source, columns=sorted({*columns_of(relation), *(RECONCILE.get(relation, ())[:1])}))
        result = validate(relation, rows, expectations)
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
