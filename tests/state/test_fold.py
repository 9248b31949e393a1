"""The fold (lakehouse.state.fold): every semantic of issue 4 on hand-made events, then a
property test: any split of the events into batches, folded one after the other on top of the
previous result, equals one fold of everything, which equals a plain reference model."""

from __future__ import annotations

import datetime as dt
import os
import random

import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lakehouse.lake.reader import INTERNAL_FIELDS
from lakehouse.lake.semantic import TOAST_PLACEHOLDER, TOAST_PLACEHOLDER_UUID
from lakehouse.state.fold import LateEventError, Truncate, fold

PH = TOAST_PLACEHOLDER
ROW_FIELDS = [
    pa.field("id", pa.int64()),
    pa.field("name", pa.string()),
    pa.field("blob", pa.binary()),
    pa.field("tags", pa.list_(pa.string())),
    pa.field("nums", pa.list_(pa.int32())),
    pa.field("ids", pa.list_(pa.string())),
    pa.field("attrs", pa.map_(pa.string(), pa.string())),
    pa.field("n", pa.int32()),
]
SCHEMA = pa.schema(list(INTERNAL_FIELDS) + ROW_FIELDS)
KEY = ("id",)
T0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


def ev(
    op: str,
    id_: int | None,
    pos: tuple[int, int, int],
    lsn: int | None = None,
    tx: int | None = None,
    snapshot: str = "false",
    no_tx: bool = False,
    **cols,
) -> dict:
    p, o, r = pos
    row = {
        "__table": "s.t",
        "__topic": "x.s.t",
        "__op": op,
        "__kafka_partition": p,
        "__file_start_offset": o,
        "__row_index": r,
        "__source_object": f"o{p}-{o}",
        "__lsn": lsn if lsn is not None else o * 1000 + r,
        "__tx_id": None if no_tx else tx if tx is not None else o * 1000 + r,
        "__snapshot": snapshot,
        "__commit_ts": T0 + dt.timedelta(microseconds=o * 1000 + r),
        "id": id_,
    }
    row.update(cols)
    return row


def table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=SCHEMA)  # keys outside the schema ("replay") are dropped


def visible(result) -> dict[int, dict]:
    return {
        r["id"]: {k: r[k] for k in ("name", "blob", "tags", "nums", "ids", "attrs", "n")}
        for r in result.rows.to_pylist()
        if not r["__deleted"]
    }


def run(rows: list[dict], prior=None, truncates=()):
    return fold(table(rows), prior, KEY, ROW_FIELDS, list(truncates))


def test_order_is_kafka_position_not_lsn():
    # a transaction straddling the snapshot point streams with an LSN below the snapshot's: it wins
    r = run(
        [
            ev("r", 1, (0, 0, 0), lsn=500, tx=1, snapshot="last", name="snapshot"),
            ev("u", 1, (0, 0, 1), lsn=100, name="straddling"),
        ]
    )
    assert visible(r)[1]["name"] == "straddling"
    # rows given out of order are ordered by position, and snapshot rows sharing one LSN too
    r = run(
        [
            ev("r", 2, (0, 10, 1), lsn=7, tx=1, snapshot="true", name="b"),
            ev("u", 2, (0, 20, 0), lsn=3, name="c"),
            ev("r", 2, (0, 10, 0), lsn=7, tx=1, snapshot="first", name="a"),
        ]
    )
    assert visible(r)[2]["name"] == "c"


