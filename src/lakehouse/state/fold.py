"""Fold change events into current-state rows: the pure, in-memory heart of compaction.

Input: normalized change events (:mod:`lakehouse.lake.reader` schema) plus, for the keys they
touch, the rows the state already holds ("prior" rows, each standing for every event applied
before). Output: one row per touched key, the key's state after all of them, tombstones included.

Rules (spec lake-format.md §5, §7):

* Order per key by Kafka position ``(__kafka_partition, __file_start_offset, __row_index)``.
* Duplicates (Debezium replays, overlapping sink files) share an identity
  ``(key, op, lsn, txId, snapshot)``; for rows without lsn and txId (incremental snapshot reads)
  the row image joins the identity. The copy with the highest position is kept: replays are
  contiguous suffixes, so the last copy is the one that sits in the right order.
* ``d`` ends the key's life; the state keeps a tombstone holding the row as it was before the
  delete (non-key columns of ``before`` under REPLICA IDENTITY DEFAULT are not data, so they come
  from the previous image). The tombstone's position stops older events from reviving the key.
* A column holding the unchanged-TOAST placeholder takes the newest real value of that column
  since the key's last delete; on the ``c`` half of a primary-key change it takes the value the
  old key held, found through the ``d`` with the same ``(lsn, txId)``.
* ``t`` removes every row whose winning event is before it: same Kafka partition by position,
  other partitions by change LSN (TRUNCATE holds an ACCESS EXCLUSIVE lock, so every change of the
  table is either before its LSN or after its commit), by commit time when an LSN is missing.

Everything here is vectorized over Arrow/numpy; values are never converted to Python objects
except for the rare incremental-snapshot identity.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from lakehouse.lake.semantic import TOAST_PLACEHOLDER, is_toast_placeholder

POSITION = ("__kafka_partition", "__file_start_offset", "__row_index")

# internal columns a state row keeps beside the source columns
STATE_INTERNAL_FIELDS: tuple[pa.Field, ...] = (
    pa.field("__op", pa.string()),
    pa.field("__deleted", pa.bool_()),
    pa.field("__image", pa.bool_()),  # a superseded delete's pre-delete image (see fold's keep_images)
    pa.field("__kafka_partition", pa.int32()),
    pa.field("__file_start_offset", pa.int64()),
    pa.field("__row_index", pa.int32()),
    pa.field("__lsn", pa.int64()),
    pa.field("__tx_id", pa.int64()),
    pa.field("__snapshot", pa.string()),
    pa.field("__commit_ts", pa.timestamp("us", tz="UTC")),
    pa.field("__source_object", pa.string()),
    pa.field("__stream_lsn", pa.int64()),  # highest streamed change LSN applied to the key (replays)
    # unchanged-TOAST columns of a key change's c half whose d half has not arrived yet (another
    # Kafka partition lagging): resolved when a d with (__pair_lsn, __pair_tx) comes
    pa.field("__toast_pending", pa.list_(pa.string())),
    pa.field("__pair_lsn", pa.int64()),
    pa.field("__pair_tx", pa.int64()),
)
STATE_INTERNAL_NAMES = tuple(f.name for f in STATE_INTERNAL_FIELDS)
# what a history version keeps of them: the change that made it and where it sits
VERSION_FIELDS = (
    "__op",
    "__kafka_partition",
    "__file_start_offset",
    "__row_index",
    "__lsn",
    "__tx_id",
    "__snapshot",
    "__commit_ts",
)
_EVENT_ONLY = ("__table", "__topic")


@dataclass(frozen=True, order=True)
class Truncate:
    """Where a ``t`` event sits: everything of the table before it is gone."""

    kafka_partition: int
    file_start_offset: int
    row_index: int
    lsn: int | None = field(default=None, compare=False)
    commit_us: int | None = field(default=None, compare=False)

    def to_json(self) -> list:
        return [self.kafka_partition, self.file_start_offset, self.row_index, self.lsn, self.commit_us]

    @classmethod
    def from_json(cls, v: list) -> Truncate:
        return cls(*v)


class LateEventError(Exception):
    """An event older than what the state already holds for its key: only a rebuild is exact."""


@dataclass
class FoldResult:
    rows: pa.Table  # one row per surviving key (tombstones included), state schema
    truncates: list[Truncate]  # every truncate known after this fold
    events: int = 0  # change events read (duplicates included)
    duplicates: int = 0
    inserts: int = 0
    updates: int = 0
    deletes: int = 0
    unresolved_toast: int = 0  # placeholder cells with no earlier value anywhere (written as null)
    # with versions=True: every new event that survived (no copies, no replays) as the row it made
    # (TOAST resolved; a delete holds the image it ended), in key and Kafka order: the history
    versions: pa.Table | None = None


def state_schema(row_fields: list[pa.Field]) -> pa.Schema:
    return pa.schema(list(STATE_INTERNAL_FIELDS) + list(row_fields))


def fold(
    events: pa.Table,
    prior: pa.Table | None,
    key: tuple[str, ...],
    row_fields: list[pa.Field],
    truncates: Sequence[Truncate] = (),
    pairing: pa.Table | None = None,
    keep_images: bool = False,
    versions: bool = False,
) -> FoldResult:
    """Apply ``events`` on top of ``prior`` (state rows of the keys the events touch).

    ``row_fields``: the merged source columns (logical types). ``pairing``: state tombstones of
    other keys that may be the ``d`` half of a primary-key change in ``events``.
    ``keep_images``: also return the pre-delete image of every delete superseded by a later event
    of its key (``__image`` rows): with several Kafka partitions the c half of a key change may
    arrive after the old key was re-created, and still needs the image (never visible).
    Raises :class:`LateEventError` when an event is older than its key's prior row.
    """
    schema = state_schema(row_fields)
    stacked = _stack(schema, events, prior, pairing)
    if stacked is None:
        return FoldResult(schema.empty_table(), sorted(set(truncates)))
    table, kind_all = stacked
    op_all = _ops(table.column("__op"))
    lsn_all = table.column("__lsn").fill_null(-1).to_numpy(zero_copy_only=False)
    tx_all = table.column("__tx_id").fill_null(-1).to_numpy(zero_copy_only=False)

    # duplicates of snapshot reads, lsn-less events and truncates (streamed events: _replayed)
    dup = _duplicates(table, row_fields, key, kind_all, op_all)
    known = _known_truncates(table, truncates, kind_all, op_all, dup)
    keep = ~dup & (op_all != "t")
    killed = _killed_by(table, sorted(known)) if known else np.zeros(table.num_rows, bool)
    prior_killed = bool(((kind_all == 1) & killed & (op_all != "d")).any())
    keep &= ~killed

    rows, new_key = _key_order(table, key, kind_all, keep)
    _check_late(kind_all[rows], new_key, rows, table)
    rows, new_key, stream_lsn, replays = _drop_replays(table, rows, new_key, kind_all, op_all, lsn_all)
    pending_in, coord = _pending_prior(table, kind_all, op_all, lsn_all, tx_all)
    g = _Groups(
        table,
        rows,
        new_key,
        kind_all[rows],
        op_all[rows],
        own=(lsn_all[rows], tx_all[rows]),
        coord=(coord[0][rows], coord[1][rows]),
    )

    winners, is_image = _winners(g, keep_images)
    history = np.flatnonzero(g.kind == 0) if versions else None
    columns, history_columns, pending_out, unresolved = _row_columns(
        g, row_fields, key, winners, kind_all, pending_in, history
    )
    out = _internal_columns(g, winners, is_image, stream_lsn, pending_out)
    out.update(columns)
    result = pa.Table.from_pydict(out, schema=schema)
    if prior_killed:  # a truncate reached state rows: count by key (rare)
        surviving = table.select(list(key)).take(pa.array(rows[g.kind == 0]))  # less copies and replays
        inserts, updates, deletes = _effects(prior, result, surviving, key)
    else:
        inserts, updates, deletes = _group_effects(g)
    history_rows = None
    if history is not None:
        internal = {name: g.take(table.column(name), history) for name in VERSION_FIELDS}
        history_rows = pa.Table.from_pydict(
            {**internal, **history_columns},
            schema=pa.schema([schema.field(n) for n in VERSION_FIELDS] + row_fields),
        )
    return FoldResult(
        rows=result,
        truncates=sorted(known),
        events=events.num_rows,
        duplicates=int(dup.sum()) + replays,
        inserts=inserts,
        updates=updates,
        deletes=deletes,
        unresolved_toast=unresolved,
        versions=history_rows,
    )


def _stack(
    schema: pa.Schema, events: pa.Table, prior: pa.Table | None, pairing: pa.Table | None
) -> tuple[pa.Table, np.ndarray] | None:
    """Events, prior rows and pairing candidates as one table of state rows, and each row's kind
    (0, 1, 2 in that order); None when all three are empty."""
    parts, kinds = [], []
    for kind, t in enumerate((events, prior, pairing)):
        if t is not None and t.num_rows:
            parts.append(as_state_rows(t, schema))
            kinds.append(np.full(t.num_rows, kind, np.int8))
    if not parts:
        return None
    return pa.concat_tables(parts), np.concatenate(kinds)  # chunked: no copy of the (large) row images


def _known_truncates(
    table: pa.Table, truncates: Sequence[Truncate], kind: np.ndarray, op: np.ndarray, dup: np.ndarray
) -> set[Truncate]:
    """Every truncate known after this batch's. Marks in ``dup`` a re-emitted truncate (one whose
    LSN is already known): it is the same truncate, not a new one."""
    known = set(truncates)
    known_lsns = {t.lsn for t in known if t.lsn is not None}
    for i in np.flatnonzero((op == "t") & (kind == 0) & ~dup):
        r = table.slice(int(i), 1).select(list(POSITION) + ["__lsn", "__commit_ts"]).to_pylist()[0]
        if r["__lsn"] is not None and r["__lsn"] in known_lsns:
            dup[i] = True
            continue
        ts = r["__commit_ts"]
        known.add(
            Truncate(
                r["__kafka_partition"],
                r["__file_start_offset"],
                r["__row_index"],
                r["__lsn"],
                None if ts is None else int(ts.timestamp() * 1_000_000),
            )
        )
    return known


def _key_order(
    table: pa.Table, key: tuple[str, ...], kind: np.ndarray, keep: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The kept rows (indices into ``table``) sorted by key, then Kafka position, and whether each
    starts its key. Only small columns are ever reordered."""
    skel = _skeleton(table, key, kind).filter(pl.Series(keep))
    rows = np.flatnonzero(keep)
    # pairing candidates (tombstones and images of other keys) form groups of their own, last
    order = (
        skel.with_row_index("__rid")
        .sort(["__pairing", *key, *POSITION, "__kind_rank"])
        .get_column("__rid")
        .to_numpy()
    )
    rows, skel = rows[order], skel[order]
    new_key = (
        skel.select(
            pl.any_horizontal(
                [pl.col(c).ne_missing(pl.col(c).shift(1)) for c in (*key, "__pairing")]
            ).fill_null(True)
        )
        .to_series()
        .to_numpy()
        .copy()
    )
    if len(rows):
        new_key[0] = True
    return rows, new_key


