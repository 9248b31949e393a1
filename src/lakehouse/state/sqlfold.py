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
import sqlglot
from sqlglot import expressions as exp

from lakehouse.sqlfiles import quote, sql, template
from lakehouse.state.fold import (
    FoldResult,
    LateEventError,
    Truncate,
    as_state_rows,
    image_hashes,
    placeholders,
    state_schema,
)

TRUNCATE_SCHEMA = pa.schema([("kafka_partition", pa.int32()), ("file_start_offset", pa.int64()),
                             ("row_index", pa.int32()), ("lsn", pa.int64()), ("commit_us", pa.int64())])


def fold_sql(con: duckdb.DuckDBPyConnection, events: pa.Table, prior: pa.Table | None, key: tuple[str, ...],
             row_fields: list[pa.Field], truncates: list[Truncate] = (), pairing: pa.Table | None = None,
             keep_images: bool = False) -> FoldResult:
    """:func:`lakehouse.state.fold.fold` on DuckDB (same arguments, same result)."""
    schema = state_schema(row_fields)
    wide, skeleton = _inputs(events, prior, pairing, schema, key, row_fields)
    con.register("fold_skeleton", skeleton)
    con.register("fold_truncates", _truncates(truncates))
    names = _fragments(key, row_fields, keep_images)
    for statement in _statements(sql("fold/fold.sql", **names)):
        con.execute(statement)
    late = con.execute(sql("fold/late.sql", **names)).fetchone()
    _raise_if_late(late, wide)
    for _ in range(64):  # chains of key changes in one batch are short; bounded anyway
        if not names["take"] or not con.execute(sql("fold/link_pending.sql", **names)).fetchone()[0]:
            break
        con.execute(sql("fold/link.sql", **names))
    con.execute(sql("fold/result.sql", **names))
    narrow = con.execute("SELECT * FROM fold_result").arrow().read_all()  # noqa: S608 (a view name, no input)
    effects = con.execute(sql("fold/effects.sql", **names)).fetchone()
    new_truncates = con.execute("SELECT * FROM fold_new_truncates").arrow().read_all()
    con.execute("DROP TABLE fold_rows")
    return _result(wide, narrow, effects, truncates, new_truncates, events.num_rows, schema, key, row_fields)


def fold_script(key: tuple[str, ...], row_fields: list[pa.Field], keep_images: bool, dialect: str,
                dataset: str) -> str:
    """The whole fold as one script in ``dialect`` (sqlglot), for engines that run a script as one
    job (BigQuery: temp tables live as long as the script). Reads tables ``<dataset>.fold_skeleton``
    and ``fold_truncates``, writes tables ``<dataset>.out_late``, ``out_result``, ``out_effects`` and
    ``out_new_truncates``."""
    names = _fragments(key, row_fields, keep_images)
    inputs = {"fold_skeleton": dataset, "fold_truncates": dataset}

    def one(name: str) -> str:
        return _render(_statements(sql(name, **names))[0], dialect, inputs)

    def out(name: str) -> str:
        return exp.to_table(f"{dataset}.{name}").sql(dialect=dialect)

    body = [_render(s, dialect, inputs) for s in _statements(sql("fold/fold.sql", **names))]
    body.append(f"CREATE OR REPLACE TABLE {out('out_late')} AS {one('fold/late.sql')}")
    if names["take"]:
        body.insert(0, "DECLARE rounds INT64 DEFAULT 0")  # declarations open a BigQuery script
        body.append(f"LOOP IF rounds >= 64 OR ({one('fold/link_pending.sql')}) = 0 THEN LEAVE; END IF; "
                    f"{one('fold/link.sql')}; SET rounds = rounds + 1; END LOOP")
    body.append(one("fold/result.sql"))
    body.append(f"CREATE OR REPLACE TABLE {out('out_result')} AS SELECT * FROM fold_result")
    body.append(f"CREATE OR REPLACE TABLE {out('out_effects')} AS {one('fold/effects.sql')}")
    body.append(f"CREATE OR REPLACE TABLE {out('out_new_truncates')} AS SELECT * FROM fold_new_truncates")
    return ";\n".join(body) + ";"


