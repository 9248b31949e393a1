"""Warehouse layer: one table per source table in DuckDB (embedded) or BigQuery, loaded
incrementally from the current state (changed clusters' keys replaced, deletes removed), with
checks that gate the marts, the ``load_warehouse`` job and the hourly automation sensor. Thin
wiring over ``lakehouse.warehouse`` (one interface, ``Warehouse``, whichever the kind)."""
# no "from __future__ import annotations": Dagster inspects the real annotations

import dagster as dg
import pyarrow as pa

from assets.keys import configured_tables, table_key
from assets.resources import LakeResource, StateResource
from assets.retries import STORAGE_RETRY, only_transient_failures_retried
from assets.state.consistent import database_key
from assets.state.erasure import ERASURE_KEY
from lakehouse import settings
from lakehouse.checks import pseudonymised_columns, secret_columns
from lakehouse.config import TableConfig
from lakehouse.state.consistent import read_point
from lakehouse.state.erasure import closed_accounts, personal_values
from lakehouse.state.table import StateTable
from lakehouse.warehouse import Warehouse

# hourly, and only for tables whose current state changed since the last tick: declarative
# automation does what an hourly schedule would, without loading unchanged tables
HOURLY = dg.AutomationCondition.on_cron("0 * * * *")
# one DuckDB file has one writer at a time: every warehouse load shares this pool (limit 1);
# on BigQuery it keeps loads of the staging dataset from overlapping
WAREHOUSE_POOL = "lakehouse_warehouse"


class WarehouseLoadConfig(dg.Config):
    full_refresh: bool = False  # replace the table with every visible row instead of the changes


def build_warehouse_asset(entry: TableConfig) -> dg.AssetsDefinition:
    @dg.asset(
        key=table_key("warehouse", entry.table),
        group_name="warehouse",
        kinds={settings.get_settings().warehouse},
        deps=[table_key("current_state", entry.table), database_key(entry.transactions)],
        pool=WAREHOUSE_POOL,
        automation_condition=HOURLY,
        retry_policy=STORAGE_RETRY,
        description=f"{entry.table} in the warehouse: the visible current-state rows plus lineage "
        "columns _cdc_lsn and _cdc_committed_at.",
    )
    def _load(
        context: dg.AssetExecutionContext,
        config: WarehouseLoadConfig,
        state: StateResource,
        warehouse: dg.ResourceParam[Warehouse],
    ) -> dg.MaterializeResult:
        wh = warehouse
        source, version, mark = (
            read_point(state.uri, entry)
            if settings.get_settings().consistent_reads
            else (state.uri, None, None)
        )
        with only_transient_failures_retried(f"loading {entry.table}"):
            r = wh.load(source, entry, full_refresh=config.full_refresh, version=version)
        read = f"at {entry.transactions}'s watermark {mark.lsn}" if mark else "at its newest state"
        context.log.info(f"{entry.table}: {r.mode} load ({r.reason}) {read}, {r.rows} rows")
        columns = dg.TableSchema(columns=[dg.TableColumn(n, t) for n, t in wh.column_types(entry.table)])
        metadata = {
            "mode": r.mode,
            "reason": r.reason,
            "state_version": r.state_version,
            "rows": r.rows,
            "dagster/row_count": r.rows,
            "inserted_rows": r.inserted,
            "removed_keys": r.removed_keys,
            "clusters_read": r.clusters,
            "seconds": round(r.seconds, 2),
            "dagster/table_name": wh.table_name(entry.table),
            "dagster/column_schema": columns,
            "read_from": "consistent watermark" if mark else "newest state",
            **({"watermark_lsn": mark.lsn} if mark else {}),
            **r.details(),  # what only this warehouse reports (BigQuery: what the load cost)
        }
        return dg.MaterializeResult(metadata=metadata)

    return _load


def build_history_asset(entry: TableConfig) -> dg.AssetsDefinition:
    schema, name = entry.table.split(".", 1)

    # after the day's erasure: the copy replaces the warehouse table whole
    @dg.asset(
        key=["warehouse", schema, f"{name}_history"],
        group_name="warehouse",
        kinds={settings.get_settings().warehouse},
        deps=[table_key("current_state", entry.table), *([ERASURE_KEY] if entry.erasure else [])],
        pool=WAREHOUSE_POOL,
        retry_policy=STORAGE_RETRY,
        # hourly like the table; the daily erasure orders it in the daily job, it does not gate it
        automation_condition=HOURLY.ignore(dg.AssetSelection.assets(ERASURE_KEY)),
        description=f"Every version of every row of {entry.table} (history: true): the source columns "
        "plus valid_from/valid_to (commit time), valid_from_lsn/valid_to_lsn, is_current and "
        "previous_key (the key before a primary-key change). Replaced whole on each load.",
    )
    def _history(
        context: dg.AssetExecutionContext, state: StateResource, warehouse: dg.ResourceParam[Warehouse]
    ) -> dg.MaterializeResult:
        with only_transient_failures_retried(f"loading {entry.table}_history"):
            rows = warehouse.load_history(state.uri, entry)
        context.log.info(f"{entry.table}_history: {rows} versions")
        return dg.MaterializeResult(
            metadata={
                "rows": rows,
                "dagster/row_count": rows,
                "dagster/table_name": warehouse.table_name(f"{entry.table}_history"),
            }
        )

    return _history


