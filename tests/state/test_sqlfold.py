"""The fold as SQL (sql/fold/, lakehouse.state.sqlfold) on DuckDB equals the reference fold
(lakehouse.state.fold) row for row, internal columns included: on hand-made events and on random
histories (replays, TOAST, deletes, truncates, two Kafka partitions), in one fold and in batches
carried one after the other, key changes' TOAST pairing across batches included."""

from __future__ import annotations

import os

import duckdb
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_fold import KEY, PH, ROW_FIELDS, ev, histories, loaded_for, table

from lakehouse.state.fold import LateEventError, Truncate, fold
from lakehouse.state.sqlfold import fold_sql


@pytest.fixture(scope="module")
def con():
    with duckdb.connect() as c:
        yield c


def same(a, b) -> None:
    order = [
        ("id", "ascending"),
        ("__image", "ascending"),
        ("__file_start_offset", "ascending"),
        ("__row_index", "ascending"),
    ]
    assert a.rows.sort_by(order).to_pylist() == b.rows.sort_by(order).to_pylist()
    assert a.unresolved_toast == b.unresolved_toast
    assert (a.inserts, a.updates, a.deletes, a.duplicates) == (b.inserts, b.updates, b.deletes, b.duplicates)
    assert [t.to_json() for t in a.truncates] == [t.to_json() for t in b.truncates]


def test_toast_delete_replay_and_truncate(con):
    events = table(
        [
            ev("c", 1, (0, 0, 0), lsn=10, name="a", n=1),
            ev("u", 1, (0, 0, 1), lsn=11, name=PH, n=2),
            ev("c", 2, (0, 0, 2), lsn=12, name="b"),
            ev("d", 2, (0, 1, 0), lsn=13),
            ev("c", 2, (0, 1, 1), lsn=14, name="c"),
            ev("u", 2, (0, 1, 2), lsn=15, name=PH, n=3),
            ev("u", 1, (0, 2, 0), lsn=11, name=PH, n=2),  # a replay
            ev("c", 3, (1, 0, 0), name="c", lsn=5),
            ev("t", None, (1, 0, 1), lsn=6),
            ev("c", 4, (1, 0, 2), lsn=20),
        ]
    )
    got = fold_sql(con, events, None, KEY, ROW_FIELDS)
    assert {r["id"]: (r["name"], r["n"]) for r in got.rows.to_pylist()} == {
        1: ("a", 2),
        2: ("c", 3),
        4: (None, None),
    }
    same(got, fold(events, None, KEY, ROW_FIELDS))


def test_events_older_than_the_state_are_late(con):
    state = fold(table([ev("c", 1, (0, 5, 0), name="a")]), None, KEY, ROW_FIELDS).rows
    with pytest.raises(LateEventError, match="o0-1"):
        fold_sql(con, table([ev("u", 1, (0, 1, 0), name="b")]), state, KEY, ROW_FIELDS)


@settings(
    max_examples=int(os.environ.get("SQLFOLD_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(rows=histories(), cuts=st.lists(st.integers(0, 200), max_size=4))
def test_property_sql_fold_equals_reference_fold(con, rows, cuts):
    """One fold, then batches as compaction loads them (test_fold.loaded_for)."""
    same(fold_sql(con, table(rows), None, KEY, ROW_FIELDS), fold(table(rows), None, KEY, ROW_FIELDS))
    ordered = sorted(rows, key=lambda e: (e["__kafka_partition"], e["__file_start_offset"], e["__row_index"]))
    bounds = sorted({min(c, len(ordered)) for c in cuts} | {0, len(ordered)})
    state: pa.Table | None = None
    truncates: list[Truncate] = []
    for a, b in zip(bounds, bounds[1:]):
        batch = ordered[a:b]
        prior, rest, pairing = loaded_for(state, batch)
        want = fold(table(batch), prior, KEY, ROW_FIELDS, truncates, pairing, keep_images=True)
        got = fold_sql(con, table(batch), prior, KEY, ROW_FIELDS, truncates, pairing, keep_images=True)
        same(got, want)
        truncates = got.truncates
        state = want.rows if rest is None else pa.concat_tables([rest, want.rows])
