"""The history of every row (SCD type 2), for tables with ``history: true`` in the tables config.

Compaction appends, per batch, every version the fold made (:attr:`FoldResult.versions`: each new
event that survived deduplication and replay detection, TOAST values resolved, a delete holding
the image it ended) to a Delta table beside the state, ``<state>/_history/<table>``, before the
state commit. The append is keyed by the event's Kafka position, so a batch appended twice (a crash
between the two commits, a lost commit race) reads once: readers keep one row per position.

Readers (:func:`history_rows`) order each key's versions by position and derive SCD2 columns:

* ``valid_from`` / ``valid_from_lsn``: the commit time and change LSN of the event that made it;
* ``valid_to`` / ``valid_to_lsn``: those of the next event of the key (an update, or the delete
  that closed it); null while it is current;
* ``is_current``: the key's newest version, not deleted;
* ``previous_key``: on the insert half of a primary-key change, the key it had before (the
  delete half at the same LSN and txId).

Deletes close a version and are not versions themselves. A late object (older than the state)
makes compaction rebuild the table, and the history with it: corrections land in place.
:func:`as_of` is the table as it was at a commit time or LSN.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime

import polars as pl
import pyarrow as pa
from deltalake import DeltaTable, write_deltalake

from lakehouse.state.fold import POSITION, VERSION_FIELDS
from lakehouse.state.table import StateError, delta_storage_options, stats_only_on, storage_reader, table_uri
from lakehouse.state.types import to_logical

log = logging.getLogger("lakehouse.history")
HISTORY_DIR = "_history"
SCD_COLUMNS = ("valid_from", "valid_to", "valid_from_lsn", "valid_to_lsn", "is_current", "previous_key")


class HistoryTable:
    def __init__(self, state_uri: str, table: str):
        self.table = table
        root = f"{state_uri.rstrip('/')}/{HISTORY_DIR}"
        self.uri = table_uri(root, table)
        if "://" not in self.uri:
            self.uri = os.path.abspath(self.uri)
        self.options = delta_storage_options(self.uri)

    def exists(self) -> bool:
        return DeltaTable.is_deltatable(self.uri, storage_options=self.options)

    def append(self, versions: pa.Table, key: tuple[str, ...], replace: bool = False) -> None:
        """Add a batch's versions (``replace``: the table was rebuilt, its history starts anew)."""
        if versions.num_rows == 0 and not replace:
            return
        create = replace or not self.exists()
        write_deltalake(
            self.uri,
            storage_reader(pa.RecordBatchReader.from_batches(versions.schema, versions.to_batches())),
            mode="overwrite" if create else "append",
            schema_mode="overwrite" if replace else "merge",
            storage_options=self.options,
            configuration=stats_only_on([*key, *VERSION_FIELDS]) if create else None,
        )

    def versions(self, row_schema: pa.Schema) -> pa.Table:
        if not self.exists():
            raise StateError(
                f"{self.uri}: no history here (set history: true for {self.table} in the tables config, then "
                "compact: the first compaction after that rebuilds its versions from the lake)"
            )
        raw = DeltaTable(self.uri, storage_options=self.options).to_pyarrow_table()
        return to_logical(raw, row_schema)


def history_rows(state_uri: str, table: str, key: tuple[str, ...], row_schema: pa.Schema) -> pa.Table:
    """Every version of every row, with the SCD2 columns (see the module docstring)."""
    raw = HistoryTable(state_uri, table).versions(row_schema)
    source = [f.name for f in row_schema if f.name in raw.column_names]
    frame = pl.from_arrow(raw.select([*VERSION_FIELDS, *source]))
    assert isinstance(frame, pl.DataFrame)
    keys = list(key)
    frame = frame.unique(subset=list(POSITION), keep="last", maintain_order=True).sort([*keys, *POSITION])
    nxt = pl.col("__commit_ts").shift(-1).over(keys)
    frame = frame.with_columns(
        valid_from=pl.col("__commit_ts"),
        valid_from_lsn=pl.col("__lsn"),
        valid_to=nxt,
        valid_to_lsn=pl.col("__lsn").shift(-1).over(keys),
        is_current=nxt.is_null() & (pl.col("__op") != "d"),
    )
    frame = _previous_keys(frame, keys).filter(pl.col("__op") != "d")
    out = frame.select([*source, *SCD_COLUMNS]).to_arrow()
    return out.cast(
        pa.schema(
            [row_schema.field(c) if c in row_schema.names else out.schema.field(c) for c in out.column_names]
        )
    )


def _previous_keys(frame: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    """The old key of each insert that is the second half of a primary-key change."""
    halves = frame.filter(pl.col("__op") == "d").select(
        "__lsn",
        "__tx_id",
        pl.struct(keys)
        .map_elements(lambda k: json.dumps(k, default=str), return_dtype=pl.Utf8)
        .alias("__old"),
    )
    joined = frame.join(halves, on=["__lsn", "__tx_id"], how="left")
    same = pl.struct(keys).map_elements(lambda k: json.dumps(k, default=str), return_dtype=pl.Utf8)
    return joined.with_columns(
        previous_key=pl.when(
            (pl.col("__op") == "c") & pl.col("__old").is_not_null() & (pl.col("__old") != same)
        ).then(pl.col("__old"))
    )


def as_of(history: pa.Table, at: datetime | int) -> pa.Table:
    """The table as it was: versions valid at ``at`` (a commit time, or an LSN)."""
    frame = pl.from_arrow(history)
    assert isinstance(frame, pl.DataFrame)
    lo, hi = ("valid_from", "valid_to") if isinstance(at, datetime) else ("valid_from_lsn", "valid_to_lsn")
    alive = (pl.col(lo) <= at) & (pl.col(hi).is_null() | (pl.col(hi) > at))
    out = frame.filter(alive).drop(list(SCD_COLUMNS)).to_arrow()
    return out.cast(pa.schema([history.schema.field(c) for c in out.column_names]))