def _render(statement: str, dialect: str, inputs: dict[str, str] | None = None) -> str:
    """A DuckDB statement of sql/fold/ in another dialect. Temp views become temp tables (BigQuery
    has none; it materializes each step anyway); input tables get their dataset."""
    if dialect == "duckdb" and not inputs:
        return statement
    tree = sqlglot.parse_one(statement, read="duckdb")
    if isinstance(tree, exp.Create) and tree.kind == "VIEW":
        tree.set("kind", "TABLE")
    for table in tree.find_all(exp.Table):
        if table.name in (inputs or {}) and not table.db:
            qualified = exp.to_table(f"{inputs[table.name]}.{table.name}")
            table.set("db", qualified.args.get("db"))
            table.set("catalog", qualified.args.get("catalog"))
    return tree.sql(dialect=dialect)


def _inputs(events: pa.Table, prior: pa.Table | None, pairing: pa.Table | None, schema: pa.Schema,
            key: tuple[str, ...], row_fields: list[pa.Field]) -> tuple[pa.Table, pa.Table]:
    wide = pa.concat_tables([as_state_rows(t, schema) for t in (events, prior, pairing) if t is not None])
    counts = [t.num_rows if t is not None else 0 for t in (events, prior, pairing)]
    return wide, _skeleton(wide, events, counts, key, row_fields)


def _truncates(truncates: list[Truncate]) -> pa.Table:
    return pa.Table.from_pylist([_truncate_row(t) for t in truncates], TRUNCATE_SCHEMA)


def _raise_if_late(late: tuple, wide: pa.Table) -> None:
    count, first_rid = late
    if count:
        where = wide.column("__source_object")[first_rid].as_py() if first_rid is not None else None
        raise LateEventError(f"{count} keys have events older than their state (first in {where}: "
                             "an object that arrived late)")


def _result(wide: pa.Table, narrow: pa.Table, effects: tuple, truncates: list[Truncate], new_truncates: pa.Table,
            n_events: int, schema: pa.Schema, key: tuple[str, ...], row_fields: list[pa.Field]) -> FoldResult:
    inserts, updates, deletes, duplicates = (int(v or 0) for v in effects)
    known = sorted(set(truncates) | {Truncate(**t) for t in new_truncates.to_pylist()})
    unresolved = int(pc.sum(narrow.column("__unresolved")).as_py() or 0)
    return FoldResult(rows=_gather(wide, narrow, schema, key, row_fields), truncates=known, events=n_events,
                      duplicates=duplicates, inserts=inserts, updates=updates, deletes=deletes,
                      unresolved_toast=unresolved)


def _skeleton(wide: pa.Table, events: pa.Table, counts: list[int], key: tuple[str, ...],
              row_fields: list[pa.Field]) -> pa.Table:
    """The narrow columns the SQL works on (sql/fold/fold.sql's input), one row per wide row:
    events, then prior rows, then pairing candidates (``counts`` of each)."""
    n, n_events = wide.num_rows, counts[0]
    kind = np.repeat(np.array([0, 1, 2], np.int8), counts)
    op_c = np.zeros(n, bool)
    op_c[:n_events] = pc.equal(events.column("__op"), "c").fill_null(False).to_numpy(zero_copy_only=False)
    is_prior = pa.array(kind == 1)
    link_lsn = pc.if_else(pa.array(op_c), wide.column("__lsn"), pc.if_else(is_prior, wide.column("__pair_lsn"), None))
    link_tx = pc.if_else(pa.array(op_c), wide.column("__tx_id"), pc.if_else(is_prior, wide.column("__pair_tx"), None))
    image = np.zeros(n, np.uint64)
    image[:n_events] = image_hashes(events, row_fields)
    narrow = wide.select([*key, "__op", "__kafka_partition", "__file_start_offset", "__row_index", "__lsn", "__tx_id",
                          "__snapshot", "__stream_lsn"])
    commit_us = pc.cast(wide.column("__commit_ts"), pa.int64())
    return narrow.append_column("__rid", pa.array(np.arange(n, dtype=np.int64))) \
        .append_column("__kind", pa.array(kind)) \
        .append_column("__toast", _toast(wide, counts, row_fields, key)) \
        .append_column("__commit_us", commit_us) \
        .append_column("__image_hash", pa.array(image.view(np.int64), mask=image == 0)) \
        .append_column("__link_lsn", link_lsn).append_column("__link_tx", link_tx)