def test_duplicates_dropped_by_identity_keeping_the_first_copy():
    a = ev("c", 1, (0, 0, 0), lsn=10, tx=5, name="a")
    b = ev("u", 1, (0, 0, 1), lsn=11, tx=6, name="b")
    replay_a = {**a, "__file_start_offset": 2, "__row_index": 0}
    replay_b = {**b, "__file_start_offset": 2, "__row_index": 1}
    r = run([a, b, replay_a, replay_b])
    assert r.duplicates == 2 and r.events == 4
    assert visible(r)[1]["name"] == "b"
    assert r.rows.column("__file_start_offset").to_pylist() == [0]  # the original is kept
    # incremental-snapshot reads (no lsn, no txId) are duplicates only with an equal row image
    s1 = ev("r", 3, (0, 5, 0), snapshot="incremental", name="x")
    s1["__lsn"] = s1["__tx_id"] = None
    s2 = {**s1, "__file_start_offset": 6}
    s3 = {**s1, "__file_start_offset": 7, "name": "y"}
    r = run([s1, s2, s3])
    assert r.duplicates == 1 and visible(r)[3]["name"] == "y"


def test_delete_leaves_a_tombstone_that_blocks_older_events():
    r = run([ev("c", 1, (0, 0, 0), name="a", n=1), ev("d", 1, (0, 1, 0), name="", n=0)])
    assert visible(r) == {}
    tomb = r.rows.to_pylist()[0]
    assert tomb["__deleted"] and tomb["__op"] == "d"
    # the tombstone keeps the row as it was before the delete, not the fallback values of `before`
    assert (tomb["name"], tomb["n"]) == ("a", 1)
    with pytest.raises(LateEventError):  # an older event must not revive it
        run([ev("u", 1, (0, 0, 5), name="late")], prior=r.rows)
    # a newer event re-creates the key
    r2 = run([ev("c", 1, (0, 2, 0), name="again")], prior=r.rows)
    assert visible(r2)[1]["name"] == "again" and r2.inserts == 1


@pytest.mark.parametrize(
    "column, value, placeholder",
    [
        ("name", "big text", PH),
        ("blob", b"\x00big", PH.encode()),
        ("tags", ["a", "b"], [PH]),
        ("ids", ["0b6f7ba6-63f5-4d3a-9a46-2ae7b8e7e6a1"], [TOAST_PLACEHOLDER_UUID]),
        ("nums", [1, 2, 3], list(PH.encode())),
        ("attrs", [("k", "v")], [(PH, PH)]),
    ],
)
def test_toast_placeholder_keeps_the_previous_value(column, value, placeholder):
    events = [
        ev("c", 1, (0, 0, 0), n=1, **{column: value}),
        ev("u", 1, (0, 0, 1), n=2, **{column: placeholder}),
        ev("u", 1, (0, 0, 2), n=3, **{column: placeholder}),
    ]
    r = run(events)
    got = visible(r)[1]
    assert got["n"] == 3
    expect = value if column != "attrs" else [tuple(kv) for kv in value]
    assert got[column] == expect
    # also across batches: the state row carries the resolved value
    first = run(events[:1])
    second = run(events[1:], prior=first.rows)
    assert visible(second)[1][column] == expect
    # a real NULL set by an update is data, not "unchanged"
    r = run([*events, ev("u", 1, (0, 0, 3), n=4, **{column: None})])
    assert visible(r)[1][column] is None


def test_toast_placeholder_after_delete_does_not_reach_back():
    r = run([ev("c", 1, (0, 0, 0), name="old"), ev("d", 1, (0, 0, 1)), ev("c", 1, (0, 0, 2), name=PH)])
    assert visible(r)[1]["name"] is None
    # a c with a placeholder can only be the c half of a key change whose d has not arrived yet
    row = r.rows.to_pylist()[0]
    assert row["__toast_pending"] == ["name"] and r.unresolved_toast == 0
    # an update with a placeholder and nothing before it (the lake starts mid-stream) stays null
    r = run([ev("u", 2, (0, 0, 0), name=PH, n=1)])
    assert visible(r)[2]["name"] is None and r.unresolved_toast == 1


