"""Visible rows of a current-state table, as a reader outside this project should see them."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from lakehouse.state.table import StateTable


def export_type(t: pa.DataType) -> pa.DataType:
    """Source types for a plain Parquet file: timestamps and times in µs, the rest as decoded
    (exact decimals; json, uuid, enum and xml are already text)."""
    if pa.types.is_timestamp(t):
        return pa.timestamp("us", tz=t.tz)
    if pa.types.is_time(t):
        return pa.time64("us")
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return pa.list_(export_type(t.value_type))
    if pa.types.is_map(t):
        return pa.map_(export_type(t.key_type), export_type(t.item_type))
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, export_type(f.type), f.nullable) for f in t])
    return t


def _public(metadata: dict[bytes, bytes] | None) -> dict[bytes, bytes] | None:
    kept = {k: v for k, v in (metadata or {}).items() if not k.startswith(b"lakehouse.")}
    return kept or None


def visible_rows(state_uri: str, table: str) -> pa.Table:
    return as_exported(StateTable(state_uri, table).visible())


def as_exported(rows: pa.Table) -> pa.Table:
    # Debezium's type tags stay; the compaction's own bookkeeping (defaults, column lifetimes) does not
    target = pa.schema(
        [pa.field(f.name, export_type(f.type), metadata=_public(f.metadata)) for f in rows.schema]
    )
    # ns -> µs truncation is safe for PostgreSQL values (µs resolution); safe=False allows it
    return pa.Table.from_arrays(
        [c.cast(f.type, safe=False) for c, f in zip(rows.columns, target)], schema=target
    )


def export_table(state_uri: str, table: str, out: str) -> int:
    rows = visible_rows(state_uri, table)
    pq.write_table(rows, out, compression="zstd")
    return rows.num_rows


def table_history(state_uri: str, table: str, as_of: str | None = None) -> pa.Table:
    """Every version of a table's rows (history: true), or with ``as_of`` (an ISO time, UTC when it
    has no zone, or an integer LSN) the table as it was then; exported types."""
    from datetime import UTC, datetime

    from lakehouse.state.history import as_of as rows_as_of
    from lakehouse.state.history import history_rows

    meta = StateTable(state_uri, table).require()
    rows = history_rows(state_uri, table, meta.key, meta.row_schema)
    if as_of is not None:
        if as_of.strip().lstrip("-").isdigit():
            at: datetime | int = int(as_of)
        else:
            at = datetime.fromisoformat(as_of.replace("Z", "+00:00"))
            at = at if at.tzinfo else at.replace(tzinfo=UTC)
        rows = rows_as_of(rows, at)
    return as_exported(rows)
