"""Consistent layer: per source database, every table at one transaction boundary (the newest
commit every table has whole), published for the warehouse loads. Thin wiring over
``lakehouse.state.consistent``; docs/consistency.md says what the watermark proves."""
# no "from __future__ import annotations": Dagster inspects the real annotations

import datetime as dt
import time

import dagster as dg

from assets.keys import configured_tables, table_key
from assets.resources import EngineResource, LakeResource, StateResource
from assets.retries import STORAGE_RETRY
from lakehouse.config import TableConfig, TablesConfig
from lakehouse.lake.transactions import read_transaction_log
from lakehouse.state.compact import CompactOptions
from lakehouse.state.consistent import ConsistentResult, Watermark, compact_consistent, databases, published

LAG_WARN_SECONDS = 15 * 60  # a watermark trailing the newest landed commit by more is worth a look
HOURLY_CRON = "0 * * * *"
# hourly, like the warehouse loads that read it, once any table of the database changed (on_cron
# waits for every dependency, and an hour without a feedback change is no reason to stand still)
HOURLY_ANY_TABLE = (
    dg.AutomationCondition.in_latest_time_window()
    & dg.AutomationCondition.cron_tick_passed(HOURLY_CRON).since_last_handled()
    & dg.AutomationCondition.any_deps_match(
        dg.AutomationCondition.newly_updated().since(dg.AutomationCondition.cron_tick_passed(HOURLY_CRON))
        | dg.AutomationCondition.will_be_requested()
    )
).with_label(f"on_cron({HOURLY_CRON}), any table updated")


def database_key(database: str) -> dg.AssetKey:
    """``eco2.transaction_scan`` -> consistent_state/eco2/transaction_scan."""
    return dg.AssetKey(["consistent_state", *database.split(".", 1)])


def watermark_metadata(mark: Watermark) -> dict:
    when = (
        dt.datetime.fromtimestamp(mark.commit_ts_ms / 1000, dt.UTC).isoformat()
        if mark.commit_ts_ms is not None
        else "-"
    )
    return {
        "watermark_lsn": mark.lsn,
        "watermark_tx_id": mark.tx_id if mark.tx_id is not None else "snapshot",
        "watermark_committed_at": when,
        "newest_landed_lsn": mark.newest_lsn,
        "lag_seconds": round(mark.lag_seconds, 1) if mark.lag_seconds is not None else None,
        "table_versions": dg.MetadataValue.json(mark.tables),
    }


def build_consistent_asset(database: str, entries: list[TableConfig]) -> dg.AssetsDefinition:
    tables = ", ".join(e.table for e in entries)

    # one run at a time per database (pool limit 1): watermarks are published in order
    @dg.asset(
        key=database_key(database),
        group_name="consistent_state",
        kinds={"delta"},
        pool=f"lakehouse_consistent_{database.replace('.', '_')}",
        retry_policy=STORAGE_RETRY,
        automation_condition=HOURLY_ANY_TABLE,
        deps=[table_key("current_state", e.table) for e in entries],
        description=f"{tables} at one transaction boundary: the newest commit whose transactions have "
        f"landed whole in every table (END event counts of {database}). The warehouse "
        "loads read these versions, so joins never see part of a transaction.",
    )
    def _consistent(
        context: dg.AssetExecutionContext, lake: LakeResource, state: StateResource, engine: EngineResource
    ) -> dg.MaterializeResult:
        options = CompactOptions(pseudonym_key=state.pseudonym_key, engine=engine.engine())
        [r] = compact_consistent(lake.reader(), state.uri, state.config(), options, only=[database])
        if r.missing_topic:  # captured without transaction metadata: loads read the newest state
            context.log.warning(r.error)
            return dg.MaterializeResult(metadata={"consistent": False, "reason": r.error})
        if r.error:
            raise dg.Failure(description=r.error, allow_retries=_retryable(r))
        assert r.watermark is not None
        context.log.info(
            f"{database}: every table at commit LSN {r.watermark.lsn} (txId {r.watermark.tx_id})"
        )
        return dg.MaterializeResult(metadata={"consistent": True, **watermark_metadata(r.watermark)})

    return _consistent


def _retryable(r: ConsistentResult) -> bool:
    return bool(r.tables) and all(t.retryable for t in r.tables if t.failed)


def build_consistent_check(database: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=database_key(database),
        name="watermark_lag",
        description=f"How far the published watermark trails the newest commit landed in {database} "
        f"(warns past {LAG_WARN_SECONDS} s: a topic or the transaction topic lags).",
    )
    def _lag(lake: LakeResource, state: StateResource) -> dg.AssetCheckResult:
        mark = published(state.uri, database)
        txlog = read_transaction_log(lake.reader(), database)
        newest = txlog.newest if txlog is not None else None
        if txlog is None:  # captured without transaction metadata: nothing to trail (the loads read
            # the newest state; the asset's materialization says so)
            return dg.AssetCheckResult(
                passed=True, metadata={"consistent_reads": f"unavailable: no {database} topic"}
            )
        if mark is None or newest is None:
            return dg.AssetCheckResult(
                passed=False,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={"reason": "no watermark published yet"},
            )
        lag = max(0.0, (newest["ts_ms"] - (mark.commit_ts_ms or newest["ts_ms"])) / 1000)
        age = time.time() - (mark.published_at or time.time())
        return dg.AssetCheckResult(
            passed=lag <= LAG_WARN_SECONDS,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "lag_seconds": round(lag, 1),
                "watermark_lsn": mark.lsn,
                "newest_landed_lsn": newest["commit_lsn"],
                "published_seconds_ago": round(age, 1),
            },
        )

    return _lag


DATABASES = databases(TablesConfig(tables=configured_tables()))
consistent_assets = [build_consistent_asset(db, entries) for db, entries in DATABASES.items()]
consistent_checks = [build_consistent_check(db) for db in DATABASES]