def test_key_change_whose_d_half_arrives_later():
    # the c half sits in a partition that was compacted before the d half's partition
    c2 = ev("c", 2, (1, 0, 0), lsn=900, tx=77, name=PH, n=1)
    u2 = ev("u", 2, (1, 0, 1), lsn=950, tx=78, name=PH, n=2)
    first = run([c2, u2])
    assert visible(first)[2] == {
        "name": None,
        "blob": None,
        "tags": None,
        "nums": None,
        "ids": None,
        "attrs": None,
        "n": 2,
    }
    pending = first.rows
    assert pending.column("__toast_pending").to_pylist() == [["name"]]
    later = run([ev("c", 1, (0, 0, 0), name="toasted"), ev("d", 1, (0, 1, 0), lsn=900, tx=77)], prior=pending)
    assert visible(later)[2]["name"] == "toasted"
    assert later.rows.column("__toast_pending").to_pylist() == [None, None]


def test_primary_key_change_takes_toast_values_of_the_old_key():
    # UPDATE t SET id = 2 WHERE id = 1: d(1) + c(2) with one lsn/txId, possibly other partitions
    c1 = ev("c", 1, (0, 0, 0), name="toasted", blob=b"big", n=1)
    d1 = ev("d", 1, (0, 1, 0), lsn=900, tx=77)
    c2 = ev("c", 2, (1, 0, 0), lsn=900, tx=77, name=PH, blob=PH.encode(), n=1)
    r = run([c1, d1, c2])
    assert visible(r) == {
        2: {"name": "toasted", "blob": b"big", "tags": None, "nums": None, "ids": None, "attrs": None, "n": 1}
    }
    # the d half already in the state (an earlier batch): found among the pairing candidates
    first = run([c1, d1])
    tombstones = first.rows
    r = fold(table([c2]), None, KEY, ROW_FIELDS, [], tombstones)
    assert visible(r)[2]["name"] == "toasted"
    assert r.rows.num_rows == 1  # candidates are not rewritten


def test_resnapshot_does_not_beat_later_changes():
    # snapshot, change, then the snapshot is re-emitted (connector restart) and streaming again
    events = [
        ev("r", 1, (0, 0, 0), lsn=50, tx=9, snapshot="first", name="s"),
        ev("u", 1, (0, 1, 0), lsn=60, name="changed"),
        ev("r", 1, (0, 2, 0), lsn=70, tx=10, snapshot="first", name="changed"),  # re-snapshot: current value
        ev("u", 1, (0, 3, 0), lsn=65, name="latest"),
    ]  # committed after the re-snapshot, lower LSN
    assert visible(run(events))[1]["name"] == "latest"
    # a late file holding an old snapshot read must not beat the state either
    state = run(events).rows
    with pytest.raises(LateEventError):
        run([ev("r", 1, (0, 0, 1), lsn=50, tx=9, snapshot="true", name="s")], prior=state)


def test_truncate_removes_every_change_below_its_lsn_in_any_partition():
    rows = [
        ev("c", 1, (0, 0, 0), lsn=10, name="before"),
        ev("c", 2, (1, 0, 0), lsn=20, name="before, other partition"),
        ev("t", None, (0, 0, 1), lsn=30),
        ev("c", 3, (0, 0, 2), lsn=40, name="after"),
        ev("c", 4, (1, 0, 1), lsn=35, name="after, other partition"),
    ]
    r = run(rows)
    assert set(visible(r)) == {3, 4}
    assert r.truncates == [Truncate(0, 0, 1, 30, r.truncates[0].commit_us)]
    # truncates are remembered: a lagging partition's older events die on arrival
    r2 = run([ev("c", 5, (1, 0, 2), lsn=25, name="lagging, before the truncate")], truncates=r.truncates)
    assert visible(r2) == {}
    # and the truncate kills prior state rows it has not seen yet
    state = run(rows[:2]).rows
    r3 = run(rows[2:], prior=state)
    assert set(visible(r3)) == {3, 4} and r3.deletes == 2