def build_history_erasure_check(entry: TableConfig) -> dg.AssetChecksDefinition:
    """The warehouse copy of a history holds nothing the erasure removed (searched by value)."""
    schema, name = entry.table.split(".", 1)
    assert entry.erasure is not None

    @dg.asset_check(
        asset=dg.AssetKey(["warehouse", schema, f"{name}_history"]),
        name="nothing_of_closed_accounts",
        description=f"No personal value ({', '.join(entry.erasure.columns)}) of a closed account that the "
        "sources no longer hold is in this table (docs/erasure.md).",
    )
    def _erased(
        lake: LakeResource, state: StateResource, warehouse: dg.ResourceParam[Warehouse]
    ) -> dg.AssetCheckResult:
        config = state.config()
        closed = closed_accounts(state.uri, config)
        wanted = (
            personal_values(lake.uri, state.uri, config, closed, state.pseudonym_key).get(entry.table, set())
            if closed
            else set()
        )
        rows = (
            warehouse.read(f"{entry.table}_history", columns=list(entry.erasure.columns)) if wanted else None
        )
        found = (
            {
                c: len(wanted & set(rows.column(c).cast(pa.string()).to_pylist()))
                for c in entry.erasure.columns
            }
            if rows is not None
            else {}
        )
        return dg.AssetCheckResult(
            passed=not any(found.values()),
            metadata={
                "closed_accounts": len(closed),
                "values_searched": len(wanted),
                "found": ", ".join(f"{c}: {n}" for c, n in found.items() if n) or "none",
            },
        )

    return _erased


def build_warehouse_checks(entry: TableConfig) -> dg.AssetChecksDefinition:
    key = table_key("warehouse", entry.table)
    specs = [
        dg.AssetCheckSpec(
            "row_count_matches_state",
            asset=key,
            blocking=True,
            description="Rows equal the visible rows of the state version the load applied.",
        ),
        dg.AssetCheckSpec(
            "primary_key_unique_not_null",
            asset=key,
            blocking=True,
            description="Every row has its primary key, and no key is held twice.",
        ),
        dg.AssetCheckSpec(
            "no_secret_columns",
            asset=key,
            blocking=True,
            description="Columns the policy drops are absent; pseudonymised ones hold only HMACs.",
        ),
    ]

    @dg.multi_asset_check(
        specs=specs, name=f"warehouse_checks_{entry.table.replace('.', '_')}", can_subset=True
    )
    def _checks(
        context: dg.AssetCheckExecutionContext, state: StateResource, warehouse: dg.ResourceParam[Warehouse]
    ):
        wanted = {k.name for k in context.selected_asset_check_keys}
        wh = warehouse
        if "row_count_matches_state" in wanted:
            version = wh.loaded_version(entry.table)
            root = read_point(state.uri, entry)[0] if settings.get_settings().consistent_reads else state.uri
            loaded = StateTable(root, entry.table).load(version) if version is not None else None
            expected = loaded.live_rows if loaded is not None else None
            rows = wh.row_count(entry.table) if version is not None else None
            yield dg.AssetCheckResult(
                check_name="row_count_matches_state",
                asset_key=key,
                passed=rows is not None and rows == expected,
                metadata={"warehouse_rows": rows, "state_rows": expected, "state_version": version},
            )
        if "primary_key_unique_not_null" in wanted:
            meta = StateTable(state.uri, entry.table).load()
            problems = wh.key_problems(entry.table, meta.key) if meta else None
            yield dg.AssetCheckResult(
                check_name="primary_key_unique_not_null",
                asset_key=key,
                passed=problems is not None and problems.duplicate_keys == 0 and problems.null_keys == 0,
                metadata={
                    "duplicate_keys": problems.duplicate_keys if problems else None,
                    "null_keys": problems.null_keys if problems else None,
                    "sample_duplicate_keys": ", ".join(problems.samples) if problems else "-",
                },
            )
        if "no_secret_columns" in wanted:
            columns = wh.columns(entry.table)
            leaked = secret_columns(columns, entry)
            unhashed = {
                c: wh.not_pseudonymised(entry.table, c) for c in pseudonymised_columns(entry) if c in columns
            }
            unhashed = {c: n for c, n in unhashed.items() if n}
            yield dg.AssetCheckResult(
                check_name="no_secret_columns",
                asset_key=key,
                passed=not leaked and not unhashed,
                metadata={
                    "secret_columns_present": ", ".join(leaked) or "-",
                    "values_not_pseudonymised": ", ".join(f"{c}: {n}" for c, n in unhashed.items()) or "-",
                },
            )

    return _checks


TABLES = configured_tables()
warehouse_assets = [build_warehouse_asset(t) for t in TABLES] + [
    build_history_asset(t) for t in TABLES if t.history
]
warehouse_checks = [build_warehouse_checks(t) for t in TABLES] + [
    build_history_erasure_check(t) for t in TABLES if t.history and t.erasure
]

load_warehouse_job = dg.define_asset_job(
    "load_warehouse",
    selection=dg.AssetSelection.groups("consistent_state", "warehouse"),
    description="Move each database's consistent watermark, then load every warehouse table at it (incremental; "
    "full_refresh in the config).",
)

# evaluates the warehouse assets' AutomationCondition (hourly, only tables whose state changed)
warehouse_automation = dg.AutomationConditionSensorDefinition(
    "warehouse_hourly",
    target=dg.AssetSelection.groups("consistent_state", "warehouse"),
    minimum_interval_seconds=60,
    description="Hourly: each database's consistent watermark, then warehouse loads of the tables whose state changed.",
)

defs = dg.Definitions(
    assets=warehouse_assets,
    asset_checks=warehouse_checks,
    jobs=[load_warehouse_job],
    sensors=[warehouse_automation],
)
