"""Re-snapshots (issue 13 item 3): rows deleted while Debezium was not streaming produce no
delete; a later complete snapshot proves them gone. The real end-to-end case (slot and offsets
dropped, PostgreSQL changed meanwhile, capture again) is in tests/test_truth.py; here the rule
itself on state rows: which rows a snapshot retires, and that partial and incremental snapshots,
or one already applied, retire nothing."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa

from lakehouse.state.fold import STATE_INTERNAL_FIELDS, state_schema
from lakehouse.state.snapshots import completed_snapshot, retire_unread
from lakehouse.state.table import StateMeta

ROW_FIELDS = [pa.field("id", pa.int64()), pa.field("v", pa.string())]
T0 = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


def rows(*specs) -> pa.Table:
    """(id, op, tx, lsn, start offset, row index, seconds after T0[, partition])"""
    out = {f.name: [] for f in state_schema(ROW_FIELDS)}
    for spec in specs:
        i, op, tx, lsn, start, row, sec, *part = spec
        values = {
            "id": i,
            "v": f"v{i}",
            "__op": op,
            "__deleted": op == "d",
            "__image": False,
            "__kafka_partition": part[0] if part else 0,
            "__file_start_offset": start,
            "__row_index": row,
            "__lsn": lsn,
            "__tx_id": tx,
            "__snapshot": "true" if op == "r" else "false",
            "__commit_ts": T0 + dt.timedelta(seconds=sec),
        }
        for name in out:
            out[name].append(values.get(name))
    return pa.Table.from_pydict(out, schema=state_schema(ROW_FIELDS))


def events(snapshot_values: list[str], tx: int = 900) -> pa.Table:
    t = rows(*[(100 + k, "r", tx, 5_000, 50, k, 60) for k in range(len(snapshot_values))])
    return t.set_column(t.schema.get_field_index("__snapshot"), "__snapshot", pa.array(snapshot_values))


def meta() -> StateMeta:
    return StateMeta("p.s.t", "s.t", ("id",), pa.schema(ROW_FIELDS))


def test_complete_snapshot_retires_rows_it_did_not_read():
    snap = completed_snapshot(events(["first", "true", "last_in_data_collection"]), m := meta())
    assert snap is not None and snap.tx == 900 and (snap.start, snap.row) == (50, 2)
    assert m.snapshots == [900]
    state = rows(
        (1, "c", 10, 1_000, 0, 0, 1),  # streamed before the snapshot, not read by it: deleted meanwhile
        (2, "r", 900, 5_000, 50, 0, 60),  # read by the snapshot
        (3, "u", 11, 6_000, 60, 0, 70),  # changed after the snapshot began
        (4, "d", 12, 2_000, 10, 0, 2),  # a tombstone stays a tombstone
        (5, "r", 1, 500, 0, 1, 0),  # read by an earlier snapshot only
        (6, "c", 13, 4_000, 0, 0, 3, 1),  # another Kafka partition, before the snapshot (LSN and time)
        (7, "c", 14, 4_900, 0, 0, 90, 1),  # another partition, committed after it began (straddling)
    )
    out, n = retire_unread(state, snap)
    gone = {r["id"] for r in out.to_pylist() if r["__deleted"]}
    assert gone == {1, 4, 5, 6} and n == 3
    assert {r["id"]: r["__op"] for r in out.to_pylist()}[1] == "d"
    assert [r["v"] for r in out.to_pylist() if r["id"] == 1] == ["v1"]  # the tombstone keeps the image
    assert len(STATE_INTERNAL_FIELDS) + len(ROW_FIELDS) == out.num_columns


def test_partial_incremental_and_applied_snapshots_retire_nothing():
    assert completed_snapshot(events(["first", "true", "true"]), meta()) is None  # interrupted: no last read
    assert completed_snapshot(events(["incremental", "incremental"]), meta()) is None
    m = meta()
    m.snapshots = [900]  # the same snapshot again (a replay or a re-delivered object)
    assert completed_snapshot(events(["first", "last"]), m) is None
