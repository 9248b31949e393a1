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
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from lakehouse.lake.semantic import is_toast_placeholder

POSITION = ("__kafka_partition", "__file_start_offset", "__row_index")

# internal columns a state row keeps beside the source columns
STATE_INTERNAL_FIELDS: tuple[pa.Field, ...] = (
    pa.field("__op", pa.string()),
    pa.field("__deleted", pa.bool_()),
    pa.field("__kafka_partition", pa.int32()),
    pa.field("__file_start_offset", pa.int64()),
    pa.field("__row_index", pa.int32()),
    pa.field("__lsn", pa.int64()),
    pa.field("__tx_id", pa.int64()),
    pa.field("__snapshot", pa.string()),
    pa.field("__commit_ts", pa.timestamp("us", tz="UTC")),
    pa.field("__source_object", pa.string()),
)
STATE_INTERNAL_NAMES = tuple(f.name for f in STATE_INTERNAL_FIELDS)
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
    events: int = 0  # change events considered (duplicates excluded)
    duplicates: int = 0
    inserts: int = 0
    updates: int = 0
    deletes: int = 0
    unresolved_toast: int = 0  # placeholder cells with no earlier value anywhere (written as null)


def state_schema(row_fields: list[pa.Field]) -> pa.Schema:
    return pa.schema(list(STATE_INTERNAL_FIELDS) + list(row_fields))


def row_fields_of(schema: pa.Schema) -> list[pa.Field]:
    internal = set(STATE_INTERNAL_NAMES) | set(_EVENT_ONLY) | {"__cluster"}
    return [f for f in schema if f.name not in internal]


def fold(events: pa.Table, prior: pa.Table | None, key: tuple[str, ...], row_fields: list[pa.Field],
         truncates: list[Truncate] = (), pairing: pa.Table | None = None) -> FoldResult:
    """Apply ``events`` on top of ``prior`` (state rows of the keys the events touch).

    ``row_fields``: the merged source columns (logical types). ``pairing``: state tombstones of
    other keys that may be the ``d`` half of a primary-key change in ``events``.
    Raises :class:`LateEventError` when an event is older than its key's prior row.
    """
    schema = state_schema(row_fields)
    parts = []
    n_events = events.num_rows
    if n_events:
        parts.append(_as_state_rows(events, schema))
    n_prior = prior.num_rows if prior is not None else 0
    if n_prior:
        parts.append(_as_state_rows(prior, schema))
    n_pair = pairing.num_rows if pairing is not None else 0
    if n_pair:
        parts.append(_as_state_rows(pairing, schema))
    if not parts:
        return FoldResult(schema.empty_table(), sorted(set(truncates)))
    table = pa.concat_tables(parts).combine_chunks()
    kind = np.concatenate([np.zeros(n_events, np.int8), np.ones(n_prior, np.int8), np.full(n_pair, 2, np.int8)])

    op = table.column("__op").to_numpy(zero_copy_only=False).astype("U1")
    # -- truncates -------------------------------------------------------------------------
    is_t = (op == "t") & (kind == 0)
    known = set(truncates)
    if is_t.any():
        t_idx = np.flatnonzero(is_t)
        sub = table.select(list(POSITION) + ["__lsn", "__commit_ts"]).take(pa.array(t_idx))
        for r in sub.to_pylist():
            ts = r["__commit_ts"]
            known.add(Truncate(r["__kafka_partition"], r["__file_start_offset"], r["__row_index"], r["__lsn"],
                               None if ts is None else int(ts.timestamp() * 1_000_000)))
    keep = ~is_t
    if known:
        keep &= ~_killed_by(table, sorted(known))
    table, kind, op = table.filter(pa.array(keep)), kind[keep], op[keep]

    # -- duplicates ------------------------------------------------------------------------
    skel = _skeleton(table, key, kind)
    dup = _duplicates(skel, table, row_fields, key, kind)
    duplicates = int(dup.sum())
    if duplicates:
        keep = ~dup
        table, kind, op, skel = table.filter(pa.array(keep)), kind[keep], op[keep], skel.filter(pl.Series(keep))

    # -- order per key ---------------------------------------------------------------------
    order = skel.with_row_index("__rid").sort([*key, *POSITION, "__kind_rank"]).get_column("__rid").to_numpy()
    table, kind, op = table.take(pa.array(order)), kind[order], op[order]
    skel = skel[order]
    n = table.num_rows
    new_key = skel.select(pl.any_horizontal([pl.col(c).ne_missing(pl.col(c).shift(1)) for c in key])
                          .fill_null(True)).to_series().to_numpy().copy()
    if n:
        new_key[0] = True
    is_last = np.ones(n, bool)
    is_last[:-1] = new_key[1:]
    _check_late(kind, new_key)

    is_del = op == "d"
    ar = np.arange(n)
    # segment: a delete closes the segment it belongs to; the next event starts a new one
    seg = np.cumsum(is_del) - is_del
    new_grp = new_key.copy()
    new_grp[1:] |= seg[1:] != seg[:-1]
    grp_start = np.maximum.accumulate(np.where(new_grp, ar, 0))

    def last_valid(valid: np.ndarray) -> np.ndarray:
        lv = np.maximum.accumulate(np.where(valid, ar, -1))
        return np.where(lv >= grp_start, lv, -1)

    valid_all = ~is_del
    # a tombstone already in the state holds its pre-delete image itself
    own_image = is_del & (kind != 0)
    src_all = last_valid(valid_all)
    pre_all = np.where(own_image, ar, src_all)
    winners = np.flatnonzero(is_last & (kind != 2))
    w_del = is_del[winners]
    key_set = set(key)
    columns: dict[str, pa.Array] = {}
    unresolved = 0
    winners_arr = pa.array(winners)
    plain_idx = np.where(w_del, pre_all[winners], winners)
    for f in row_fields:
        col = table.column(f.name)
        if f.name in key_set:
            columns[f.name] = col.take(winners_arr)
            continue
        ph = _placeholders(col.combine_chunks(), kind)
        if ph is None:
            idx = plain_idx
        else:
            src = last_valid(valid_all & ~ph)
            pre = np.where(own_image, ar, src)
            # upserts keep their own value unless it is a placeholder; deletes keep the previous image
            idx = np.where(w_del, pre[winners], src[winners])
            idx = _pair_key_changes(table, op, is_del, winners, idx, ph, pre)
            unresolved += int(((idx < 0) & ph[winners] & ~w_del).sum())
        columns[f.name] = col.take(pa.array(idx, mask=idx < 0))

    out = {}
    for f in STATE_INTERNAL_FIELDS:
        out[f.name] = pa.array(w_del) if f.name == "__deleted" else table.column(f.name).take(winners_arr)
    out.update(columns)
    rows = pa.Table.from_pydict(out, schema=schema)
    inserts, updates, deletes = _effects(prior, rows, events, key)
    return FoldResult(rows=rows, truncates=sorted(known), events=int((kind == 0).sum()) + int(is_t.sum()),
                      duplicates=duplicates, inserts=inserts, updates=updates, deletes=deletes,
                      unresolved_toast=unresolved)


