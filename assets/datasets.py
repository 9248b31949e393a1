"""Dataset exports: the RLHF golden dataset as versioned Parquet + JSONL under the lake."""
# no "from __future__ import annotations": Dagster inspects the real annotations

import dagster as dg

from assets.keys import configured_tables
from assets.resources import LakeResource, StateResource
from lakehouse import settings
from lakehouse.datasets import export_dataset
from lakehouse.state.consistent import published
from lakehouse.state.erasure import closed_accounts, supersede
from lakehouse.warehouse import Warehouse


@dg.asset(
    key=["datasets", "rlhf_golden"],
    group_name="marts",
    kinds={"parquet", "json"},
    deps=[dg.AssetKey(["marts", "mart_rlhf_golden"])],
    description="Versioned export of marts/mart_rlhf_golden under the lake (datasets/rlhf_golden/"
    "version=<UTC time>/: data.parquet, data.jsonl, manifest.json). Unchanged rows: no new version.",
)
def rlhf_golden_dataset(
    context: dg.AssetExecutionContext,
    lake: LakeResource,
    state: StateResource,
    warehouse: dg.ResourceParam[Warehouse],
) -> dg.MaterializeResult:
    wh = warehouse
    rows = wh.read(wh.dbt_relation("marts", "mart_rlhf_golden"))
    built_from: dict = {t.table: wh.loaded_version(t.table) for t in configured_tables()}
    # the warehouse read each database at its consistent watermark: the dataset says which
    marks = {db: published(state.uri, db) for db in {t.transactions for t in configured_tables()}}
    if settings.get_settings().consistent_reads and any(marks.values()):
        built_from["consistent_watermarks"] = {db: m.lsn for db, m in sorted(marks.items()) if m is not None}
    version = export_dataset(lake.store(), "rlhf_golden", rows, ["scan_id"], built_from)
    context.log.info(
        f"rlhf_golden: {'new version' if version.created else 'unchanged, kept'} {version.version}"
    )
    # earlier versions holding a closed account's rows: listed in superseded.json (new ones never hold them)
    superseded = supersede(lake.store(), "rlhf_golden", closed_accounts(state.uri, state.config()))
    return dg.MaterializeResult(
        metadata={
            "version": version.version,
            "new_version": version.created,
            "rows": version.rows,
            "dagster/row_count": version.rows,
            "content_hash": version.content_hash,
            "path": dg.MetadataValue.path(lake.store().uri(version.prefix)),
            "built_from_state_versions": dg.MetadataValue.json(version.built_from),
            "superseded_versions": ", ".join(superseded) or "-",
        }
    )


defs = dg.Definitions(assets=[rlhf_golden_dataset])
