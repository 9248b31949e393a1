"""The fold's SQL on BigQuery (the emulator, tests/bq_emulator.py): sql/fold/ carried over by sqlglot
runs as one script and gives what DuckDB and the reference fold give, on hand-made events and on
random histories with replays, TOAST, deletes, key changes and truncates, in batches.

The emulator executes BigQuery SQL on DuckDB underneath, so this proves the dialect carries over
(scripts, temp tables, LOOP, QUALIFY, IGNORE NULLS, correlated EXISTS, UNNEST), not BigQuery's own
execution or its pruning; those are checked on the SQL's shape elsewhere (issue 14)."""

from __future__ import annotations

import os
import uuid

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_fold import KEY, PH, ROW_FIELDS, ev, histories, loaded_for, table
from test_sqlfold import same

from lakehouse.state.engine import EngineStats
from lakehouse.state.fold import Truncate, fold
from lakehouse.warehouse.bigquery_fold import BigQueryEngine


@pytest.fixture(scope="module")
def bq(bigquery_emulator):
    client = bigquery_emulator.client()
    return client, BigQueryEngine(client, f"{bigquery_emulator.project}.fold_{uuid.uuid4().hex[:8]}")


def fold_bigquery(
    engine: BigQueryEngine, events, prior, key, row_fields, truncates=(), pairing=None, keep_images=False
):
    return engine.fold(
        "t.events", events, prior, key, row_fields, list(truncates), pairing, keep_images, EngineStats()
    )


def test_toast_delete_replay_key_change_and_truncate(bq):
    client, engine = bq
    events = table(
        [
            ev("c", 1, (0, 0, 0), lsn=10, name="a", n=1),
            ev("u", 1, (0, 0, 1), lsn=11, name=PH, n=2),
            ev("d", 1, (0, 0, 2), lsn=12, tx=12),
            ev("c", 5, (0, 0, 3), lsn=12, tx=12, name=PH, n=5),  # key change 1 -> 5
            ev("u", 1, (0, 0, 1), lsn=11, name=PH, n=2),  # a replay
            ev("c", 3, (1, 0, 0), name="c", lsn=5),
            ev("t", None, (1, 0, 1), lsn=6),
            ev("c", 4, (1, 0, 2), lsn=20),
        ]
    )
    got = fold_bigquery(engine, events, None, KEY, ROW_FIELDS)
    visible = {r["id"]: (r["name"], r["n"]) for r in got.rows.to_pylist() if not r["__deleted"]}
    assert visible == {5: ("a", 5), 4: (None, None)}
    same(got, fold(events, None, KEY, ROW_FIELDS))


@settings(
    max_examples=int(os.environ.get("BQFOLD_EXAMPLES", "12")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(rows=histories(), cut=st.integers(0, 60))
def test_property_bigquery_fold_equals_reference_fold(bq, rows, cut):
    client, engine = bq
    ordered = sorted(rows, key=lambda e: (e["__kafka_partition"], e["__file_start_offset"], e["__row_index"]))
    first = fold(table(ordered[:cut]), None, KEY, ROW_FIELDS, keep_images=True)
    same(fold_bigquery(engine, table(ordered[:cut]), None, KEY, ROW_FIELDS, keep_images=True), first)
    rest = ordered[cut:]
    prior, _, pairing = loaded_for(first.rows, rest)
    truncates: list[Truncate] = first.truncates
    want = fold(table(rest), prior, KEY, ROW_FIELDS, truncates, pairing, keep_images=True)
    same(
        fold_bigquery(engine, table(rest), prior, KEY, ROW_FIELDS, truncates, pairing, keep_images=True), want
    )


def test_each_batch_lands_in_the_raw_change_table_partitioned_by_day_and_clustered_by_batch_and_key(bq):
    client, engine = bq
    events = table(
        [ev("c", 1, (0, 0, 0), lsn=10, name="a", n=1), ev("u", 1, (0, 0, 1), lsn=11, name="b", n=2)]
    )
    stats = EngineStats()
    for _ in range(2):
        engine.fold("t.landing", events, None, KEY, ROW_FIELDS, [], None, False, stats)
    changes = client.get_table(engine.changes_table("t.landing"))
    assert changes.time_partitioning.field == "_ingested_day"
    assert changes.clustering_fields == ["_batch", *KEY]
    assert changes.num_rows == 2 * events.num_rows and stats.folds == 2
    batches = client.query(
        f"SELECT COUNT(DISTINCT _batch) AS n FROM `{changes.full_table_id.replace(':', '.')}`"
    )
    assert next(iter(batches.result()))["n"] == 2
    leftovers = [
        t.table_id for t in client.list_tables(engine.dataset) if not t.table_id.startswith("changes__")
    ]
    assert not [t for t in leftovers if t.startswith(("fold_rest", "fold_truncates", "out_"))], leftovers


def test_the_script_reads_the_raw_change_table_only_through_one_partition_and_batch():
    """The shape BigQuery prunes on (the emulator cannot show pruning): the only read of the raw
    change table filters its partition column by a constant date and the batch by a constant."""
    import datetime as dt

    import sqlglot
    from sqlglot import expressions as exp
    from test_fold import ROW_FIELDS as FIELDS

    from lakehouse.state.sqlfold import fold_inputs, fold_script
    from lakehouse.warehouse.bigquery_fold import skeleton_statement

    inputs = fold_inputs(table([ev("c", 1, (0, 0, 0), lsn=10, name="a", n=1)]), None, None, [], KEY, FIELDS)
    changes, batch, day = "p.engine.changes__t__x", uuid.uuid4().hex, dt.date(2026, 12, 5)
    statement = skeleton_statement(inputs.skeleton.schema, changes, "p.engine.fold_rest_1", batch, day)
    work = {
        n: f"p.engine.{n}_1"
        for n in ("fold_truncates", "out_late", "out_result", "out_effects", "out_new_truncates")
    }
    script = fold_script(KEY, FIELDS, True, "bigquery", work, statement)
    assert script.count("changes__t__x") == 1  # read once, by the skeleton statement
    tree = sqlglot.parse_one(statement, read="bigquery")
    reads = [t for t in tree.find_all(exp.Table) if t.name == "changes__t__x"]
    assert len(reads) == 1
    where = reads[0].find_ancestor(exp.Select).args["where"].this
    conditions = {c.this.name: c.expression for c in where.flatten() if isinstance(c, exp.EQ)}
    assert set(conditions) == {"_ingested_day", "_batch"}
    assert conditions["_ingested_day"].sql("bigquery") == "CAST('2026-12-05' AS DATE)"
    assert conditions["_batch"].is_string and conditions["_batch"].name == batch


def test_logical_bytes_follow_bigquery_data_size_rules():
    from lakehouse.warehouse.bigquery_fold import logical_bytes

    rows = pa.table(
        {
            "n": pa.array([1, None, 3], pa.int64()),
            "s": pa.array(["ab", None, ""]),
            "b": pa.array([True, False, None]),
            "l": pa.array([[1, 2], None, [3]], pa.list_(pa.int32())),
        }
    )
    assert logical_bytes(rows) == 8 * 2 + (2 * 2 + 2) + 1 * 2 + 8 * 3
    assert logical_bytes(rows.slice(1)) == 8 + 2 + 1 + 8