def _effects(prior: pa.Table | None, rows: pa.Table, events: pa.Table, key: tuple[str, ...]) -> tuple[int, int, int]:
    """Net effect per key: inserted (absent -> live), updated (live -> live, with events), deleted."""
    def live(t: pa.Table | None) -> pl.DataFrame:
        if t is None or t.num_rows == 0:
            return pl.DataFrame(schema={c: pl.Null for c in key}).with_columns(pl.lit(True).alias("__live"))
        frame = pl.from_arrow(t.select([*key, "__op"]))
        return frame.filter(pl.col("__op") != "d").select(list(key)).unique().with_columns(pl.lit(True).alias("__live"))

    before, after = live(prior), live(rows)
    touched = pl.from_arrow(events.select(list(key))).drop_nulls().unique() if events.num_rows else None
    if before.height == 0 and after.height == 0:
        return 0, 0, 0
    if before.height == 0:
        return after.height, 0, 0
    if after.height == 0:
        return 0, 0, before.height
    after = after.cast(dict(before.schema)) if before.schema != after.schema else after
    both = after.join(before, on=list(key), how="inner")
    inserts = after.height - both.height
    deletes = before.height - both.height
    updates = 0
    if touched is not None and both.height:
        updates = both.join(touched.cast({c: both.schema[c] for c in key}), on=list(key), how="semi").height
    return inserts, updates, deletes


