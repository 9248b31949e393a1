"""Raw layer: the Debezium topics as the S3 sink wrote them (observed, never materialized here),
the lake's inventory, and the lake sensor: new objects in the lake -> one compaction run per
affected table (``compact_tables``, assets.state)."""
# no "from __future__ import annotations": Dagster inspects the real annotations

import hashlib
import json
import warnings

import dagster as dg

from assets.keys import configured_tables, table_key
from assets.resources import LakeResource, StateResource
from assets.retries import STORAGE_RETRY, only_transient_failures_retried
from assets.state import compact_job
from lakehouse.inspect import inspect_lake
from lakehouse.lake.watch import WatchCursor, watch

RAW_SPECS = [
    dg.AssetSpec(
        table_key("raw", t.table),
        group_name="raw",
        kinds={"s3", "parquet"},
        description=f"Debezium change events of topic {t.topic}, as the Kafka Connect S3 sink wrote them.",
        metadata={"topic": t.topic},
    )
    for t in configured_tables()
]


def topic_observation(topic: str, objects: list) -> tuple[dg.DataVersion, dict]:
    """Data version (changes whenever an object lands or changes) and metadata of one topic."""
    newest = max((o.key for o in objects), default="")
    size = sum(o.size for o in objects)
    return (
        dg.DataVersion(f"{len(objects)}:{size}:{newest}"),
        {"objects": len(objects), "bytes": size, "newest_object": newest or "(none)"},
    )


def _observe_topics(context: dg.AssetExecutionContext, lake: LakeResource):
    listing = lake.reader().scan()
    for spec in RAW_SPECS:
        if spec.key not in context.selected_asset_keys:
            continue
        topic = spec.metadata["topic"]
        version, meta = topic_observation(topic, listing.objects.get(topic, []))
        yield dg.ObserveResult(asset_key=spec.key, data_version=version, metadata=meta)


# observable source assets are the documented way to model data another system writes; the API
# is marked beta, which is no news to repeat in every process that loads these definitions
with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.BetaWarning)
    raw_topics = dg.multi_observable_source_asset(
        specs=RAW_SPECS,
        can_subset=True,
        description="Lists each topic's objects (the lake sensor also reports new ones as observations).",
    )(_observe_topics)


@dg.asset(
    group_name="raw",
    kinds={"s3", "parquet"},
    deps=[s.key for s in RAW_SPECS],
    retry_policy=STORAGE_RETRY,
    description="Inventory of the raw Debezium lake: topics, objects, events per op, problems.",
)
def lake_inventory(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    with only_transient_failures_retried("listing the lake"):
        summary = inspect_lake(lake.reader())
    problems = [f"{t.topic}: {t.error}" for t in summary.topics if t.error] + [
        f"{key}: {why}" for key, why in summary.errors
    ]
    for p in problems:
        context.log.error(p)
    rows = "\n".join(
        f"| {t.topic} | {t.objects} | {t.events} | "
        + " | ".join(str(t.ops.get(op, 0)) for op in "rcudt")
        + " |"
        for t in summary.topics
    )
    table = "| topic | objects | events | r | c | u | d | t |\n|---|---|---|---|---|---|---|---|\n" + rows
    return dg.MaterializeResult(
        metadata={
            "lake": summary.root,
            "topics": len(summary.topics),
            "objects": sum(t.objects for t in summary.topics),
            "events": sum(t.events for t in summary.topics),
            "problems": len(problems),
            "inventory": dg.MetadataValue.md(table),
        }
    )


# -- the lake sensor ----------------------------------------------------------------------------

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


defs = dg.Definitions(assets=[raw_topics, lake_inventory], sensors=[lake_sensor])