def _toast(wide: pa.Table, counts: list[int], row_fields: list[pa.Field], key: tuple[str, ...]) -> pa.Array:
    """Per row, the columns holding the placeholder (events) or still pending (state rows)."""
    n_events, n_prior, n_pair = counts
    kind = np.repeat(np.array([0, 1], np.int8), [n_events, n_prior + n_pair])
    cells: dict[int, list[str]] = {}
    for f in row_fields:
        if f.name in key:
            continue
        mask = placeholders(wide.column(f.name), kind)
        for i in np.flatnonzero(mask) if mask is not None else ():
            cells.setdefault(int(i), []).append(f.name)
    typ = pa.list_(pa.string())
    head = pa.array([cells.get(i) for i in range(n_events)], typ) if cells else pa.nulls(n_events, typ)
    pending = wide.column("__toast_pending").slice(n_events, n_prior).cast(typ)
    return pa.concat_arrays([head, *pending.chunks, pa.nulls(n_pair, typ)])


def _gather(wide: pa.Table, narrow: pa.Table, schema: pa.Schema, key: tuple[str, ...],
            row_fields: list[pa.Field]) -> pa.Table:
    """The state rows: each column taken from the row the SQL named (Arrow takes, no copies of
    rows that are not output)."""
    rid = narrow.column("__rid")
    narrow = _pending_lists(narrow, row_fields, key)
    computed = {"__deleted", "__image", "__stream_lsn", "__toast_pending", "__pair_lsn", "__pair_tx"}
    sources = {f.name: narrow.column(f"__src_{i}") for i, f in enumerate(row_fields) if f.name not in key}
    arrays = []
    for f in schema:
        if f.name in computed:
            col = narrow.column(f.name)
        elif f.name in sources:
            col = wide.column(f.name).take(sources[f.name])
        else:
            col = wide.column(f.name).take(rid)
        arrays.append(col if col.type == f.type else col.cast(f.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _pending_lists(narrow: pa.Table, row_fields: list[pa.Field], key: tuple[str, ...]) -> pa.Table:
    """The per-column pending flags as ``__toast_pending`` lists; link coordinates only where some
    column is pending."""
    n = narrow.num_rows
    cells: dict[int, list[str]] = {}
    for i, f in enumerate(row_fields):
        name = f"__pending_{i}"
        if f.name in key or name not in narrow.column_names:
            continue
        for row in np.flatnonzero(narrow.column(name).fill_null(False).to_numpy(zero_copy_only=False)):
            cells.setdefault(int(row), []).append(f.name)
    typ = pa.list_(pa.string())
    waiting = pa.array([cells.get(r) for r in range(n)], typ) if cells else pa.nulls(n, typ)
    has = pa.array(np.isin(np.arange(n), list(cells)))
    out = narrow.append_column("__toast_pending", waiting)
    for c in ("__pair_lsn", "__pair_tx"):
        out = out.set_column(out.schema.get_field_index(c), c, pc.if_else(has, out.column(c), None))
    return out


def _fragments(key: tuple[str, ...], row_fields: list[pa.Field], keep_images: bool) -> dict[str, str]:
    """Identifier lists and the per-column pieces of sql/fold/columns.sql, joined per placeholder."""
    pieces = _column_pieces()
    joined: dict[str, list[str]] = {name: [] for name in pieces}
    for i, f in enumerate(row_fields):
        if f.name in key:
            continue
        values = {"label": "'" + f.name.replace("'", "''") + "'", "r": quote(f"__src_{i}"),
                  "pending": quote(f"__pending_{i}")}
        for name, text in pieces.items():
            joined[name].append(text.format(**values))
    separators = {"gains": " OR ", "unresolved": " + "}
    out = {name: separators.get(name, ",\n").join(parts) for name, parts in joined.items()}
    out.update(key=", ".join(quote(k) for k in key), sources=", ".join(joined["offer"]) or "NULL AS __nothing",
               keep_images="true" if keep_images else "false")
    out["resolve"] = out["resolve"] or "NULL AS __nothing"
    out["pending"] = out["pending"] or "false AS __nothing_pending"
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


def _truncate_row(t: Truncate) -> dict:
    return {"kafka_partition": t.kafka_partition, "file_start_offset": t.file_start_offset,
            "row_index": t.row_index, "lsn": t.lsn, "commit_us": t.commit_us}