def test_effect_counts():
    state = run([ev("c", 1, (0, 0, 0), name="a"), ev("c", 2, (0, 0, 1), name="b")]).rows
    r = run(
        [
            ev("u", 1, (0, 1, 0), name="a2"),
            ev("d", 2, (0, 1, 1)),
            ev("c", 3, (0, 1, 2), name="c"),
            ev("c", 4, (0, 1, 3)),
            ev("d", 4, (0, 1, 4)),
        ],
        prior=state,
    )
    assert (r.inserts, r.updates, r.deletes) == (1, 1, 1)
    assert set(visible(r)) == {1, 3}


# -- property: batches and order do not matter --------------------------------------------------


def reference(rows: list[dict]) -> dict[int, dict]:
    """The obvious model: the original stream (replays left out), by position, one event at a time
    (tests/oracle.py's rules). The c
    half of a key change takes the old key's values before its d, wherever that d sits: passes are
    repeated until nothing changes, so a d in a later-sorted partition is found too."""
    rows = sorted(rows, key=lambda e: (e["__kafka_partition"], e["__file_start_offset"], e["__row_index"]))
    rows = [e for e in rows if not e.get("replay")]  # the stream as PostgreSQL committed it
    truncs = [e for e in rows if e["__op"] == "t"]
    cols = ("name", "blob", "tags", "nums", "ids", "attrs", "n")
    removed: dict[tuple, dict] = {}
    previous = None
    for _ in range(20):
        state: dict[int, dict] = {}
        seen: dict[tuple, dict] = {}
        for e in rows:
            if e["__op"] == "t" or any(_killed(e, t) for t in truncs):
                continue
            k = e["id"]
            if e["__op"] == "d":
                old = state.pop(k, None)
                if old is not None:
                    seen[(e["__lsn"], e["__tx_id"])] = old
                continue
            prev = (
                state.get(k) or (removed.get((e["__lsn"], e["__tx_id"])) if e["__op"] == "c" else None) or {}
            )
            state[k] = {c: prev.get(c) if e.get(c) in (PH, PH.encode(), [PH]) else e.get(c) for c in cols}
        removed = seen
        if state == previous:
            break
        previous = state
    return state


def _killed(e, t) -> bool:
    return e["__lsn"] < t["__lsn"]  # TRUNCATE's lock: every change is before its LSN or after its commit


def loaded_for(state: pa.Table | None, batch: list[dict]) -> tuple[pa.Table | None, ...]:
    """What compaction loads for a batch: (prior, the rest, pairing). Prior: the state rows of the
    batch's keys (every row for a truncate) and rows waiting for one of its d halves (a missing
    txId waits as -1); pairing: tombstones and images among the rest."""
    if state is None:
        return None, None, None
    keys = {e["id"] for e in batch if e["id"] is not None}
    everything = any(e["__op"] == "t" for e in batch)
    halves = {
        (e["__lsn"], e["__tx_id"] if e["__tx_id"] is not None else -1) for e in batch if e["__op"] == "d"
    }
    waiting = zip(state.column("__pair_lsn").to_pylist(), state.column("__pair_tx").to_pylist())
    ids, images = state.column("id").to_pylist(), state.column("__image").to_pylist()
    mask = pa.array(
        [not im and (everything or i in keys or w in halves) for i, w, im in zip(ids, waiting, images)],
        pa.bool_(),
    )
    prior, rest = state.filter(mask), state.filter(pa.compute.invert(mask))
    return prior, rest, rest.filter(rest.column("__deleted"))


