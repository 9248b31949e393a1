"""Current-state layer: the state tables compacted from the raw change events (``current``), each
database at one transaction boundary (``consistent``), account closures erased (``erasure``); the
jobs that run them (``compact_tables``, which the lake sensor in ``assets.raw`` targets, and
``maintain_state``) and the maintenance schedule. ``defs`` is what this layer adds to the code
location (orchestration/definitions.py merges it)."""
# no "from __future__ import annotations": Dagster inspects the real annotations

import dagster as dg

from assets.keys import configured_tables
from assets.resources import StateResource
from assets.state.consistent import consistent_assets, consistent_checks
from assets.state.current import pool_for, state_assets, state_checks
from assets.state.erasure import account_erasure, nothing_of_closed_accounts_left
from lakehouse.config import TableConfig
from lakehouse.state.maintain import maintain

# a compaction run that outlives this is failed by the run monitoring daemon (dagster.yaml) and
# retried (it resumes from its last commit). The backstop for a run whose worker died together with
# the code server that launched it: nothing else ever ends such a run, and while it stays STARTED
# it holds its table (one run per table, one step per pool). The whole 50M-event lake's first build
# took 400 s on 2 cores (bench/results/compact-50M.md); one table's run is a fraction of that.
COMPACT_MAX_RUNTIME_SECONDS = 3600

# the lake sensor's target: it selects one table's state asset per run; one process per run
# (no step subprocesses) keeps the landing-to-committed latency low. A crashed run is retried whole
# (run_retries in dagster.yaml): compaction redoes nothing already committed, and a run killed after
# its last step (before its end was recorded) is retried too instead of refused ("no steps to retry")
compact_job = dg.define_asset_job(
    "compact_tables",
    selection=dg.AssetSelection.groups("current_state"),
    executor_def=dg.in_process_executor,
    run_tags={
        dg.MAX_RUNTIME_SECONDS_TAG: str(COMPACT_MAX_RUNTIME_SECONDS),
        "dagster/retry_strategy": "ALL_STEPS",
    },
    description="Apply new lake objects to current-state tables (the lake sensor picks the tables).",
)


class MaintainConfig(dg.Config):
    retention_hours: int = 168  # Delta time travel kept for the warehouse's incremental loads


def build_maintain_op(entry: TableConfig) -> dg.OpDefinition:
    # in the table's pool: maintenance never commits while a compaction of that table runs
    @dg.op(
        name=f"maintain_{entry.table.replace('.', '_')}",
        pool=pool_for(entry.table),
        description=f"Bin-pack small files, vacuum unreferenced ones, drop orphan manifests of {entry.table}.",
    )
    def _maintain(context: dg.OpExecutionContext, config: MaintainConfig, state: StateResource) -> None:
        report = maintain(state.uri, entry.table, retention_hours=config.retention_hours)
        context.log.info(f"{entry.table}: {report}")

    return _maintain


MAINTAIN_OPS = [build_maintain_op(t) for t in configured_tables()]


@dg.job(
    description="Upkeep of the current-state tables: bin-pack, vacuum, orphan manifests (each in its table's pool).",
    tags={"lakehouse/kind": "maintenance"},
)
def maintain_state():
    for op in MAINTAIN_OPS:
        op()


maintenance_schedule = dg.ScheduleDefinition(
    name="daily_upkeep",
    job=maintain_state,
    cron_schedule="0 3 * * *",
    execution_timezone="UTC",
    description="03:00 UTC: current-state table maintenance.",
)

defs = dg.Definitions(
    assets=[*state_assets, *consistent_assets, account_erasure],
    asset_checks=[*state_checks, *consistent_checks, nothing_of_closed_accounts_left],
    jobs=[compact_job, maintain_state],
    schedules=[maintenance_schedule],
)
