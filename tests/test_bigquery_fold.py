"""The fold's SQL on BigQuery (the emulator, tests/bq_emulator.py): sql/fold/ carried over by sqlglot
runs as one script and gives what DuckDB and the reference fold give, on hand-made events and on
random histories with replays, TOAST, deletes, key changes and truncates, in batches.

The emulator executes BigQuery SQL on DuckDB underneath, so this proves the dialect carries over
(scripts, temp tables, LOOP, QUALIFY, IGNORE NULLS, correlated EXISTS, UNNEST), not BigQuery's own
execution or its pruning; those are checked on the SQL's shape elsewhere (issue 14)."""

from __future__ import annotations

import os
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_fold import KEY, PH, ROW_FIELDS, ev, histories, loaded_for, table
from test_sqlfold import same

from lakehouse.state.fold import Truncate, fold
from lakehouse.warehouse.bigquery_fold import fold_bigquery


@pytest.fixture(scope="module")
def bq(bigquery_emulator):
    client = bigquery_emulator.client()
    dataset = f"{bigquery_emulator.project}.fold_{uuid.uuid4().hex[:8]}"
    client.create_dataset(dataset)
    return client, dataset


def test_toast_delete_replay_key_change_and_truncate(bq):
    client, dataset = bq
    events = table([
        ev("c", 1, (0, 0, 0), lsn=10, name="a", n=1), ev("u", 1, (0, 0, 1), lsn=11, name=PH, n=2),
        ev("d", 1, (0, 0, 2), lsn=12, tx=12), ev("c", 5, (0, 0, 3), lsn=12, tx=12, name=PH, n=5),  # key change 1 -> 5
        ev("u", 1, (0, 0, 1), lsn=11, name=PH, n=2),  # a replay
        ev("c", 3, (1, 0, 0), name="c", lsn=5), ev("t", None, (1, 0, 1), lsn=6), ev("c", 4, (1, 0, 2), lsn=20),
    ])
    got = fold_bigquery(client, dataset, events, None, KEY, ROW_FIELDS)
    visible = {r["id"]: (r["name"], r["n"]) for r in got.rows.to_pylist() if not r["__deleted"]}
    assert visible == {5: ("a", 5), 4: (None, None)}
    same(got, fold(events, None, KEY, ROW_FIELDS))


@settings(max_examples=int(os.environ.get("BQFOLD_EXAMPLES", "12")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(rows=histories(), cut=st.integers(0, 60))
def test_property_bigquery_fold_equals_reference_fold(bq, rows, cut):
    client, dataset = bq
    ordered = sorted(rows, key=lambda e: (e["__kafka_partition"], e["__file_start_offset"], e["__row_index"]))
    first = fold(table(ordered[:cut]), None, KEY, ROW_FIELDS, keep_images=True)
    same(fold_bigquery(client, dataset, table(ordered[:cut]), None, KEY, ROW_FIELDS, keep_images=True), first)
    rest = ordered[cut:]
    prior, _, pairing = loaded_for(first.rows, rest)
    truncates: list[Truncate] = first.truncates
    want = fold(table(rest), prior, KEY, ROW_FIELDS, truncates, pairing, keep_images=True)
    same(fold_bigquery(client, dataset, table(rest), prior, KEY, ROW_FIELDS, truncates, pairing, keep_images=True),
         want)
