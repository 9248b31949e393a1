"""What landed in the lake since the last look, without re-listing the lake (for sensors).

The S3 sink names objects ``<topic>/<encodedPartition>/<topic>+<kafkaPartition>+<startOffset>``
with zero-padded offsets, so within one first-level folder of a topic (``partition=3/`` for the
default partitioner, ``year=2026/`` for the time-based ones) each Kafka partition's new objects sort
after the ones it wrote before. The cursor keeps, per topic, folder and Kafka partition, the newest
key seen; a tick lists each folder with ``StartAfter`` = the smallest of its marks, so it reads
only what is new (plus, for time-based folders, the other partitions' objects since the slowest
one's last object).

Cases that break the ordering are caught by a periodic full listing that compares object counts:
an object landing behind the marks (a late file, a record-time partitioner writing into an old
hour, field partitioners), offsets longer than the zero padding (pitfall 2; such folders are always
listed whole), deleted objects. The compactor itself never relies on this: it lists the topic.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from lakehouse.lake.layout import (
    IgnoredObject,
    LakeObjectError,
    SinkLayout,
    is_non_table_topic,
    parse_object_key,
)
from lakehouse.lake.store import ObjectInfo, ObjectStore

UNPARSED = "?"  # mark slot for keys that do not parse (they are still news: the compactor names them)
DEFAULT_FULL_LISTING_EVERY = 3600.0


@dataclass
class WatchCursor:
    marks: dict[str, dict[str, dict[str, str]]] = field(
        default_factory=dict
    )  # topic -> folder -> partition -> key
    counts: dict[str, int] = field(default_factory=dict)  # value objects seen per topic
    full_listed_at: float = 0.0  # epoch seconds

    def to_json(self) -> str:
        return json.dumps(
            {"v": 1, "marks": self.marks, "counts": self.counts, "full_listed_at": self.full_listed_at},
            separators=(",", ":"),
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str | None) -> WatchCursor | None:
        if not text:
            return None
        d = json.loads(text)
        if d.get("v") != 1:
            return None  # an older cursor format: start over with a full listing
        return cls(d["marks"], d["counts"], d["full_listed_at"])


@dataclass
class WatchResult:
    new: dict[str, list[ObjectInfo]]  # topic -> objects not seen before, in key order
    behind: dict[str, str]  # topic -> why a full listing says objects landed behind the marks
    topics: list[str]  # table topics present in the lake
    cursor: WatchCursor
    full_listing: bool
    listed: int  # objects the listing calls returned (the tick's cost)
    calls: int  # listing calls made (pages not counted)


def _partition_slot(key: str, layout: SinkLayout) -> tuple[str, int | None]:
    """(mark slot, start offset) of an object key; unparsable keys share one slot."""
    try:
        parsed = parse_object_key(key, layout)
    except LakeObjectError:
        return UNPARSED, None
    if isinstance(parsed, IgnoredObject):
        return "", None  # companions (.keys, headers) and temp files are not news
    return str(parsed.kafka_partition), parsed.start_offset


def _folder_of(key: str, topic_prefix: str, layout: SinkLayout) -> str:
    rest = key[len(topic_prefix) :]
    head, sep, _ = rest.partition(layout.directory_delim)
    return topic_prefix + head + sep if sep else topic_prefix


def watch(
    store: ObjectStore,
    cursor: WatchCursor | None,
    layout: SinkLayout = SinkLayout(),
    full_listing_every: float = DEFAULT_FULL_LISTING_EVERY,
    now: float | None = None,
) -> WatchResult:
    """New objects per topic since ``cursor`` (None: everything is new), and the next cursor."""
    now = time.time() if now is None else now
    full = cursor is None or now - cursor.full_listed_at >= full_listing_every
    old = cursor or WatchCursor()
    nxt = WatchCursor({}, {}, now if full else old.full_listed_at)
    result = WatchResult({}, {}, [], nxt, full, 0, 1)
    root = layout.topic_prefix()
    for folder in store.list_dirs(root):
        topic = folder[len(root) :].rstrip(layout.directory_delim)
        if is_non_table_topic(topic):
            continue
        result.topics.append(topic)
        prefix = layout.topic_prefix(topic)
        marks = {f: dict(p) for f, p in old.marks.get(topic, {}).items()}
        listings: list[tuple[str, str | None]]
        if full:
            listings = [(prefix, None)]
            nxt_marks: dict[str, dict[str, str]] = {}
        else:
            result.calls += 1
            listings = [(sub, _start_after(marks.get(sub), layout)) for sub in store.list_dirs(prefix)]
            nxt_marks = marks
        new: list[ObjectInfo] = []
        total = 0
        for sub, start_after in listings:
            result.calls += 1
            for info in store.list(sub, start_after):
                result.listed += 1
                slot, _ = _partition_slot(info.key, layout)
                if not slot:
                    continue
                total += 1
                folder_marks = marks.get(_folder_of(info.key, prefix, layout), {})
                if _after(info.key, folder_marks.get(slot), layout):
                    new.append(info)
                target = nxt_marks.setdefault(_folder_of(info.key, prefix, layout), {})
                if _after(info.key, target.get(slot), layout):
                    target[slot] = info.key
        nxt.marks[topic] = nxt_marks
        known = old.counts.get(topic)
        if full:
            nxt.counts[topic] = total
            if known is not None and total != known + len(new):
                result.behind[topic] = (
                    f"full listing found {total} objects, the marks account for {known} seen + {len(new)} new"
                )
        else:
            nxt.counts[topic] = (known or 0) + len(new)
        if new:
            result.new[topic] = sorted(new, key=lambda o: o.key)
    return result


def _after(key: str, mark: str | None, layout: SinkLayout) -> bool:
    """Is ``key`` newer than ``mark`` (same folder and partition)? Offsets compare as numbers."""
    if mark is None:
        return True
    _, offset = _partition_slot(key, layout)
    _, mark_offset = _partition_slot(mark, layout)
    if offset is None or mark_offset is None or offset == mark_offset:
        return key > mark
    return offset > mark_offset


def _start_after(folder_marks: dict[str, str] | None, layout: SinkLayout) -> str | None:
    """List a folder after the smallest of its partitions' marks; whole when a mark's offset has
    outgrown the zero padding (lexicographic order stops matching offset order there)."""
    if not folder_marks or UNPARSED in folder_marks:
        return None
    for key in folder_marks.values():
        _, offset = _partition_slot(key, layout)
        if offset is None or len(str(offset)) >= layout.zero_pad_width:
            return None
    return min(folder_marks.values())
