"""What a warehouse must apply to catch up with a current-state table.

A compaction commit rewrites whole clusters (partitions of the Delta table), so the clusters whose
data files differ between the version a warehouse last loaded and the newest version hold every
changed row. For those clusters the warehouse deletes every key they held then or hold now (rows
that were updated, deleted, truncated or re-created) and inserts their visible rows. Everything
else stays untouched. A full refresh (first load, schema change, rewritten table, vacuumed old
version) replaces the table with all visible rows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from lakehouse.state.consistent import is_consistent_root
from lakehouse.state.export import export_type
from lakehouse.state.table import CLUSTER_COLUMN, StateMeta, StateTable
from lakehouse.state.types import to_logical

# lineage columns every warehouse table carries next to the source columns
LINEAGE = {
    "_cdc_lsn": ("__lsn", pa.int64()),
    "_cdc_committed_at": ("__commit_ts", pa.timestamp("us", tz="UTC")),
}


def schema_fingerprint(meta: StateMeta, state_uri: str = "") -> str:
    """Schema and key; and where the rows come from: a table loaded from the current state and
    then from the consistent root (other version numbers) is loaded in full once."""
    text = "|".join(f"{f.name}:{f.type}" for f in meta.row_schema) + "|key:" + ",".join(meta.key)
    if is_consistent_root(state_uri):
        text += "|consistent"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def warehouse_schema(meta: StateMeta) -> pa.Schema:
    fields = [pa.field(f.name, export_type(f.type)) for f in meta.row_schema]
    return pa.schema(fields + [pa.field(name, t) for name, (_, t) in LINEAGE.items()])


@dataclass
class StateChanges:
    table: str
    version: int  # the state version these changes bring the warehouse to
    meta: StateMeta
    full: bool  # True: ``rows`` is the whole table; replace the target
    reason: str
    changed_keys: pa.Table | None  # keys to remove from the target before inserting ``rows``
    clusters: list[int]  # clusters read (all of them on a full refresh)
    dataset: ds.Dataset = field(repr=False)  # the state table pinned to ``version``
    up_to_date: bool = False
    # incremental only: changed keys that are not visible now, with the LSN of their removal
    # (the tombstone's, else the newest truncate's), and the partition column's range then and now
    deletes: pa.Table | None = None
    partition_bounds: tuple | None = None
    state_uri: str = ""

    @property
    def fingerprint(self) -> str:
        return schema_fingerprint(self.meta, self.state_uri)

    def rows(
        self, batch_rows: int = 131_072, rename: Callable[[str], str] | None = None
    ) -> pa.RecordBatchReader:
        """Visible rows of the read clusters, warehouse types, lineage columns last (streamed);
        ``rename``: the warehouse's name of a source column (where it cannot hold the source's)."""
        schema = warehouse_schema(self.meta)
        if rename is not None:
            schema = pa.schema([f.with_name(rename(f.name)) for f in schema])
        return pa.RecordBatchReader.from_batches(schema, self._batches(schema, batch_rows))

    def _batches(self, schema: pa.Schema, batch_rows: int) -> Iterator[pa.RecordBatch]:
        expr = pc.field("__deleted") == False  # noqa: E712  (an expression)
        if not self.full:
            if not self.clusters:
                return
            expr = expr & pc.field(CLUSTER_COLUMN).isin(self.clusters)
        source = [f.name for f in self.meta.row_schema]
        wanted = source + [src for src, _ in LINEAGE.values()]
        for batch in self.dataset.to_batches(filter=expr, columns=wanted, batch_size=batch_rows):
            if batch.num_rows == 0:
                continue
            logical = to_logical(pa.Table.from_batches([batch]), self.meta.row_schema)
            arrays = [
                logical.column(name).cast(schema.field(i).type, safe=False) for i, name in enumerate(source)
            ]
            arrays += [logical.column(src).cast(t) for src, t in LINEAGE.values()]
            yield from pa.Table.from_arrays(arrays, schema=schema).to_batches()


def changes_since(
    state_uri: str,
    table: str,
    loaded_version: int | None,
    loaded_fingerprint: str | None,
    full_refresh: bool = False,
    partition_column: str | None = None,
    version: int | None = None,
) -> StateChanges:
    """Changes from ``loaded_version`` (None: nothing loaded yet) to ``version`` (default: the
    newest; the consistent root's published one for consistent reads). ``partition_column``: also
    report the range of its values over the changed clusters' rows, then and now (a warehouse
    MERGE can then stay inside those partitions)."""
    st = StateTable(state_uri, table)
    meta = st.require(version)
    version = st.version
    assert version is not None
    now_files = st.files_by_cluster()
    out = StateChanges(
        table, version, meta, True, "", None, sorted(now_files), st.dataset(), state_uri=state_uri
    )
    if full_refresh:
        out.reason = "full refresh requested"
    elif loaded_version is None:
        out.reason = "first load"
    elif loaded_version > version:
        out.reason = f"the warehouse loaded version {loaded_version}, the state is at {version} (state rebuilt elsewhere)"
    elif loaded_fingerprint != out.fingerprint:
        out.reason = "schema or key changed"
    elif loaded_version == version:
        out.full, out.up_to_date, out.reason, out.clusters = False, True, "up to date", []
        return out
    else:
        old = StateTable(state_uri, table)
        try:
            old_meta = old.load(loaded_version)
            old_files = old.files_by_cluster()
        except Exception as exc:  # log cleaned up or version vacuumed: only a full load is exact
            out.reason = f"version {loaded_version} is no longer readable ({type(exc).__name__})"
            return out
        assert old_meta is not None  # the same table as ``meta``: it exists
        touched = sorted(c for c in set(old_files) | set(now_files) if old_files.get(c) != now_files.get(c))
        if touched and set(touched) >= set(old_files) | set(now_files):
            out.reason = f"every cluster changed since version {loaded_version}"
            return out
        key = list(meta.key)
        part = [partition_column] if partition_column and partition_column in meta.row_schema.names else []
        old_part = [c for c in part if c in old_meta.row_schema.names]
        in_touched = pc.field(CLUSTER_COLUMN).isin(touched)
        try:
            before = to_logical(
                old.dataset().to_table(filter=in_touched, columns=key + old_part), old_meta.row_schema
            )
        except (OSError, FileNotFoundError) as exc:
            out.reason = f"files of version {loaded_version} are gone ({type(exc).__name__})"
            return out
        after = to_logical(
            out.dataset.to_table(filter=in_touched, columns=[*key, "__deleted", "__lsn", *part]),
            meta.row_schema,
        )
        _changed(out, key, before, after, part[0] if part else None)
        out.full, out.reason, out.clusters = False, f"{len(touched)} cluster(s) changed", touched
    return out


def _changed(out: StateChanges, key: list[str], before: pa.Table, after: pa.Table, part: str | None) -> None:
    """Changed keys (then or now), the removed ones with their removal LSN, the partition range."""
    then = pl.from_arrow(before.select(key))
    now = pl.from_arrow(after)
    assert isinstance(then, pl.DataFrame) and isinstance(now, pl.DataFrame)
    keys = pl.concat([then, now.select(key).cast(then.schema) if then.width else now.select(key)]).unique()
    out.changed_keys = keys.to_arrow() if keys.height else None
    visible = now.filter(~pl.col("__deleted")).select(key).unique()
    removal_lsn = now.filter(pl.col("__deleted")).group_by(key).agg(pl.col("__lsn").max().alias("_cdc_lsn"))
    newest_truncate = max((t.lsn for t in out.meta.truncates if t.lsn is not None), default=None)
    gone = (
        keys.join(visible, on=key, how="anti", nulls_equal=True)
        .join(removal_lsn, on=key, how="left", nulls_equal=True)
        .with_columns(pl.col("_cdc_lsn").fill_null(pl.lit(newest_truncate, pl.Int64)).cast(pl.Int64))
    )
    out.deletes = gone.to_arrow() if gone.height else None
    if part is not None:
        values = [t.column(part) for t in (before, after) if part in t.column_names and t.num_rows]
        lows = [pc.min(v).as_py() for v in values if pc.min(v).as_py() is not None]
        highs = [pc.max(v).as_py() for v in values if pc.max(v).as_py() is not None]
        out.partition_bounds = (min(lows), max(highs)) if lows else None
