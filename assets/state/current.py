"""Current-state layer: one asset per source table (from the tables config), compacted from the
raw change events, with its checks. Thin wiring over ``lakehouse.state``."""
# no "from __future__ import annotations": Dagster inspects the real annotations

import time

import dagster as dg

from assets.keys import configured_tables, table_key
from assets.resources import EngineResource, LakeResource, StateResource
from assets.retries import STORAGE_RETRY
from lakehouse.checks import placeholder_leaks, state_keys, unapplied_objects
from lakehouse.config import TableConfig
from lakehouse.state.compact import CompactOptions, TableResult, compact

FRESHNESS_WARN_SECONDS = 15 * 60  # an object waiting longer than this is worth a look
SPARK = "▁▂▃▄▅▆▇█"


def pool_for(table: str) -> str:
    """Concurrency pool of one state table: one writer at a time (limit 1 per pool, dagster.yaml)."""
    return f"lakehouse_state_{table.replace('.', '_')}"


def lag_history(context: dg.AssetExecutionContext, key: dg.AssetKey, lag: float | None) -> str:
    """A sparkline of the lag over the last materializations (the UI plots ``lag_seconds`` too)."""
    records = context.instance.fetch_materializations(key, limit=23).records
    values = [
        r.asset_materialization.metadata["lag_seconds"].value
        for r in reversed(records)
        if r.asset_materialization and "lag_seconds" in r.asset_materialization.metadata
    ]
    values = [v for v in values if isinstance(v, int | float)] + ([lag] if lag is not None else [])
    if not values:
        return "no lag history yet"
    top = max(values) or 1.0
    line = "".join(SPARK[min(len(SPARK) - 1, int(v / top * (len(SPARK) - 1)))] for v in values)
    return f"`{line}`  lag over the last {len(values)} materializations (max {top:,.0f} s, now {values[-1]:,.0f} s)"


def table_metadata(r: TableResult, table_uri: str, engine_kind: str = "local") -> dict:
    lag = None if r.newest_commit_us is None else max(0.0, time.time() - r.newest_commit_us / 1e6)
    return {
        "status": r.status,
        "objects": r.objects,
        "events": r.events,
        **{f"events_{op}": r.ops.get(op, 0) for op in "rcudt"},
        "duplicates": r.duplicates,
        "inserts": r.inserts,
        "updates": r.updates,
        "deletes": r.deletes,
        "rows": r.rows,
        "dagster/row_count": r.rows,
        "tombstones": r.tombstones,
        "seconds": round(r.seconds, 2),
        "lag_seconds": None if lag is None else round(lag, 1),
        "redelivered_objects": r.redelivered,
        "table_uri": dg.MetadataValue.path(table_uri),
        "engine": engine_kind,
        "engine_folds": r.engine.folds,
        "engine_input_bytes": r.engine.input_bytes,
        **(
            {"engine_bytes_processed": r.engine.bytes_processed}
            if r.engine.bytes_processed is not None
            else {}
        ),
        # why a table was rebuilt, re-snapshot deletes, unresolved TOAST values
        **({"notes": dg.MetadataValue.md("\n".join(f"- {n}" for n in r.notes))} if r.notes else {}),
    }


def build_state_asset(entry: TableConfig) -> dg.AssetsDefinition:
    key = table_key("current_state", entry.table)

    @dg.asset(
        key=key,
        group_name="current_state",
        kinds={"delta", "parquet"},
        pool=pool_for(entry.table),
        retry_policy=STORAGE_RETRY,
        deps=[table_key("raw", entry.table)],
        description=f"Current state of {entry.table} (topic {entry.topic}), key "
        f"{list(entry.primary_key or [])}: the raw change events applied in Kafka order "
        "(deletes, replays, late files, TOAST, key changes, schema changes). "
        "Readers see rows where __deleted is false.",
    )
    def _state(
        context: dg.AssetExecutionContext, lake: LakeResource, state: StateResource, engine: EngineResource
    ) -> dg.MaterializeResult:
        options = CompactOptions(pseudonym_key=state.pseudonym_key, engine=engine.engine())
        [r] = compact(lake.reader(), state.uri, state.config(), tables=[entry.table], options=options)
        if r.failed:
            # storage that stayed away is retried by the policy; a bad object or config is not
            raise dg.Failure(
                description=r.error,
                metadata={"table": entry.table, "topic": entry.topic},
                allow_retries=r.retryable,
            )
        for note in r.notes:
            context.log.warning(f"{entry.table}: {note}")
        meta = table_metadata(r, f"{state.uri.rstrip('/')}/{entry.table}", engine.kind)
        lag = meta["lag_seconds"]
        meta["lag_history"] = dg.MetadataValue.md(lag_history(context, key, lag))
        if lag is None:
            del meta["lag_seconds"]
        return dg.MaterializeResult(metadata=meta)

    return _state


def build_state_checks(entry: TableConfig) -> dg.AssetChecksDefinition:
    key = table_key("current_state", entry.table)
    specs = [
        dg.AssetCheckSpec(
            "primary_key_unique_not_null",
            asset=key,
            blocking=True,
            description="Every visible row has its primary key, and no key is held twice.",
        ),
        dg.AssetCheckSpec(
            "no_toast_placeholder",
            asset=key,
            blocking=True,
            description="No visible value is Debezium's unchanged-TOAST placeholder.",
        ),
        dg.AssetCheckSpec(
            "freshness",
            asset=key,
            description=f"Oldest lake object not yet applied (warns past {FRESHNESS_WARN_SECONDS} s).",
        ),
    ]

    @dg.multi_asset_check(specs=specs, name=f"state_checks_{entry.table.replace('.', '_')}", can_subset=True)
    def _checks(context: dg.AssetCheckExecutionContext, lake: LakeResource, state: StateResource):
        wanted = {k.name for k in context.selected_asset_check_keys}
        if "primary_key_unique_not_null" in wanted:
            keys = state_keys(state.uri, entry.table)
            yield dg.AssetCheckResult(
                check_name="primary_key_unique_not_null",
                asset_key=key,
                passed=keys.passed,
                metadata={
                    "duplicate_keys": keys.duplicate_keys,
                    "null_keys": keys.null_keys,
                    "sample_duplicate_keys": ", ".join(keys.samples) or "-",
                },
            )
        if "no_toast_placeholder" in wanted:
            leaks = placeholder_leaks(state.uri, entry.table)
            yield dg.AssetCheckResult(
                check_name="no_toast_placeholder",
                asset_key=key,
                passed=not leaks,
                metadata={
                    "leaked_values": sum(leaks.values()),
                    "columns": ", ".join(f"{c}: {n}" for c, n in leaks.items()) or "-",
                },
            )
        if "freshness" in wanted:
            waiting = unapplied_objects(lake.reader(), state.uri, entry)
            yield dg.AssetCheckResult(
                check_name="freshness",
                asset_key=key,
                passed=waiting.oldest_age_seconds <= FRESHNESS_WARN_SECONDS,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={
                    "unapplied_objects": waiting.objects,
                    "oldest_unapplied_age_seconds": round(waiting.oldest_age_seconds, 1),
                    "oldest_unapplied_object": waiting.oldest_key or "-",
                },
            )

    return _checks


TABLES = configured_tables()
state_assets = [build_state_asset(t) for t in TABLES]
state_checks = [build_state_checks(t) for t in TABLES]
