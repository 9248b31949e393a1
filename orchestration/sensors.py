"""The lake sensor: new objects in the lake -> one compaction run per affected table."""
# no "from __future__ import annotations": Dagster inspects the real annotations

import hashlib
import json

import dagster as dg

from assets.keys import table_key
from assets.resources import LakeResource, StateResource
from lakehouse.lake.watch import WatchCursor, watch
from orchestration.jobs import compact_job

SENSOR_INTERVAL_SECONDS = 15


def run_key(table: str, keys: list[str]) -> str:
    """Identity of the objects a run applies: the same objects never start two runs."""
    digest = hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()[:16]
    return f"{table}:{len(keys)}:{digest}"


def waiting_run(instance: dg.DagsterInstance, table: str) -> bool:
    """Is a run for ``table`` queued and not started? (It lists the lake when it starts.)"""
    queued = instance.get_run_records(
        filters=dg.RunsFilter(
            statuses=[dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED],
            tags={"lakehouse/table": table},
        ),
        limit=1,
    )
    return bool(queued)


@dg.sensor(
    job=compact_job,
    minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
    description="Lists only what landed since the last tick (per-folder StartAfter marks, a full listing "
    "hourly to catch late objects) and requests a compaction run per table with new objects.",
)
def lake_sensor(context: dg.SensorEvaluationContext, lake: LakeResource, state: StateResource):
    seen = watch(lake.store(), WatchCursor.from_json(context.cursor))
    tables = {t.topic: t.table for t in state.config().tables}
    requests, observations, unknown, coalesced = [], [], [], []
    for topic, objects in seen.new.items():
        if topic not in tables:
            unknown.append(topic)
            continue
        table = tables[topic]
        keys = [o.key for o in objects]
        observations.append(
            dg.AssetObservation(
                asset_key=table_key("raw", table),
                metadata={
                    "new_objects": len(objects),
                    "new_bytes": sum(o.size for o in objects),
                    "newest_object": keys[-1],
                },
            )
        )
        if waiting_run(context.instance, table):
            coalesced.append(table)  # a queued run lists the topic when it starts: it will apply these too
            continue
        requests.append(
            dg.RunRequest(
                run_key=run_key(table, keys),
                asset_selection=[table_key("current_state", table)],
                tags={"lakehouse/table": table, "lakehouse/trigger": "new objects"},
            )
        )
    for topic, why in seen.behind.items():
        if topic in tables and topic not in seen.new:
            context.log.warning(f"{topic}: {why}; requesting a run so the compactor looks at the whole topic")
            table = tables[topic]
            requests.append(
                dg.RunRequest(
                    run_key=run_key(table, [f"behind@{seen.cursor.full_listed_at}"]),
                    asset_selection=[table_key("current_state", table)],
                    tags={"lakehouse/table": table, "lakehouse/trigger": "objects behind marks"},
                )
            )
    if unknown:
        context.log.warning(
            f"topics in the lake that the tables config does not know: {', '.join(sorted(unknown))}; "
            "add them with `lakehouse discover --lake <lake>` (keys from key files or --dsn)"
        )
    context.log.info(
        json.dumps(
            {
                "full_listing": seen.full_listing,
                "listed": seen.listed,
                "calls": seen.calls,
                "runs": len(requests),
                "coalesced_into_queued_runs": coalesced,
            }
        )
    )
    cursor = seen.cursor.to_json()
    if not requests:
        why = (
            ("new objects go to already queued runs: " + ", ".join(coalesced))
            if coalesced
            else "no new objects" + (f"; unknown topics: {', '.join(sorted(unknown))}" if unknown else "")
        )
        return dg.SensorResult(skip_reason=dg.SkipReason(why), cursor=cursor, asset_events=observations)
    return dg.SensorResult(run_requests=requests, cursor=cursor, asset_events=observations)
