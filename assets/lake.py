"""Raw-layer assets: what the S3 sink has written."""
# no "from __future__ import annotations": Dagster inspects the real annotations


import dagster as dg

from assets.resources import LakeResource
from lakehouse.inspect import inspect_lake


@dg.asset(group_name="raw", kinds={"s3", "parquet"},
          description="Inventory of the raw Debezium lake: topics, objects, events per op, problems.")
def lake_inventory(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    summary = inspect_lake(lake.reader())
    problems = [f"{t.topic}: {t.error}" for t in summary.topics if t.error] + [
        f"{key}: {why}" for key, why in summary.errors]
    for p in problems:
        context.log.error(p)
    rows = "\n".join(
        f"| {t.topic} | {t.objects} | {t.events} | "
        + " | ".join(str(t.ops.get(op, 0)) for op in "rcudt") + " |"
        for t in summary.topics)
    table = "| topic | objects | events | r | c | u | d | t |\n|---|---|---|---|---|---|---|---|\n" + rows
    return dg.MaterializeResult(metadata={
        "lake": summary.root,
        "topics": len(summary.topics),
        "objects": sum(t.objects for t in summary.topics),
        "events": sum(t.events for t in summary.topics),
        "problems": len(problems),
        "inventory": dg.MetadataValue.md(table),
    })