def _drop_replays(
    table: pa.Table,
    rows: np.ndarray,
    new_key: np.ndarray,
    kind: np.ndarray,
    op: np.ndarray,
    lsn: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """The ordered ``rows`` and ``new_key`` less streamed events applied already (:func:`_replayed`),
    each remaining row's running maximum streamed LSN, and how many were dropped."""
    carried = table.column("__stream_lsn").fill_null(-1).to_numpy(zero_copy_only=False)
    replays, stream_lsn = _replayed(lsn[rows], carried[rows], kind[rows], op[rows], new_key)
    if not replays.any():
        return rows, new_key, stream_lsn, 0
    keep = ~replays
    return rows[keep], new_key[keep], stream_lsn[keep], int(replays.sum())


@dataclass
class _Groups:
    """The surviving rows in key, then Kafka, order (indices into the stacked table), each key cut
    into segments: a delete closes the segment it belongs to, the next event starts a new one."""

    table: pa.Table
    rows: np.ndarray
    new_key: np.ndarray  # the row starts its key (or pairing group)
    kind: np.ndarray  # 0: event, 1: prior state row, 2: pairing candidate
    op: np.ndarray
    own: tuple[np.ndarray, np.ndarray]  # the row's (lsn, txId), -1 for none
    coord: tuple[np.ndarray, np.ndarray]  # the (lsn, txId) a c half would pair with (_pending_prior)
    ar: np.ndarray = field(init=False)
    is_del: np.ndarray = field(init=False)
    is_last: np.ndarray = field(init=False)
    grp_start: np.ndarray = field(init=False)  # the first row of the row's segment
    own_image: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        n = len(self.rows)
        self.ar = np.arange(n)
        self.is_last = np.ones(n, bool)
        self.is_last[:-1] = self.new_key[1:]
        self.is_del = self.op == "d"
        seg = np.cumsum(self.is_del) - self.is_del
        new_grp = self.new_key.copy()
        new_grp[1:] |= seg[1:] != seg[:-1]
        self.grp_start = np.maximum.accumulate(np.where(new_grp, self.ar, 0))
        # a tombstone already in the state holds its pre-delete image itself
        self.own_image = self.is_del & (self.kind != 0)

    def last_valid(self, valid: np.ndarray) -> np.ndarray:
        """Per row, the last ``valid`` row at or before it in its segment (-1: none)."""
        lv = np.maximum.accumulate(np.where(valid, self.ar, -1))
        return np.where(lv >= self.grp_start, lv, -1)

    def take(self, col, idx: np.ndarray):
        """``col``'s values at the ordered rows ``idx`` (-1: null), or ``col`` itself when that is
        every row in table order (an all-new batch needs no take at all)."""
        orig = np.where(idx >= 0, self.rows[np.maximum(idx, 0)], -1)
        n_all = self.table.num_rows
        if len(orig) == n_all and (orig == np.arange(n_all)).all():
            return col
        return col.take(pa.array(orig, mask=orig < 0))


def _winners(g: _Groups, keep_images: bool) -> tuple[np.ndarray, np.ndarray]:
    """The output rows (each key's last row; with ``keep_images`` also superseded deletes), in
    table order so that takes read forward, and which of them are such images."""
    winners = np.flatnonzero(g.is_last & (g.kind != 2))
    if keep_images:
        winners = np.concatenate([winners, np.flatnonzero(g.is_del & ~g.is_last & (g.kind != 2))])
    winners = winners[np.argsort(g.rows[winners], kind="stable")]
    is_image = (
        np.isin(winners, np.flatnonzero(g.is_del & ~g.is_last))
        if keep_images
        else np.zeros(len(winners), bool)
    )
    return winners, is_image


def _row_columns(
    g: _Groups,
    row_fields: list[pa.Field],
    key: tuple[str, ...],
    winners: np.ndarray,
    kind_all: np.ndarray,
    pending_in: dict[str, np.ndarray],
    history: np.ndarray | None,
) -> tuple[dict[str, pa.Array], dict[str, pa.Array], dict[int, list[str]], int]:
    """The source columns of the winners and of the ``history`` rows, unchanged-TOAST placeholders
    resolved; the winners' columns still waiting for a key change's d half (by winner); and the
    count of placeholders with no value anywhere."""
    w_del = g.is_del[winners]
    pre_all = np.where(g.own_image, g.ar, g.last_valid(~g.is_del))
    plain_all = np.where(g.is_del, pre_all, g.ar)  # a delete shows the image before it
    linkable = (g.grp_start == g.ar) & (g.coord[0] >= 0)
    columns: dict[str, pa.Array] = {}
    history_columns: dict[str, pa.Array] = {}
    pending_out: dict[int, list[str]] = {}
    unresolved = 0
    for f in row_fields:
        col = g.table.column(f.name)
        if f.name in key:
            columns[f.name] = g.take(col, winners)
            if history is not None:
                history_columns[f.name] = g.take(col, history)
            continue
        ph_all = placeholders(col, kind_all)
        if f.name in pending_in:
            ph_all = pending_in[f.name] if ph_all is None else ph_all | pending_in[f.name]
        if ph_all is None:
            idx, each = plain_all[winners], plain_all
        else:
            ph = ph_all[g.rows]
            idx, each = _toast_sources(g, ph, linkable, winners)
            for i in np.flatnonzero((idx < 0) & ph[winners] & ~w_del):
                if linkable[g.grp_start[winners[i]]]:
                    pending_out.setdefault(int(i), []).append(f.name)  # its d half may still come
                else:
                    unresolved += 1
        columns[f.name] = g.take(col, idx)
        if history is not None:
            history_columns[f.name] = g.take(col, each[history])
    return columns, history_columns, pending_out, unresolved


def _toast_sources(
    g: _Groups, ph: np.ndarray, linkable: np.ndarray, winners: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For a column with placeholders (``ph``): the row each winner takes its value from, and the
    same for every row (-1: none). A placeholder takes the newest real value of its segment, or
    across a key change the old key's."""
    links = _pair_links(g.coord, g.own, g.is_del, linkable & ph)
    src = _through_key_changes(g.last_valid(~g.is_del & ~ph), g.own_image, g.grp_start, links)
    pre = np.where(g.own_image, g.ar, src)
    # upserts keep their own value unless it is a placeholder; deletes keep the previous image
    return np.where(g.is_del[winners], pre[winners], src[winners]), np.where(g.is_del, pre, src)


def _internal_columns(
    g: _Groups,
    winners: np.ndarray,
    is_image: np.ndarray,
    stream_lsn: np.ndarray,
    pending_out: dict[int, list[str]],
) -> dict[str, pa.Array]:
    """The winners' internal columns (:data:`STATE_INTERNAL_FIELDS`)."""
    out = {}
    has_pending = np.zeros(len(winners), bool)
    has_pending[list(pending_out)] = True
    for f in STATE_INTERNAL_FIELDS:
        if f.name == "__deleted":
            out[f.name] = pa.array(g.is_del[winners])
        elif f.name == "__image":
            out[f.name] = pa.array(is_image)
        elif f.name == "__stream_lsn":
            v = stream_lsn[winners]
            out[f.name] = pa.array(v, pa.int64(), mask=v < 0)
        elif f.name == "__toast_pending":
            out[f.name] = (
                pa.array([pending_out.get(i) for i in range(len(winners))], f.type)
                if pending_out
                else pa.nulls(len(winners), f.type)
            )
        elif f.name in ("__pair_lsn", "__pair_tx"):
            c = g.coord[0] if f.name == "__pair_lsn" else g.coord[1]
            out[f.name] = pa.array(c[g.grp_start[winners]], pa.int64(), mask=~has_pending)
        else:
            out[f.name] = g.take(g.table.column(f.name), winners)
    return out


def _group_effects(g: _Groups) -> tuple[int, int, int]:
    """Keys inserted, updated and deleted by the events, from the ordered rows (no truncate
    reached a state row, so a key's prior row, if any, is its first)."""
    key_id = np.cumsum(g.new_key) - 1
    groups = int(key_id[-1]) + 1 if len(key_id) else 0
    had_live = np.zeros(groups, bool)
    had_live[key_id[(g.kind == 1) & ~g.is_del]] = True
    touched = np.zeros(groups, bool)
    touched[key_id[g.kind == 0]] = True
    live_after = np.zeros(groups, bool)
    last = np.flatnonzero(g.is_last & (g.kind != 2))
    live_after[key_id[last]] = ~g.is_del[last]
    inserts = int((touched & ~had_live & live_after).sum())
    updates = int((touched & had_live & live_after).sum())
    deletes = int((touched & had_live & ~live_after).sum())
    return inserts, updates, deletes


def _effects(
    prior: pa.Table | None, rows: pa.Table, events: pa.Table, key: tuple[str, ...]
) -> tuple[int, int, int]:
    """Net effect per key: inserted (absent -> live), updated (live -> live, with events that are
    not copies), deleted."""

    def live(t: pa.Table | None) -> pl.DataFrame:
        if t is None or t.num_rows == 0:
            return pl.DataFrame(schema={c: pl.Null for c in key}).with_columns(pl.lit(True).alias("__live"))
        frame = pl.from_arrow(t.select([*key, "__op"]))
        assert isinstance(frame, pl.DataFrame)
        return (
            frame.filter(pl.col("__op") != "d")
            .select(list(key))
            .unique()
            .with_columns(pl.lit(True).alias("__live"))
        )

    before, after = live(prior), live(rows)
    touched = None
    if events.num_rows:
        frame = pl.from_arrow(events.select(list(key)))
        assert isinstance(frame, pl.DataFrame)
        touched = frame.drop_nulls().unique()
    if before.height == 0 and after.height == 0:
        return 0, 0, 0
    if before.height == 0:
        return after.height, 0, 0
    if after.height == 0:
        return 0, 0, before.height
    after = after.cast(before.schema) if before.schema != after.schema else after
    both = after.join(before, on=list(key), how="inner")
    inserts = after.height - both.height
    deletes = before.height - both.height
    updates = 0
    if touched is not None and both.height:
        updates = both.join(touched.cast({c: both.schema[c] for c in key}), on=list(key), how="semi").height
    return inserts, updates, deletes


def as_state_rows(t: pa.Table, schema: pa.Schema) -> pa.Table:
    n = t.num_rows
    arrays = []
    for f in schema:
        if f.name in t.column_names:
            col = t.column(f.name)
            arrays.append(col if col.type == f.type else col.cast(f.type))
        elif f.name == "__deleted":
            arrays.append(pc.equal(t.column("__op"), "d"))
        elif f.name == "__image":
            arrays.append(pa.array(np.zeros(n, bool)))
        else:
            arrays.append(pa.nulls(n, f.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _ops(col: pa.ChunkedArray) -> np.ndarray:
    """The op column as a numpy ``U1`` array, through a dictionary (no per-row Python objects)."""
    encoded = pc.dictionary_encode(col.combine_chunks().fill_null("?"))
    letters = np.array([v[:1] for v in encoded.dictionary.to_pylist()] or ["?"], dtype="U1")
    return letters[encoded.indices.to_numpy(zero_copy_only=False)]


def _killed_by(table: pa.Table, truncates: list[Truncate]) -> np.ndarray:
    """Rows a truncate removed. TRUNCATE takes an ACCESS EXCLUSIVE lock, so every change of the
    table has an LSN either below the truncate's or above its commit: compare LSNs, in any Kafka
    partition (a replayed pre-truncate event sitting after the truncate is caught too). Rows without
    an LSN (incremental-snapshot reads) compare by position in the truncate's partition, else by
    commit time."""
    part = table.column("__kafka_partition").to_numpy(zero_copy_only=False)
    start = table.column("__file_start_offset").to_numpy(zero_copy_only=False)
    row = table.column("__row_index").to_numpy(zero_copy_only=False)
    lsn_col = table.column("__lsn")
    lsn = lsn_col.fill_null(-1).to_numpy(zero_copy_only=False)
    has_lsn = lsn_col.is_valid().to_numpy(zero_copy_only=False)
    ts_col = pc.cast(table.column("__commit_ts"), pa.int64())
    ts = ts_col.fill_null(-1).to_numpy(zero_copy_only=False)
    has_ts = ts_col.is_valid().to_numpy(zero_copy_only=False)
    killed = np.zeros(table.num_rows, bool)
    for t in truncates:
        same = part == t.kafka_partition
        before_pos = same & (
            (start < t.file_start_offset) | ((start == t.file_start_offset) & (row < t.row_index))
        )
        if t.lsn is not None:
            killed |= has_lsn & (lsn < t.lsn)
            no_lsn = ~has_lsn
        else:
            no_lsn = np.ones_like(same)
        killed |= no_lsn & before_pos
        if t.commit_us is not None:
            killed |= no_lsn & ~same & has_ts & (ts < t.commit_us)
    return killed


def _skeleton(table: pa.Table, key: tuple[str, ...], kind: np.ndarray) -> pl.DataFrame:
    cols = [*key, *POSITION, "__op", "__lsn", "__tx_id", "__snapshot"]
    skel = pl.from_arrow(table.select(cols), rechunk=True)
    assert isinstance(skel, pl.DataFrame)
    # at an equal position (same object applied twice) the prior row sorts first
    return skel.with_columns(
        pl.Series("__kind_rank", np.where(kind == 0, 1, 0).astype(np.int8)), pl.Series("__pairing", kind == 2)
    )


def _duplicates(
    table: pa.Table, row_fields: list[pa.Field], key: tuple[str, ...], kind: np.ndarray, op: np.ndarray
) -> np.ndarray:
    """True for every snapshot read, truncate or lsn-less event that has a copy with a lower
    position (same identity): the first copy is the original, later ones are re-emissions.
    Streamed changes with an LSN are left to :func:`_replayed`, which also catches copies in
    earlier batches."""
    lsn_valid = table.column("__lsn").is_valid().to_numpy(zero_copy_only=False)
    cand = (kind == 0) & (np.isin(op, ("r", "t")) | ~lsn_valid)
    dup = np.zeros(len(op), bool)
    if cand.sum() < 2:
        return dup
    rows = np.flatnonzero(cand)
    ident = [*key, "__op", "__lsn", "__tx_id", "__snapshot"]
    sub = table.select(ident + list(POSITION)).take(pa.array(rows))  # narrow columns only
    frame = pl.from_arrow(sub)
    assert isinstance(frame, pl.DataFrame)
    image = np.zeros(len(rows), np.uint64)
    no_coords = ~lsn_valid[rows] & ~sub.column("__tx_id").is_valid().to_numpy(zero_copy_only=False)
    if no_coords.any():  # incremental-snapshot reads: the row image is part of the identity
        at = np.flatnonzero(no_coords)
        image[at] = _hash_images(table, row_fields, rows[at])
    frame = frame.with_columns(pl.Series("__image", image), pl.int_range(pl.len()).alias("__i"))
    firsts = (
        frame.sort(list(POSITION))
        .unique(subset=[*ident, "__image"], keep="first", maintain_order=True)
        .get_column("__i")
        .to_numpy()
    )
    dup[rows] = True
    dup[rows[firsts]] = False
    return dup


def image_hashes(table: pa.Table, row_fields: list[pa.Field]) -> np.ndarray:
    """Per event, a hash of its row image where it has neither LSN nor txId (incremental-snapshot
    reads, whose identity includes the image), else 0."""
    out = np.zeros(table.num_rows, np.uint64)
    no_coords = ~table.column("__lsn").is_valid().to_numpy(zero_copy_only=False) & ~table.column(
        "__tx_id"
    ).is_valid().to_numpy(zero_copy_only=False)
    if no_coords.any():
        at = np.flatnonzero(no_coords)
        out[at] = _hash_images(table, row_fields, at)
    return out


def _hash_images(table: pa.Table, row_fields: list[pa.Field], rows: np.ndarray) -> list[int]:
    images = table.select([f.name for f in row_fields]).take(pa.array(rows)).to_pylist()
    return [
        int.from_bytes(hashlib.blake2b(repr(sorted(r.items())).encode(), digest_size=8).digest(), "little")
        for r in images
    ]


def _replayed(
    lsn: np.ndarray, carried: np.ndarray, kind: np.ndarray, op: np.ndarray, new_key: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Streaming events Debezium emitted again after a restart (or that overlapping files repeat),
    and each row's running maximum streamed LSN (rows sorted by key, then position).

    PostgreSQL serializes changes of one row (row locks), so one key's streamed change LSNs rise in
    commit order, snapshots or not. An event whose LSN is not above every earlier streamed event of
    its key (``__stream_lsn`` of the state's row included) was applied already. Snapshot reads are
    left out of the comparison: their LSN is the snapshot point, and a transaction straddling it
    streams below it (spec §5.6)."""
    n = len(op)
    streamed = (lsn >= 0) & np.isin(op, ("c", "u", "d")) & (kind == 0)
    v = np.where(streamed, lsn, np.where(kind == 1, carried, -1))
    if n == 0 or (v < 0).all():
        return np.zeros(n, bool), v
    # segmented running maximum in one pass: dense ranks (< n) offset by the key's group number
    values, rank = np.unique(v, return_inverse=True)
    group = np.cumsum(new_key) - 1
    width = len(values) + 1
    running_rank = np.maximum.accumulate(group * width + rank) - group * width
    running = values[running_rank]
    before = np.full(n, -1, np.int64)
    before[1:] = running[:-1]
    before[new_key] = -1
    return streamed & (lsn <= before), running


def _check_late(kind: np.ndarray, new_key: np.ndarray, rows: np.ndarray, table: pa.Table) -> None:
    """A prior row must be the first row of its key: otherwise an event is older than the state."""
    prior_idx = np.flatnonzero(kind == 1)
    late = prior_idx[~new_key[prior_idx]]
    if len(late):
        where = table.column("__source_object")[int(rows[late[0] - 1])].as_py()
        raise LateEventError(
            f"{len(late)} keys have events older than their state (first in {where}: "
            "an object that arrived late)"
        )


def placeholders(col: pa.Array | pa.ChunkedArray, kind: np.ndarray) -> np.ndarray | None:
    """Which rows of an event column hold the unchanged-TOAST placeholder (None: none do).
    Only candidates of the placeholder's size are compared; the column is never copied."""
    t = col.type
    listlike = pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_map(t)
    if not (
        listlike
        or pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
    ):
        return None
    chunks = col.chunks if isinstance(col, pa.ChunkedArray) else [col]
    size = len(TOAST_PLACEHOLDER.encode())
    if listlike:  # typed placeholders are lists of 1 to 28 elements; maps have no length kernel
        lengths = np.concatenate(
            [np.diff(c.offsets.to_numpy(zero_copy_only=False)) for c in chunks] or [np.zeros(0, np.int64)]
        )
        fits = (lengths >= 1) & (lengths <= size)
    else:  # only values exactly as long as the placeholder can be it
        fits = pc.binary_length(col).fill_null(-1).to_numpy(zero_copy_only=False) == size
    valid = col.is_valid().to_numpy(zero_copy_only=False) & (kind == 0)
    cand = np.flatnonzero(fits & valid)
    if len(cand) == 0:
        return None
    values = col.take(pa.array(cand))
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    hit = is_toast_placeholder(values).to_numpy(zero_copy_only=False)
    if not hit.any():
        return None
    mask = np.zeros(len(col), bool)
    mask[cand[hit]] = True
    return mask


def _pending_prior(
    table: pa.Table, kind: np.ndarray, op: np.ndarray, lsn: np.ndarray, tx: np.ndarray
) -> tuple[dict[str, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Columns still waiting for a key change's d half, per prior row; and the (lsn, txId) each
    row would pair with: its own for c events, the recorded one for pending prior rows."""
    n = table.num_rows
    is_c = (kind == 0) & (op == "c")
    c_lsn, c_tx = np.where(is_c, lsn, -1), np.where(is_c, tx, -1)
    pending: dict[str, np.ndarray] = {}
    col = table.column("__toast_pending")
    if col.null_count < n:
        p_lsn = table.column("__pair_lsn").fill_null(-1).to_numpy(zero_copy_only=False)
        p_tx = table.column("__pair_tx").fill_null(-1).to_numpy(zero_copy_only=False)
        for i in np.flatnonzero(col.is_valid().to_numpy(zero_copy_only=False) & (kind == 1)):
            for name in col[int(i)].as_py() or ():
                pending.setdefault(name, np.zeros(n, bool))[i] = True
            c_lsn[i], c_tx[i] = p_lsn[i], p_tx[i]
    return pending, (c_lsn, c_tx)


def _pair_links(
    coord: tuple[np.ndarray, np.ndarray],
    own: tuple[np.ndarray, np.ndarray],
    is_del: np.ndarray,
    linkable: np.ndarray,
) -> np.ndarray:
    """For each row starting a segment that can be the c half of a primary-key change: the d
    with the same ``(lsn, txId)`` (the other half), else -1."""
    links = np.full(len(is_del), -1, np.int64)
    starts = np.flatnonzero(linkable)
    d_rows = np.flatnonzero(is_del)
    if len(starts) == 0 or len(d_rows) == 0:
        return links
    halves = {(int(own[0][d]), int(own[1][d])): int(d) for d in d_rows if own[0][d] >= 0}
    for s in starts:  # starts with a placeholder only: few
        links[s] = halves.get((int(coord[0][s]), int(coord[1][s])), -1)
    return links


def _through_key_changes(
    src: np.ndarray, own_image: np.ndarray, grp_start: np.ndarray, links: np.ndarray
) -> np.ndarray:
    """Rows with no earlier value in their segment take, when the segment starts with the ``c``
    half of a key change, the old key's value before its ``d`` — following chains of key changes."""
    if not (links >= 0).any():
        return src
    ar = np.arange(len(src))
    resolved = src.copy()
    for _ in range(64):  # chains of key changes within one batch are short; bounded anyway
        start_link = links[grp_start]
        need = (resolved < 0) & (start_link >= 0)
        if not need.any():
            break
        d = start_link[need]
        cand = np.where(own_image[d], d, resolved[d])
        new = resolved.copy()
        new[ar[need]] = cand
        if np.array_equal(new, resolved):
            break
        resolved = new
    return resolved