@st.composite
def histories(draw):
    """Events of a few keys over 2 partitions with replays, TOAST, deletes, key changes, truncates."""
    rng = random.Random(draw(st.integers(0, 2**32)))
    n_keys = draw(st.integers(1, 6))
    partitions = draw(st.integers(1, 2))
    lsn = 100
    emitted: list[list[dict]] = [[] for _ in range(partitions)]
    live: dict[int, bool] = {}
    next_id = n_keys + 1
    for _ in range(draw(st.integers(1, 40))):
        lsn += rng.randint(1, 5)
        choice = rng.random()
        k = rng.randint(1, n_keys)
        part = k % partitions
        if choice < 0.05:  # key-less, in any partition
            emitted[rng.randrange(partitions)].append({"op": "t", "id": None, "lsn": lsn, "tx": lsn})
            live.clear()
            continue
        if choice < 0.15 and live.get(k):
            # primary-key change: d(k) + c(new) with one lsn/txId, in the new key's partition
            new = next_id
            next_id += 1
            tx = None if rng.random() < 0.25 else lsn  # a change without txId pairs by LSN alone
            emitted[part].append({"op": "d", "id": k, "lsn": lsn, "tx": tx})
            emitted[new % partitions].append({"op": "c", "id": new, "lsn": lsn, "tx": tx, "name": PH, "n": 0})
            live[k], live[new] = False, True
            continue
        if live.get(k):
            if rng.random() < 0.25:
                emitted[part].append({"op": "d", "id": k, "lsn": lsn, "tx": lsn})
                live[k] = False
            else:
                name = PH if rng.random() < 0.5 else f"v{lsn}"
                emitted[part].append(
                    {"op": "u", "id": k, "lsn": lsn, "tx": lsn, "name": name, "n": rng.randint(0, 9)}
                )
        else:
            emitted[part].append(
                {
                    "op": rng.choice("cr"),
                    "id": k,
                    "lsn": lsn,
                    "tx": lsn,
                    "name": f"v{lsn}",
                    "n": rng.randint(0, 9),
                }
            )
            live[k] = True
        if rng.random() < 0.08:
            # Debezium replay after a restart: the streamed suffix emitted again. Snapshot reads are
            # never re-emitted identically after streaming began: a new snapshot reads current rows.
            p = rng.randrange(partitions)
            cut = rng.randint(0, len(emitted[p]))
            emitted[p].extend({**e, "replay": True} for e in emitted[p][cut:] if e["op"] != "r")
    rows = []
    for p, evs in enumerate(emitted):
        offset = 0
        while offset < len(evs):  # files of 1-4 events
            size = rng.randint(1, 4)
            for i, e in enumerate(evs[offset : offset + size]):
                rows.append(
                    ev(
                        e["op"],
                        e["id"],
                        (p, offset, i),
                        lsn=e["lsn"],
                        tx=e["tx"],
                        no_tx=e["tx"] is None,
                        name=e.get("name"),
                        n=e.get("n"),
                        replay=e.get("replay", False),
                    )
                )
            offset += size
    return rows


@settings(
    max_examples=int(os.environ.get("FOLD_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(rows=histories(), cuts=st.lists(st.integers(0, 200), max_size=4))
def test_property_batches_equal_one_fold_equal_reference(rows, cuts):
    whole = run(rows)
    assert visible(whole) == {
        k: {**v, **{c: None for c in ("blob", "tags", "nums", "ids", "attrs")}}
        for k, v in reference(rows).items()
    }
    # in Kafka order per partition, split anywhere into batches: state carried between folds
    ordered = sorted(rows, key=lambda e: (e["__kafka_partition"], e["__file_start_offset"], e["__row_index"]))
    bounds = sorted({min(c, len(ordered)) for c in cuts} | {0, len(ordered)})
    state, truncs = None, []
    for a, b in zip(bounds, bounds[1:]):
        batch = ordered[a:b]
        prior, rest, pairing = loaded_for(state, batch)
        r = fold(table(batch), prior, KEY, ROW_FIELDS, truncs, pairing, keep_images=True)
        truncs = r.truncates
        state = r.rows if state is None else pa.concat_tables([rest, r.rows])
    got = {row["id"]: row for row in state.to_pylist() if not row["__deleted"]}
    assert {k: (v["name"], v["n"]) for k, v in got.items()} == {
        k: (v["name"], v["n"]) for k, v in visible(whole).items()
    }
