"""Current-state tables: the raw change events compacted into tables equal to the source tables."""
# no "from __future__ import annotations": Dagster inspects the real annotations

import dagster as dg

from assets.resources import LakeResource, StateResource
from lakehouse.config import load_config
from lakehouse.state.compact import compact


def _key(table: str) -> dg.AssetKey:
    schema, name = table.split(".", 1)
    return dg.AssetKey(["current_state", schema, name])


_TABLES = load_config().tables  # asset definitions follow the tables config


@dg.multi_asset(
    specs=[dg.AssetSpec(_key(t.table), group_name="current_state", kinds={"delta", "parquet"},
                        deps=["lake_inventory"],
                        description=f"Current state of {t.table} (topic {t.topic}), key {list(t.primary_key or [])}: "
                                    "visible rows = rows where __deleted is false.")
           for t in _TABLES],
    can_subset=True,
)
def current_state(context: dg.AssetExecutionContext, lake: LakeResource, state: StateResource):
    """Apply the lake's new objects to each selected table (incremental; --full-refresh is the CLI's)."""
    config = state.config()
    wanted = [t.table for t in config.tables if _key(t.table) in context.selected_asset_keys]
    results = compact(lake.reader(), state.uri, config, tables=wanted)
    failed = []
    for r in results:
        if r.failed:
            context.log.error(r.error)
            failed.append(r)
            continue
        for note in r.notes:
            context.log.warning(f"{r.table}: {note}")
        yield dg.MaterializeResult(asset_key=_key(r.table), metadata={
            "status": r.status, "objects": r.objects, "events": r.events, "duplicates": r.duplicates,
            "inserts": r.inserts, "updates": r.updates, "deletes": r.deletes, "rows": r.rows,
            "tombstones": r.tombstones, "seconds": round(r.seconds, 2),
            "table_uri": f"{state.uri.rstrip('/')}/{r.table}",
        })
    if failed:
        raise dg.Failure(description="; ".join(r.error or r.table for r in failed),
                         metadata={"failed_tables": ", ".join(r.table for r in failed)})
