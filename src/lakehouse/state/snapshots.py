"""Re-snapshots: rows PostgreSQL deleted while Debezium was not streaming (docs/schema-changes.md).

A new full snapshot (lost offsets, a new slot, ``snapshot.mode=always``) emits no delete for rows
that disappeared meanwhile. Once it is complete for a table, the keys it did not read and that did
not change after it began are retired.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lakehouse.state.fold import POSITION
from lakehouse.state.table import StateMeta


@dataclass(frozen=True)
class Snapshot:
    """A complete Debezium snapshot of the table: where its last read sits."""

    tx: int
    lsn: int | None
    partition: int
    start: int
    row: int
    began_us: int | None  # commit time of its first read in the batch (other Kafka partitions)


def completed_snapshot(events: pa.Table, meta: StateMeta) -> Snapshot | None:
    """The newest snapshot whose last read (``last`` / ``last_in_data_collection``) is in this
    batch and was not applied before. Incremental snapshots (``incremental``) never end one."""
    is_last = pc.and_(
        pc.equal(events.column("__op"), "r"),
        pc.is_in(events.column("__snapshot"), pa.array(["last", "last_in_data_collection"])),
    )
    if not pc.any(is_last).as_py():
        return None
    marks = [
        m
        for m in events.filter(is_last).select([*POSITION, "__tx_id", "__lsn"]).to_pylist()
        if m["__tx_id"] is not None and m["__tx_id"] not in meta.snapshots
    ]
    if not marks:
        return None
    meta.snapshots = sorted({*meta.snapshots, *(m["__tx_id"] for m in marks)})
    m = max(marks, key=lambda m: (m["__file_start_offset"], m["__row_index"]))
    reads = events.filter(
        pc.and_(pc.equal(events.column("__op"), "r"), pc.equal(events.column("__tx_id"), m["__tx_id"]))
    )
    began = pc.min(reads.column("__commit_ts")).as_py()
    return Snapshot(
        m["__tx_id"],
        m["__lsn"],
        m["__kafka_partition"],
        m["__file_start_offset"],
        m["__row_index"],
        None if began is None else int(began.timestamp() * 1_000_000),
    )


def retire_unread(rows: pa.Table, snap: Snapshot) -> tuple[pa.Table, int]:
    """After a complete snapshot, keys it did not read and that did not change after it began
    were deleted while Debezium was not streaming (it emits no delete for them): tombstones now.
    Same Kafka partition: by position; other partitions: change LSN and commit time before it."""

    def col(name: str) -> np.ndarray:
        return rows.column(name).to_numpy(zero_copy_only=False)

    if rows.num_rows == 0:
        return rows, 0
    op = col("__op")
    read = (op == "r") & (rows.column("__tx_id").fill_null(-1).to_numpy(zero_copy_only=False) == snap.tx)
    part, start, row = col("__kafka_partition"), col("__file_start_offset"), col("__row_index")
    same = part == snap.partition
    before = same & ((start < snap.start) | ((start == snap.start) & (row < snap.row)))
    if snap.lsn is not None and snap.began_us is not None:
        lsn = rows.column("__lsn").fill_null(np.iinfo(np.int64).max).to_numpy(zero_copy_only=False)
        ts = pc.cast(rows.column("__commit_ts"), pa.int64()).fill_null(np.iinfo(np.int64).max)
        before |= ~same & (lsn < snap.lsn) & (ts.to_numpy(zero_copy_only=False) < snap.began_us)
    live = ~col("__deleted") & ~rows.column("__image").fill_null(False).to_numpy(zero_copy_only=False)
    ghost = live & ~read & before
    n = int(ghost.sum())
    if n:
        rows = rows.set_column(
            rows.schema.get_field_index("__deleted"), "__deleted", pa.array(col("__deleted") | ghost)
        )
        rows = rows.set_column(
            rows.schema.get_field_index("__op"), "__op", pa.array(np.where(ghost, "d", op), pa.string())
        )
    return rows, n