def _as_state_rows(t: pa.Table, schema: pa.Schema) -> pa.Table:
    n = t.num_rows
    arrays = []
    for f in schema:
        if f.name in t.column_names:
            col = t.column(f.name)
            arrays.append(col if col.type == f.type else col.cast(f.type))
        elif f.name == "__deleted":
            arrays.append(pc.equal(t.column("__op"), "d"))
        else:
            arrays.append(pa.nulls(n, f.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _killed_by(table: pa.Table, truncates: list[Truncate]) -> np.ndarray:
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
        before_same = same & ((start < t.file_start_offset)
                              | ((start == t.file_start_offset) & (row < t.row_index)))
        other = ~same & has_lsn & (lsn < t.lsn) if t.lsn is not None else np.zeros_like(same)
        if t.commit_us is not None:
            other |= ~same & ~has_lsn & has_ts & (ts < t.commit_us)
        killed |= before_same | other
    return killed


def _skeleton(table: pa.Table, key: tuple[str, ...], kind: np.ndarray) -> pl.DataFrame:
    cols = [*key, *POSITION, "__op", "__lsn", "__tx_id", "__snapshot"]
    skel = pl.from_arrow(table.select(cols), rechunk=True)
    assert isinstance(skel, pl.DataFrame)
    # at an equal position (same object applied twice) the prior row sorts first
    return skel.with_columns(pl.Series("__kind_rank", np.where(kind == 0, 1, 0).astype(np.int8)))


def _duplicates(skel: pl.DataFrame, table: pa.Table, row_fields: list[pa.Field], key: tuple[str, ...],
                kind: np.ndarray) -> np.ndarray:
    """True for every event that has a copy with a higher position (same identity)."""
    ident = [*key, "__op", "__lsn", "__tx_id", "__snapshot"]
    no_coords = skel.get_column("__lsn").is_null() & skel.get_column("__tx_id").is_null()
    image = np.zeros(len(skel), np.uint64)
    if no_coords.any():
        rows = np.flatnonzero(no_coords.to_numpy())
        sub = table.select([f.name for f in row_fields]).take(pa.array(rows)).to_pylist()
        image[rows] = [int.from_bytes(hashlib.blake2b(repr(sorted(r.items())).encode(), digest_size=8).digest(),
                                      "little") for r in sub]
    frame = skel.select(ident + list(POSITION)).with_columns(
        pl.Series("__image", image), pl.Series("__event", kind == 0), pl.int_range(pl.len()).alias("__i"))
    events = frame.filter(pl.col("__event"))
    if events.height == 0:
        return np.zeros(len(skel), bool)
    ranked = events.sort(list(POSITION), descending=True)
    firsts = ranked.unique(subset=[*ident, "__image"], keep="first", maintain_order=True).get_column("__i")
    dup = np.zeros(len(skel), bool)
    dup[events.get_column("__i").to_numpy()] = True
    dup[firsts.to_numpy()] = False
    return dup


def _check_late(kind: np.ndarray, new_key: np.ndarray) -> None:
    """A prior row must be the first row of its key: otherwise an event is older than the state."""
    prior_idx = np.flatnonzero(kind == 1)
    if len(prior_idx) and not new_key[prior_idx].all():
        raise LateEventError(f"{int((~new_key[prior_idx]).sum())} keys have events older than their state")


def _placeholders(col: pa.Array, kind: np.ndarray) -> np.ndarray | None:
    t = col.type
    if not (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t)
            or pa.types.is_large_binary(t) or pa.types.is_list(t) or pa.types.is_large_list(t)
            or pa.types.is_map(t)):
        return None
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_map(t):
        # typed placeholders are short lists: only test the candidates (cheap pre-filter)
        lengths = pc.list_value_length(col).fill_null(0).to_numpy(zero_copy_only=False)
        cand = np.flatnonzero((lengths >= 1) & (lengths <= len(b"__debezium_unavailable_value")) & (kind == 0))
        if len(cand) == 0:
            return None
        hit = is_toast_placeholder(col.take(pa.array(cand))).to_numpy(zero_copy_only=False)
        if not hit.any():
            return None
        mask = np.zeros(len(col), bool)
        mask[cand[hit]] = True
        return mask
    mask = is_toast_placeholder(col).to_numpy(zero_copy_only=False) & (kind == 0)
    return mask if mask.any() else None


def _pair_key_changes(table: pa.Table, op: np.ndarray, is_del: np.ndarray, winners: np.ndarray,
                      idx: np.ndarray, ph: np.ndarray, pre: np.ndarray) -> np.ndarray:
    """For ``c`` winners whose placeholder found no earlier value: the value the old key held
    before the ``d`` with the same ``(lsn, txId)`` (the other half of the key change)."""
    need = (idx < 0) & ph[winners] & (op[winners] == "c")
    if not need.any():
        return idx
    lsn = table.column("__lsn").fill_null(-1).to_numpy(zero_copy_only=False)
    tx = table.column("__tx_id").fill_null(-1).to_numpy(zero_copy_only=False)
    d_rows = np.flatnonzero(is_del)
    halves = {(int(lsn[d]), int(tx[d])): int(pre[d]) for d in d_rows if pre[d] >= 0}
    idx = idx.copy()
    for i in np.flatnonzero(need):
        w = winners[i]
        idx[i] = halves.get((int(lsn[w]), int(tx[w])), -1)
    return idx
