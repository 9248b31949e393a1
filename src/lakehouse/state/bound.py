"""Which landed change events belong to transactions committed at or before a commit LSN.

Compaction into the consistent root (:mod:`lakehouse.state.consistent`) applies only those: per
topic partition, the leading run of events at or before the bound. pgoutput streams whole
transactions in commit order, so within a partition that run is everything before the bound
(a Debezium replay repeats earlier events later; those are copies, applied when the bound
moves past them or dropped as duplicates). An object the bound cuts is recorded in the manifest
with the rows applied and no size, so the next run treats it as re-delivered: those rows are
known copies, the rest is new (:mod:`lakehouse.state.redelivery`).

Commit of an event (its transaction's position):

* streamed change (c, u, d, t): the commit LSN of the END event with its ``txId`` at or after its
  own LSN (transaction ids wrap around; the nearest END is its own); no END landed yet: unknown,
  after every bound. Events older than the first transaction the topic knows (captured before
  transaction metadata was turned on) count at their own LSN;
* snapshot read (r): the snapshot's LSN, the point it shows the table at;
* no LSN (incremental-snapshot reads): before every bound.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl
import pyarrow as pa

from lakehouse.lake.reader import INTERNAL_FIELDS, LakeObject, LakeReader
from lakehouse.lake.transactions import TransactionLog

UNKNOWN = np.iinfo(np.int64).max  # a transaction whose END has not landed
IDENTITY = ["__table", "__op", "__lsn", "__tx_id", "__snapshot"]
_INTERNAL = pa.schema(INTERNAL_FIELDS)


def identities(reader: LakeReader, obj: LakeObject) -> pa.Table:
    """An object's events, identity columns only (what bounds and watermarks need)."""
    parts = list(reader.iter_object(obj, _INTERNAL, batch_size=262_144))
    return pa.Table.from_batches(parts, schema=_INTERNAL).select(IDENTITY)


@dataclass(frozen=True)
class EventBound:
    lsn: int  # the newest commit LSN applied
    log: TransactionLog
    # identity columns of objects already read (the watermark read them): object key -> events
    read: dict[str, pa.Table] = field(default_factory=dict, compare=False, repr=False)

    def commits(self, events: pa.Table) -> np.ndarray:
        """The commit LSN of each event's transaction (UNKNOWN when not landed yet)."""
        frame = pl.from_arrow(events.select(["__op", "__lsn", "__tx_id"]))
        assert isinstance(frame, pl.DataFrame)
        frame = frame.with_row_index("__i").with_columns(pl.col("__lsn").fill_null(-1))
        ends = self.log.ends.select(
            pl.col("tx_id").alias("__tx_id"),
            pl.col("commit_lsn").alias("__lsn"),
            pl.col("commit_lsn").alias("__commit"),
        ).sort("__lsn")
        frame = (
            frame.sort("__lsn")
            .join_asof(ends, on="__lsn", by="__tx_id", strategy="forward", check_sortedness=False)
            .sort("__i")
        )
        first = self.log.first_begin_lsn
        lsn = pl.col("__lsn")
        commit = (
            pl.when(lsn < 0)
            .then(-1)
            .when(pl.col("__op") == "r")
            .then(lsn)
            .when(pl.col("__commit").is_not_null())
            .then(pl.col("__commit"))
            .when(pl.lit(first is not None) & (lsn < (first or 0)))
            .then(lsn)
            .otherwise(UNKNOWN)
        )
        return frame.select(commit.cast(pl.Int64)).to_series().to_numpy()

    def leading(self, events: pa.Table) -> int:
        """How many leading events are at or before the bound."""
        late = np.flatnonzero(self.commits(events) > self.lsn)
        return int(late[0]) if len(late) else events.num_rows

    def select(
        self, reader: LakeReader, objects: list[LakeObject]
    ) -> tuple[list[LakeObject], dict[str, int]]:
        """The objects (Kafka order per partition) holding events at or before the bound, and
        for each one the bound cuts, how many of its rows are applied."""
        chosen: list[LakeObject] = []
        cuts: dict[str, int] = {}
        stopped: set[int] = set()
        for obj in sorted(objects, key=lambda o: (o.ref.kafka_partition, o.ref.start_offset, o.key)):
            if obj.ref.kafka_partition in stopped:
                continue
            events = self.read.get(obj.key)
            if events is None:
                events = identities(reader, obj)
            rows = self.leading(events)
            if rows < events.num_rows:
                stopped.add(obj.ref.kafka_partition)
                if rows == 0:
                    continue
                cuts[obj.key] = rows
            chosen.append(obj)
        return chosen, cuts
