"""The fold run by a SQL engine (sql/fold/, docs/fold-sql.md): DuckDB in-process here.

The statements implement the rules of :mod:`lakehouse.state.fold`, which stays as the reference
model property tests compare against. What SQL cannot see cheaply is computed on the Arrow side
before: which cells hold the unchanged-TOAST placeholder (``__toast``, a list of column names per
event: the placeholder's encoding depends on the column type) and the identity of lsn-less snapshot
reads (``__image_hash``).
"""

from __future__ import annotations

from functools import cache

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lakehouse.sqlfiles import quote, sql, template
from lakehouse.state.fold import (
    FoldResult,
    LateEventError,
    Truncate,
    image_hashes,
    placeholders,
    state_schema,
)

TRUNCATE_SCHEMA = pa.schema([("kafka_partition", pa.int32()), ("file_start_offset", pa.int64()),
                             ("row_index", pa.int32()), ("lsn", pa.int64()), ("commit_us", pa.int64())])


def fold_sql(con: duckdb.DuckDBPyConnection, events: pa.Table, prior: pa.Table | None, key: tuple[str, ...],
             row_fields: list[pa.Field], truncates: list[Truncate] = (), pairing: pa.Table | None = None,
             keep_images: bool = False) -> FoldResult:
    """:func:`lakehouse.state.fold.fold` on the engine behind ``con`` (same arguments, same result)."""
    schema = state_schema(row_fields)
    con.register("fold_events", _with_toast(events, row_fields, key))
    con.register("fold_prior", _state_view(prior, schema))
    con.register("fold_pairing", _state_view(pairing, schema))
    con.register("fold_truncates", pa.Table.from_pylist([_truncate_row(t) for t in truncates], TRUNCATE_SCHEMA))
    names = _fragments(key, row_fields, keep_images)
    for statement in _statements(sql("fold/fold.sql", **names)):
        con.execute(statement)
    late, first_in = con.execute(sql("fold/late.sql", **names)).fetchone()
    if late:
        raise LateEventError(f"{late} keys have events older than their state (first in {first_in}: "
                             "an object that arrived late)")
    if names["take"]:
        for _ in range(64):  # chains of key changes in one batch are short; bounded anyway
            (changed,) = con.execute(sql("fold/link.sql", **names)).fetchone()
            if not changed:
                break
    con.execute(sql("fold/result.sql", **names))
    rows = con.execute("SELECT * FROM fold_result").arrow().read_all()  # noqa: S608 (a view name, no input)
    inserts, updates, deletes, duplicates = con.execute(sql("fold/effects.sql", **names)).fetchone()
    new_truncates = con.execute("SELECT * FROM fold_new_truncates").arrow().read_all().to_pylist()
    known = sorted(set(truncates) | {Truncate(**t) for t in new_truncates})
    unresolved = pc.sum(rows.column("__unresolved")).as_py() or 0
    con.execute("DROP TABLE fold_rows")
    return FoldResult(rows=_as_schema(rows, schema), truncates=known, events=events.num_rows,
                      duplicates=int(duplicates), inserts=int(inserts), updates=int(updates),
                      deletes=int(deletes), unresolved_toast=int(unresolved))


def _fragments(key: tuple[str, ...], row_fields: list[pa.Field], keep_images: bool) -> dict[str, str]:
    """Identifier lists and the per-column pieces of sql/fold/columns.sql, joined per placeholder."""
    pieces = _column_pieces()
    joined: dict[str, list[str]] = {name: [] for name in pieces}
    resolved = []
    for i, f in enumerate(row_fields):
        if f.name in key:
            resolved.append(quote(f.name))
            continue
        values = {"column": quote(f.name), "label": "'" + f.name.replace("'", "''") + "'",
                  "r": quote(f"__resolved_{i}")}
        for name, text in pieces.items():
            joined[name].append(text.format(**values))
        resolved.append(joined["resolved"][-1])
    separators = {"gains": " OR ", "unresolved": " + "}
    out = {name: separators.get(name, ",\n").join(parts) for name, parts in joined.items()}
    out.update(key=", ".join(quote(k) for k in key), row_columns=", ".join(quote(f.name) for f in row_fields),
               resolved=", ".join(resolved), keep_images="true" if keep_images else "false")
    out["resolve"] = out["resolve"] or "NULL AS __nothing"
    out["pending"] = out["pending"] or "CAST(NULL AS VARCHAR)"
    out["unresolved"] = out["unresolved"] or "0"
    return out


@cache
def _column_pieces() -> dict[str, str]:
    pieces: dict[str, str] = {}
    name = None
    for line in template("fold/columns.sql").splitlines():
        if line.startswith("-- name: "):
            name = line.removeprefix("-- name: ").strip()
            pieces[name] = ""
        elif name and line.strip() and not line.startswith("--"):
            pieces[name] += line + "\n"
    return {k: v.strip() for k, v in pieces.items()}


def _statements(text: str) -> list[str]:
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in body.split(";") if s.strip()]


def _with_toast(events: pa.Table, row_fields: list[pa.Field], key: tuple[str, ...]) -> pa.Table:
    """Events plus ``__toast`` (columns holding the placeholder) and ``__image_hash``."""
    n = events.num_rows
    kind = np.zeros(n, np.int8)
    cells: list[list[str]] = [[] for _ in range(n)]
    any_ph = False
    for f in row_fields:
        if f.name in key:
            continue
        mask = placeholders(events.column(f.name), kind)
        if mask is not None:
            any_ph = True
            for i in np.flatnonzero(mask):
                cells[i].append(f.name)
    toast = pa.array([c or None for c in cells], pa.list_(pa.string())) if any_ph else \
        pa.nulls(n, pa.list_(pa.string()))
    out = events.append_column("__toast", toast)
    return out.append_column("__image_hash", pa.array(image_hashes(events, row_fields), pa.uint64()))


def _state_view(rows: pa.Table | None, schema: pa.Schema) -> pa.Table:
    rows = (rows if rows is not None else schema.empty_table()).select(schema.names)
    return rows.append_column("__toast", rows.column("__toast_pending").cast(pa.list_(pa.string())))


def _truncate_row(t: Truncate) -> dict:
    return {"kafka_partition": t.kafka_partition, "file_start_offset": t.file_start_offset,
            "row_index": t.row_index, "lsn": t.lsn, "commit_us": t.commit_us}


def _as_schema(rows: pa.Table, schema: pa.Schema) -> pa.Table:
    arrays = []
    for f in schema:
        if f.name in rows.column_names:
            col = rows.column(f.name)
            arrays.append(col if col.type == f.type else col.cast(f.type))
        else:
            arrays.append(pa.nulls(rows.num_rows, f.type))
    return pa.Table.from_arrays(arrays, schema=schema)

