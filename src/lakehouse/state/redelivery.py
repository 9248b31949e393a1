"""Objects the S3 sink wrote again: re-delivered keys and re-cuts (docs/schema-changes.md).

The sink tracks progress only through Kafka's committed offsets (spec §2.4-2.5): after a crash
before the offset commit, or a restart with another ``flush.size``, it consumes the same records
again from an earlier offset and cuts them anew. This module finds the records such objects repeat,
so compaction applies only the new ones and never rebuilds for them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from lakehouse.lake.reader import INTERNAL_FIELDS, LakeObject, LakeReader


def pending_objects(objects: list[LakeObject], applied: pa.Table) -> tuple[list[LakeObject], dict[str, int]]:
    """Objects not applied yet, and those of them that may repeat applied Kafka records: the sink
    PUT an applied key again (a restart with another flush.size rewrites it as itself plus the
    records that followed), or cut the same records anew (re-cuts inside or across applied
    ranges). For each such object: how many of its leading rows are known copies (the rows of a
    re-delivered key's applied version; the rest is matched by identity, see ``drop_copies``)."""
    sizes = dict(zip(applied.column("key").to_pylist(), applied.column("size").to_pylist()))
    rows = dict(zip(applied.column("key").to_pylist(), applied.column("rows").to_pylist()))
    high: dict[int, int] = {}
    for p, s in zip(
        applied.column("kafka_partition").to_pylist(), applied.column("start_offset").to_pylist()
    ):
        high[p] = max(high.get(p, s), s)
    pending, overlaps = [], {}
    for obj in objects:
        size = sizes.get(obj.key)
        if size is not None:
            if size == obj.size:
                continue
            overlaps[obj.key] = rows.get(obj.key) or 0  # re-delivered: read again, copies dropped
        else:
            hw = high.get(obj.ref.kafka_partition)
            if hw is not None and obj.ref.start_offset <= hw:
                overlaps[obj.key] = 0  # a re-cut (or a late object): its copies found by identity
        pending.append(obj)
    return pending, overlaps


def carry_shrunk(
    reader: LakeReader, pending: list[LakeObject], overlaps: dict[str, int], applied: pa.Table
) -> dict[str, tuple[int, int, int]]:
    """A key PUT again with fewer rows than its applied version (a smaller ``flush.size``): the
    records it no longer holds are the first ones of the objects that follow it in its Kafka
    partition, which were applied through the old version (gone now): mark them as copies.
    Returns, per follower, where its carried rows sat when applied: (start offset of the old
    version, row index there of the first, how many), so other objects can match them too."""
    old_rows = dict(zip(applied.column("key").to_pylist(), applied.column("rows").to_pylist()))
    carried: dict[str, tuple[int, int, int]] = {}
    for obj in pending:
        if obj.key not in old_rows or not old_rows[obj.key]:
            continue
        reader.describe(obj)
        held = obj.rows or 0
        debt = old_rows[obj.key] - held
        # the lost records follow the new version's own: an object starting inside that range
        # (another session's cut) does not begin with them
        followers = sorted(
            (
                o
                for o in pending
                if o.ref.kafka_partition == obj.ref.kafka_partition
                and o.ref.start_offset >= obj.ref.start_offset + max(held, 1)
            ),
            key=lambda o: o.ref.start_offset,
        )
        for nxt in followers:
            if debt <= 0:
                break
            reader.describe(nxt)
            take = min(debt, nxt.rows or 0)
            overlaps[nxt.key] = max(overlaps.get(nxt.key, 0), take)
            carried[nxt.key] = (obj.ref.start_offset, held, take)
            held += take
            debt -= take
    return carried


@dataclass
class Redelivery:
    """What reading a batch needs to recognise Kafka records it has applied already."""

    overlaps: dict[str, int] = field(default_factory=dict)  # object -> leading rows known to be copies
    applied: pa.Table | None = None  # the manifest
    lake: dict[str, LakeObject] = field(default_factory=dict)  # every object of the topic by key
    # objects whose leading rows were applied through another key's older version (carry_shrunk)
    carried: dict[str, tuple[int, int, int]] = field(default_factory=dict)


def manifest_rows(batch: list[LakeObject], cuts: dict[str, int] | None = None) -> pa.Table:
    """Manifest entries of applied objects. An object applied only up to a row (``cuts``: the
    consistent root's bound) is entered with those rows and size -1: the next run reads it again
    as re-delivered, its applied rows being known copies."""
    cuts = cuts or {}
    return pa.table(
        {
            "key": [o.key for o in batch],
            "size": [-1 if o.key in cuts else o.size for o in batch],
            "kafka_partition": pa.array([o.ref.kafka_partition for o in batch], pa.int32()),
            "start_offset": pa.array([o.ref.start_offset for o in batch], pa.int64()),
            "rows": pa.array([cuts.get(o.key, o.rows) for o in batch], pa.int64()),
        }
    )


def latest_per_key(manifest: pa.Table) -> pa.Table:
    """One entry per object key: the version applied last (a re-delivered key replaces its entry)."""
    frame = pl.from_arrow(manifest.combine_chunks())
    assert isinstance(frame, pl.DataFrame)
    return frame.unique(subset=["key"], keep="last", maintain_order=True).to_arrow()


def drop_copies(
    reader: LakeReader, table: pa.Table, obj: LakeObject, key: tuple[str, ...], redelivery: Redelivery
) -> tuple[pa.Table, int]:
    """The object's events less the Kafka records already applied, and how many those were.

    Copies are the leading rows of a re-delivered key's applied version, and events whose identity
    ``(key, op, lsn, txId, snapshot)`` an applied object of the same Kafka partition holds within
    the offsets this object can reach. New records after the last copy continue right after that
    copy's original position (they follow it in Kafka), so applied events never sort after them."""
    n = table.num_rows
    copy = np.zeros(n, bool)
    copy[: min(redelivery.overlaps.get(obj.key, 0), n)] = True
    last = None  # (original position, row here) of the copy that sits furthest in Kafka order
    if copy.any():
        i = int(np.flatnonzero(copy)[-1])
        last = ((obj.ref.start_offset, i), i)
    originals = applied_identities(reader, obj, key, redelivery)
    if originals is not None and originals.num_rows and n:
        ident = [*key, "__op", "__lsn", "__tx_id", "__snapshot"]
        mine = pl.from_arrow(table.select(ident)).with_row_index("__i")  # type: ignore[union-attr]
        theirs = pl.from_arrow(originals).unique(subset=ident, keep="last")  # type: ignore[call-arg]
        mine, theirs = _comparable(mine, theirs, ident)  # type: ignore[arg-type]
        hit = mine.join(theirs, on=ident, how="inner", nulls_equal=True).sort("__i")
        if hit.height:
            copy[hit.get_column("__i").to_numpy()] = True
            # the furthest original; a Debezium replay among the new records matches an original
            # too, so of the rows matching the furthest one the first is the copy
            tail = hit.sort(
                ["__file_start_offset", "__row_index", "__i"], descending=[False, False, True]
            ).row(hit.height - 1, named=True)
            pos = (tail["__file_start_offset"], tail["__row_index"])
            if last is None or pos >= last[0]:
                last = (pos, tail["__i"])
    copies = int(copy.sum())
    if not copies:
        return table, 0
    kept = np.flatnonzero(~copy)
    out = table.take(pa.array(kept))
    after = kept > last[1] if last is not None else np.zeros(len(kept), bool)
    if after.any():  # records following the furthest copy: right after its original
        assert last is not None  # `after` is all False without it
        start = np.where(after, last[0][0], out.column("__file_start_offset").to_numpy(zero_copy_only=False))
        row = np.where(
            after, last[0][1] + np.cumsum(after), out.column("__row_index").to_numpy(zero_copy_only=False)
        )
        out = out.set_column(
            out.schema.get_field_index("__file_start_offset"),
            "__file_start_offset",
            pa.array(start, pa.int64()),
        )
        out = out.set_column(
            out.schema.get_field_index("__row_index"), "__row_index", pa.array(row, pa.int32())
        )
    return out, copies


def applied_identities(
    reader: LakeReader, obj: LakeObject, key: tuple[str, ...], redelivery: Redelivery
) -> pa.Table | None:
    """Identity and position of the events of the applied objects this object may overlap: same
    Kafka partition, those whose records can reach its first offset up to where its own records
    can reach (offset gaps are at most a few per record)."""
    applied = redelivery.applied
    if applied is None or not applied.num_rows:
        return None
    p, s = obj.ref.kafka_partition, obj.ref.start_offset
    mine = applied.filter(
        pc.and_(pc.equal(applied.column("kafka_partition"), p), pc.not_equal(applied.column("key"), obj.key))
    )
    starts = sorted(
        zip(
            mine.column("start_offset").to_pylist(),
            mine.column("key").to_pylist(),
            mine.column("rows").to_pylist(),
        )
    )
    first = max((st for st, _, _ in starts if st <= s), default=s)
    reach = s + 3 * (obj.rows or 0) + 100
    parts = _carried_identities(reader, obj, key, redelivery, reach)
    for st, k, rows in starts:
        if k not in redelivery.lake or st > reach:
            continue
        # an earlier object may reach past later starts (a key PUT again with more records)
        now = redelivery.lake[k].rows if redelivery.lake[k].rows is not None else rows
        if st >= first or (now is not None and st + 3 * now + 100 >= s):
            other = redelivery.lake[k]
            reader.describe(other)
            fields = [f for f in other.row_fields if f.name in key]
            schema = pa.schema([*INTERNAL_FIELDS, *fields])
            for rb in reader.iter_object(other, schema, batch_size=262_144):
                parts.append(
                    pa.Table.from_batches([rb]).select(
                        [*key, "__op", "__lsn", "__tx_id", "__snapshot", "__file_start_offset", "__row_index"]
                    )
                )
    return pa.concat_tables(parts, promote_options="permissive") if parts else None


def _carried_identities(
    reader: LakeReader, obj: LakeObject, key: tuple[str, ...], redelivery: Redelivery, reach: int
) -> list[pa.Table]:
    """Records applied through an older version of a key that now lead another object: their
    identities, at the positions they were applied at."""
    parts = []
    for k, (start, row, count) in redelivery.carried.items():
        other = redelivery.lake.get(k)
        if (
            k == obj.key
            or other is None
            or other.ref.kafka_partition != obj.ref.kafka_partition
            or start > reach
        ):
            continue
        reader.describe(other)
        schema = pa.schema([*INTERNAL_FIELDS, *(f for f in other.row_fields if f.name in key)])
        rows = pa.Table.from_batches(
            list(reader.iter_object(other, schema, batch_size=262_144)), schema=schema
        )
        rows = rows.slice(0, count)
        rows = rows.set_column(
            rows.schema.get_field_index("__file_start_offset"),
            "__file_start_offset",
            pa.array(np.full(rows.num_rows, start), pa.int64()),
        )
        rows = rows.set_column(
            rows.schema.get_field_index("__row_index"),
            "__row_index",
            pa.array(np.arange(row, row + rows.num_rows), pa.int32()),
        )
        parts.append(
            rows.select(
                [*key, "__op", "__lsn", "__tx_id", "__snapshot", "__file_start_offset", "__row_index"]
            )
        )
    return parts


def _comparable(a: pl.DataFrame, b: pl.DataFrame, columns: list[str]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Both frames with one type per column (a key widened since, e.g. int -> bigint, compares as
    the wider type; anything else as text)."""
    casts = {}
    for c in columns:
        ta, tb = a.schema[c], b.schema[c]
        if ta != tb:
            casts[c] = pl.Int64 if ta.is_integer() and tb.is_integer() else pl.Utf8
    return (a.cast(casts), b.cast(casts)) if casts else (a, b)  # type: ignore[arg-type]
