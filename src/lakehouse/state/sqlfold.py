"""The fold run by a SQL engine (sql/fold/, docs/fold-sql.md): DuckDB here, BigQuery through
:func:`fold_script` (lakehouse.warehouse.bigquery_fold).

The statements implement the rules of :mod:`lakehouse.state.fold`, the reference model the
property tests compare them with. Only narrow columns enter the SQL (:func:`fold_inputs`); for
each source column it names the row whose value the result takes, and :func:`fold_output`
gathers the values with Arrow takes. What SQL cannot see cheaply is computed on the Arrow side:
which cells hold the unchanged-TOAST placeholder (``__toast``, column numbers per row: the
placeholder's encoding depends on the column type) and the identity of lsn-less snapshot reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import sqlglot
from sqlglot import expressions as exp

from lakehouse.sqlfiles import quote, template
from lakehouse.state.fold import (
    FoldResult,
    LateEventError,
    Truncate,
    as_state_rows,
    image_hashes,
    placeholders,
    state_schema,
)

TRUNCATE_SCHEMA = pa.schema(
    [
        ("kafka_partition", pa.int32()),
        ("file_start_offset", pa.int64()),
        ("row_index", pa.int32()),
        ("lsn", pa.int64()),
        ("commit_us", pa.int64()),
    ]
)
MAX_LINK_ROUNDS = 64  # chains of key changes in one batch are short; bounded anyway


@dataclass(frozen=True)
class FoldInputs:
    wide: pa.Table  # every row taking part, state schema: events, prior rows, pairing candidates
    skeleton: pa.Table  # its narrow columns, the SQL's input (sql/fold/fold.sql)
    truncates: pa.Table  # every truncate known before
    n_events: int


def fold_sql(
    con: duckdb.DuckDBPyConnection,
    events: pa.Table,
    prior: pa.Table | None,
    key: tuple[str, ...],
    row_fields: list[pa.Field],
    truncates: list[Truncate] | tuple[Truncate, ...] = (),
    pairing: pa.Table | None = None,
    keep_images: bool = False,
) -> FoldResult:
    """:func:`lakehouse.state.fold.fold` on DuckDB (same arguments, same result). ``con``: one per
    thread (its temp views are the fold's working tables)."""
    inputs = fold_inputs(events, prior, pairing, truncates, key, row_fields)  # type: ignore[arg-type]
    con.register("fold_skeleton", inputs.skeleton)
    con.register("fold_truncates", inputs.truncates)
    names = _fragments(key, row_fields, keep_images)
    for statement in steps("fold/fold.sql", names):
        con.execute(statement)
    raise_if_late(con.execute(step("fold/late.sql", names)).fetchone(), inputs.wide)  # type: ignore[arg-type]
    for _ in range(MAX_LINK_ROUNDS if names["take"] else 0):
        if not con.execute(step("fold/link_pending.sql", names)).fetchone()[0]:  # type: ignore[index]
            break
        con.execute(step("fold/link.sql", names))
    con.execute(step("fold/result.sql", names))
    narrow = con.execute(step("fold/read_result.sql", names)).arrow().read_all()
    effects = con.execute(step("fold/effects.sql", names)).fetchone()
    new_truncates = con.execute(step("fold/read_new_truncates.sql", names)).arrow().read_all()
    con.execute(step("fold/cleanup.sql", names))
    return fold_output(inputs, narrow, effects, truncates, new_truncates, key, row_fields)  # type: ignore[arg-type]


def fold_script(
    key: tuple[str, ...],
    row_fields: list[pa.Field],
    keep_images: bool,
    dialect: str,
    tables: dict[str, str],
    skeleton: str,
) -> str:
    """The whole fold as one script in ``dialect`` (sql/fold/bigquery_script.sql), for engines that
    run a script as one job. ``skeleton``: the statement creating the temp table ``fold_skeleton``;
    ``tables``: the qualified name of the other input (``fold_truncates``) and of each output
    (``out_late``, ``out_result``, ``out_effects``, ``out_new_truncates``)."""
    names = _fragments(key, row_fields, keep_images)

    def one(name: str) -> str:
        return render(step(name, names), dialect, tables)

    pieces = {
        "skeleton": skeleton,
        "steps": ";\n".join(render(s, dialect, tables) for s in steps("fold/fold.sql", names)),
        "late": one("fold/late.sql"),
        "result": one("fold/result.sql"),
        "effects": one("fold/effects.sql"),
        "read_result": one("fold/read_result.sql"),
        "read_new_truncates": one("fold/read_new_truncates.sql"),
        "link_pending": one("fold/link_pending.sql") if names["take"] else "SELECT 0",
        "link": one("fold/link.sql") if names["take"] else "SET rounds = rounds",
        **{k: exp.to_table(v).sql(dialect=dialect) for k, v in tables.items() if k.startswith("out_")},
    }
    return "\n".join(
        line for line in template("fold/bigquery_script.sql").splitlines() if not line.startswith("--")
    ).format(**pieces)


def render(statement: str, dialect: str, tables: dict[str, str] | None = None) -> str:
    """A DuckDB statement of sql/fold/ in another dialect (sqlglot). Temp views become temp tables
    (BigQuery has none; it materializes each step anyway); input tables get their qualified names."""
    if dialect == "duckdb" and not tables:
        return statement
    tree = sqlglot.parse_one(statement, read="duckdb")
    if isinstance(tree, exp.Create) and tree.kind == "VIEW":
        tree.set("kind", "TABLE")
    for table in tree.find_all(exp.Table):
        if table.name in (tables or {}) and not table.db:
            table.replace(exp.to_table(tables[table.name]))  # type: ignore[index]
    return tree.sql(dialect=dialect)


def fold_inputs(
    events: pa.Table,
    prior: pa.Table | None,
    pairing: pa.Table | None,
    truncates: list[Truncate],
    key: tuple[str, ...],
    row_fields: list[pa.Field],
) -> FoldInputs:
    schema = state_schema(row_fields)
    wide = pa.concat_tables([as_state_rows(t, schema) for t in (events, prior, pairing) if t is not None])
    counts = [t.num_rows if t is not None else 0 for t in (events, prior, pairing)]
    rows = pa.Table.from_pylist([t.__dict__ for t in truncates], TRUNCATE_SCHEMA)
    return FoldInputs(wide, _skeleton(wide, counts, key, row_fields), rows, counts[0])


def raise_if_late(late: tuple, wide: pa.Table) -> None:
    count, first_rid = late
    if count:
        where = wide.column("__source_object")[first_rid].as_py() if first_rid is not None else None
        raise LateEventError(
            f"{count} keys have events older than their state (first in {where}: an object that arrived late)"
        )


def fold_output(
    inputs: FoldInputs,
    narrow: pa.Table,
    effects: tuple,
    truncates: list[Truncate],
    new_truncates: pa.Table,
    key: tuple[str, ...],
    row_fields: list[pa.Field],
) -> FoldResult:
    """The fold's result from the SQL's outputs: state rows gathered from the wide rows it named."""
    inserts, updates, deletes, duplicates = (int(v or 0) for v in effects)
    known = sorted(set(truncates) | {Truncate(**t) for t in new_truncates.to_pylist()})
    unresolved = int(pc.sum(narrow.column("__unresolved")).as_py() or 0)
    rows = _gather(inputs.wide, narrow, state_schema(row_fields), key, row_fields)
    return FoldResult(
        rows=rows,
        truncates=known,
        events=inputs.n_events,
        duplicates=duplicates,
        inserts=inserts,
        updates=updates,
        deletes=deletes,
        unresolved_toast=unresolved,
    )


def _skeleton(
    wide: pa.Table, counts: list[int], key: tuple[str, ...], row_fields: list[pa.Field]
) -> pa.Table:
    """The narrow columns the SQL works on, one row per wide row: events, then prior rows, then
    pairing candidates (``counts`` of each)."""
    n, n_events = wide.num_rows, counts[0]
    kind = np.repeat(np.array([0, 1, 2], np.int8), counts)
    is_event_c = pa.array(
        (kind == 0) & (pc.equal(wide.column("__op"), "c").fill_null(False).to_numpy(zero_copy_only=False))
    )
    is_prior = pa.array(kind == 1)
    # the d half a row can pair with: a c event's own (lsn, txId), a pending state row's recorded
    # one; a missing txId pairs as -1 (as the reference fold does)
    link_lsn = pc.if_else(
        is_event_c, wide.column("__lsn"), pc.if_else(is_prior, wide.column("__pair_lsn"), None)
    )
    link_tx = pc.if_else(
        is_event_c, wide.column("__tx_id").fill_null(-1), pc.if_else(is_prior, wide.column("__pair_tx"), None)
    )
    image = np.zeros(n, np.uint64)
    image[:n_events] = image_hashes(wide.slice(0, n_events), row_fields)
    narrow = wide.select(
        [
            *key,
            "__op",
            "__kafka_partition",
            "__file_start_offset",
            "__row_index",
            "__lsn",
            "__tx_id",
            "__snapshot",
            "__stream_lsn",
        ]
    )
    return (
        narrow.append_column("__rid", pa.array(np.arange(n, dtype=np.int64)))
        .append_column("__kind", pa.array(kind))
        .append_column("__toast", _toast(wide, counts, row_fields, key))
        .append_column("__commit_us", pc.cast(wide.column("__commit_ts"), pa.int64()))
        .append_column("__image_hash", pa.array(image.view(np.int64), mask=image == 0))
        .append_column("__link_lsn", link_lsn)
        .append_column("__link_tx", link_tx)
    )


def _toast(wide: pa.Table, counts: list[int], row_fields: list[pa.Field], key: tuple[str, ...]) -> pa.Array:
    """Per row, the numbers of the columns holding the placeholder (events) or still pending (state
    rows); null for none."""
    n_events, n_prior, n_pair = counts
    number = {f.name: i for i, f in enumerate(row_fields) if f.name not in key}
    kind = np.repeat(np.array([0, 1], np.int8), [n_events, n_prior + n_pair])
    cells: dict[int, list[int]] = {}
    for name, i in number.items():
        mask = placeholders(wide.column(name), kind)
        for row in np.flatnonzero(mask) if mask is not None else ():
            cells.setdefault(int(row), []).append(i)
    for row, names in enumerate(wide.column("__toast_pending").slice(n_events, n_prior).to_pylist()):  # type: ignore[assignment]
        if names:
            cells[n_events + row] = [number[c] for c in names if c in number]  # type: ignore[index]
    typ = pa.list_(pa.int32())
    return (
        pa.array([cells.get(r) or None for r in range(wide.num_rows)], typ)
        if cells
        else pa.nulls(wide.num_rows, typ)
    )


def _gather(
    wide: pa.Table, narrow: pa.Table, schema: pa.Schema, key: tuple[str, ...], row_fields: list[pa.Field]
) -> pa.Table:
    """The state rows: each column taken from the row the SQL named (Arrow takes)."""
    rid = narrow.column("__rid")
    narrow = _pending_lists(narrow, row_fields, key)
    computed = {"__deleted", "__image", "__stream_lsn", "__toast_pending", "__pair_lsn", "__pair_tx"}
    sources = {f.name: narrow.column(f"__src_{i}") for i, f in enumerate(row_fields) if f.name not in key}
    arrays = []
    for f in schema:
        if f.name in computed:
            col = narrow.column(f.name)
        else:
            col = wide.column(f.name).take(sources.get(f.name, rid))
        arrays.append(col if col.type == f.type else col.cast(f.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _pending_lists(narrow: pa.Table, row_fields: list[pa.Field], key: tuple[str, ...]) -> pa.Table:
    """The per-column pending flags as ``__toast_pending`` lists; link coordinates only where some
    column is pending."""
    n = narrow.num_rows
    cells: dict[int, list[str]] = {}
    for i, f in enumerate(row_fields):
        if f.name in key:
            continue
        for row in np.flatnonzero(
            narrow.column(f"__pending_{i}").fill_null(False).to_numpy(zero_copy_only=False)
        ):
            cells.setdefault(int(row), []).append(f.name)
    typ = pa.list_(pa.string())
    waiting = pa.array([cells.get(r) for r in range(n)], typ) if cells else pa.nulls(n, typ)
    has = pa.array(np.isin(np.arange(n), list(cells)))
    out = narrow.append_column("__toast_pending", waiting)
    for c in ("__pair_lsn", "__pair_tx"):
        out = out.set_column(out.schema.get_field_index(c), c, pc.if_else(has, out.column(c), None))
    return out


def _fragments(key: tuple[str, ...], row_fields: list[pa.Field], keep_images: bool) -> dict[str, str]:
    """What fills the templates: quoted key columns and the per-column pieces of
    sql/fold/columns.sql (numbers and quoted identifiers only, never names as literals)."""
    pieces = _column_pieces()
    joined: dict[str, list[str]] = {name: [] for name in pieces}
    for i, f in enumerate(row_fields):
        if f.name in key:
            continue
        values = {"n": str(i), "r": quote(f"__src_{i}"), "pending": quote(f"__pending_{i}")}
        for name, text in pieces.items():
            joined[name].append(text.format(**values))
    separators = {"gains": " OR ", "unresolved": " + "}
    out = {name: separators.get(name, ",\n").join(parts) for name, parts in joined.items()}
    out.update(
        key=", ".join(quote(k) for k in key),
        sources=", ".join(joined["offer"]) or "NULL AS __nothing",
        keep_images="true" if keep_images else "false",
    )
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


def steps(name: str, names: dict[str, str]) -> list[str]:
    """The statements of ``sql/<name>``, split and stripped of comments before anything is filled
    in (a column name can never change where a statement or a comment ends)."""
    body = "\n".join(line for line in template(name).splitlines() if not line.lstrip().startswith("--"))
    return [s.strip().format(**names) for s in body.split(";") if s.strip()]


def step(name: str, names: dict[str, str]) -> str:
    (statement,) = steps(name, names)
    return statement
