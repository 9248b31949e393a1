"""Debezium's transaction topic: ``<prefix>.transaction`` (``provide.transaction.metadata=true``;
``<prefix>.<topic.transaction>`` when a connector names it apart).

One BEGIN and one END event per transaction, in commit order, on one Kafka partition. The END
event lists, per table (``data_collection`` = ``schema.table``), how many change events the
transaction produced: what the consistent watermark (:mod:`lakehouse.state.consistent`) checks
the landed events against.

Reality (Debezium 3.6.3, pgoutput, captured here) differs from the spec's ``"<txId>:<LSN>"``
reading of the id: the LSN part is not one value per transaction. BEGIN carries the LSN of the
transaction's first change, every change event's ``transaction.id`` its own change LSN, and END
the **commit LSN** (the end of the commit record: the ``lastCommitLsn`` the next transaction's
``source.sequence`` starts with). Events are therefore matched to their END by ``source.txId``
(the part before the colon) and the END's commit LSN is the transaction's position.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from lakehouse.lake.layout import LakeObjectError
from lakehouse.lake.reader import LakeReader

END_SCHEMA = {"tx_id": pl.Int64, "commit_lsn": pl.Int64, "ts_ms": pl.Int64, "event_count": pl.Int64}
COUNT_SCHEMA = {"commit_lsn": pl.Int64, "collection": pl.Utf8, "event_count": pl.Int64}
FIELDS = ("status", "id", "event_count", "data_collections", "ts_ms")


@dataclass(frozen=True)
class TransactionLog:
    """The landed END events of one connector, one row per transaction (re-emitted copies merged)."""

    ends: pl.DataFrame  # tx_id, commit_lsn, ts_ms, event_count; sorted by commit_lsn
    counts: pl.DataFrame  # commit_lsn, collection, event_count: events per table per transaction
    first_begin_lsn: int | None  # the first change of the first transaction read
    objects: pl.DataFrame | None = None  # start_offset, newest_commit: per object read

    def offset_holding(self, commit_lsn: int) -> int | None:
        """Start offset of the first object read whose ENDs reach ``commit_lsn``: a later read
        can start there and still know every transaction after it."""
        if self.objects is None:
            return None
        reach = self.objects.filter(pl.col("newest_commit") >= commit_lsn)
        return reach.get_column("start_offset").min() if reach.height else None  # type: ignore[return-value]

    @property
    def newest(self) -> dict | None:
        return self.ends.row(self.ends.height - 1, named=True) if self.ends.height else None


def read_transaction_log(
    reader: LakeReader, topic: str, from_offset: int | None = None
) -> TransactionLog | None:
    """A transaction topic as landed (its objects from ``from_offset`` on: the topic has one
    partition), or None when the lake has none."""
    listing = reader.scan(topic)
    errors = listing.errors_for(topic)
    if errors:
        raise errors[0]
    objects = [
        o for o in listing.objects.get(topic, []) if from_offset is None or o.ref.start_offset >= from_offset
    ]
    if not objects:
        return None
    frames = []
    for obj in objects:  # checked per object, so a bad one is named; parsed once, all together
        values = reader.read_values(obj)
        missing = {"status", "id"} - set(values.column_names)
        if missing:
            raise LakeObjectError(obj.key, f"not a Debezium transaction event: no {sorted(missing)} field")
        frame = pl.from_arrow(values.select([c for c in FIELDS if c in values.column_names]))
        assert isinstance(frame, pl.DataFrame)
        frames.append(
            _parse_ids(frame, obj.key).with_columns(start_offset=pl.lit(obj.ref.start_offset, pl.Int64))
        )
    events = pl.concat(frames, how="diagonal_relaxed")
    reach = (
        events.filter(pl.col("status") == "END")
        .group_by("start_offset")
        .agg(pl.col("lsn").max().alias("newest_commit"))
    )
    begins = events.filter(pl.col("status") == "BEGIN").get_column("lsn")
    end = events.filter(pl.col("status") == "END")
    ts = pl.col("ts_ms") if "ts_ms" in end.columns else pl.lit(None)
    ends = end.select(
        pl.col("tx_id"),
        pl.col("lsn").alias("commit_lsn"),
        ts.cast(pl.Int64).alias("ts_ms"),
        pl.col("event_count").cast(pl.Int64),
    ).cast(END_SCHEMA)  # type: ignore[arg-type]
    counts = pl.DataFrame(schema=COUNT_SCHEMA)
    if "data_collections" in end.columns:
        counts = (
            end.select(pl.col("lsn").alias("commit_lsn"), "data_collections")
            .explode("data_collections")
            .drop_nulls("data_collections")
            .unnest("data_collections")
            .select(
                "commit_lsn",
                pl.col("data_collection").alias("collection"),
                pl.col("event_count").cast(pl.Int64),
            )
            .cast(COUNT_SCHEMA)  # type: ignore[arg-type]
        )
    # re-emitted copies (Debezium replays) carry the same commit
    return TransactionLog(
        ends.unique("commit_lsn", keep="first").sort("commit_lsn"),
        counts.unique(["commit_lsn", "collection"], keep="first"),
        begins.min() if len(begins) else None,  # type: ignore[arg-type]
        reach,
    )


def _parse_ids(frame: pl.DataFrame, key: str) -> pl.DataFrame:
    """``id`` = ``<txId>:<LSN>`` -> tx_id and lsn columns; anything else names the object."""
    parts = frame.get_column("id").str.split_exact(":", 1)
    parsed = frame.with_columns(
        tx_id=parts.struct.field("field_0").cast(pl.Int64, strict=False),
        lsn=parts.struct.field("field_1").cast(pl.Int64, strict=False),
    )
    bad = parsed.filter(pl.col("tx_id").is_null() | pl.col("lsn").is_null())
    if bad.height:
        raise LakeObjectError(key, f"transaction id {bad.get_column('id')[0]!r} is not <txId>:<LSN>")
    return parsed
