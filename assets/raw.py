"""Raw layer: the Debezium topics as the S3 sink wrote them (observed, never materialized here)."""
# no "from __future__ import annotations": Dagster inspects the real annotations

import warnings

import dagster as dg

from assets.keys import configured_tables, table_key
from assets.resources import LakeResource
from assets.retries import STORAGE_RETRY, only_transient_failures_retried
from lakehouse.inspect import inspect_lake

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
