"""What is in a lake: topics, objects, merged schemas, events per op, and every problem found."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from lakehouse.lake.layout import LakeObjectError
from lakehouse.lake.reader import INTERNAL_NAMES, LakeReader, SchemaConflictError


@dataclass
class TopicSummary:
    topic: str
    objects: int = 0
    bytes: int = 0
    kafka_partitions: list[int] = field(default_factory=list)
    shapes: list[str] = field(default_factory=list)
    formats: list[str] = field(default_factory=list)
    columns: list[tuple[str, str, str]] = field(default_factory=list)  # name, arrow type, debezium name
    ops: dict[str, int] = field(default_factory=dict)
    events: int = 0
    error: str | None = None


@dataclass
class LakeSummary:
    root: str
    topics: list[TopicSummary]
    ignored: list[tuple[str, str]]
    excluded_topics: list[str]
    errors: list[tuple[str, str]]


def inspect_lake(reader: LakeReader, topic: str | None = None, count_events: bool = True) -> LakeSummary:
    listing = reader.scan(topic)
    topics: list[TopicSummary] = []
    for name in listing.topics:
        objs = listing.objects[name]
        summary = TopicSummary(
            name,
            objects=len(objs),
            bytes=sum(o.size for o in objs),
            kafka_partitions=sorted({o.ref.kafka_partition for o in objs}),
            formats=sorted({o.ref.format for o in objs}),
        )
        topic_errors = listing.errors_for(name)
        try:
            if topic_errors:
                raise topic_errors[0]
            plan = reader.plan(name, objs)
            summary.shapes = sorted({o.shape for o in objs})
            summary.columns = [
                (f.name, str(f.type), (f.metadata or {}).get(b"debezium.name", b"").decode())
                for f in plan.schema
                if f.name not in INTERNAL_NAMES
            ]
            if count_events:
                ops: Counter[str] = Counter()
                for batch in reader.iter_changes(plan):
                    counts = pc.value_counts(batch.column("__op"))
                    for item in counts.to_pylist():
                        ops[item["values"]] += item["counts"]
                summary.ops = dict(sorted(ops.items()))
                summary.events = sum(ops.values())
            else:
                summary.events = sum(o.rows or 0 for o in objs)
        except (LakeObjectError, SchemaConflictError, pa.ArrowException) as exc:
            summary.error = str(exc)
        topics.append(summary)
    return LakeSummary(
        root=reader.store.root_uri,
        topics=topics,
        ignored=[(i.key, i.reason) for i in listing.ignored],
        excluded_topics=sorted(listing.excluded_topics),
        errors=[(e.key, e.reason) for e in listing.errors],
    )
