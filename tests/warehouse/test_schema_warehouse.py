"""ADD and DROP COLUMN through to the warehouses (issue 13), on a real capture of PostgreSQL 15.

After ``ADD COLUMN ... DEFAULT`` and ``DROP COLUMN`` the DuckDB and BigQuery (emulator) tables
have exactly the source's columns and values (``SELECT *``), rows never touched after the ADD show
its default, and the loads go on: the load after the schema change reloads the table, the next
one is incremental again."""

from __future__ import annotations

import time
import uuid
from decimal import Decimal

import psycopg
import pyarrow.parquet as pq
import pytest
from support.capture_process import Capture, _no_capture_left_running  # noqa: F401 (autouse fixture)
from support.pgdb import drop_database

from lakehouse.config import TableConfig, TablesConfig
from lakehouse.state.compact import CompactOptions, compact
from lakehouse.warehouse.bigquery_warehouse import BigQueryWarehouse
from lakehouse.warehouse.changes import LINEAGE
from lakehouse.warehouse.duckdb_warehouse import DuckDBWarehouse

pytestmark = pytest.mark.slow

ENTRY = TableConfig(topic="sw.app.things", primary_key=("id",))
CONFIG = TablesConfig(tables=(ENTRY,))
SMALL = CompactOptions(cluster_bytes=1 << 14)  # 1,000-row clusters: a change touches one of several


@pytest.fixture
def db(pg_cluster):
    name = "sw_" + uuid.uuid4().hex[:8]
    with psycopg.connect(pg_cluster.dsn(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield pg_cluster.dsn(name)
    drop_database(pg_cluster, name)


def landed(lake, marker: int) -> bool:
    """The row with id ``marker`` is in the lake (objects are written in commit order)."""
    for path in (lake / "topics" / ENTRY.topic).rglob("*.parquet"):
        if ".headers." in path.name or ".keys." in path.name:
            continue
        after = pq.read_table(path, columns=["after"]).column("after").to_pylist()
        if any(a is not None and a["id"] == marker for a in after):
            return True
    return False


def wait_landed(capture: Capture, lake, marker: int) -> None:
    deadline = time.monotonic() + 90
    while not landed(lake, marker):
        capture.assert_alive()
        assert time.monotonic() < deadline, f"row {marker} never reached the lake"
        time.sleep(0.3)


def source_rows(conn) -> tuple[list[str], dict[int, dict]]:
    cur = conn.execute("SELECT * FROM app.things")
    names = [d.name for d in cur.description]
    return names, {r[0]: dict(zip(names, r)) for r in cur.fetchall()}


def warehouse_rows(table) -> tuple[list[str], dict[int, dict]]:
    names = [c for c in table.column_names if c not in LINEAGE]
    rows = table.select(names).to_pylist()
    return names, {
        r["id"]: {k: (v.normalize() if isinstance(v, Decimal) else v) for k, v in r.items()} for r in rows
    }


def test_add_and_drop_column_reach_both_warehouses(db, tmp_path, bigquery_emulator, monkeypatch):
    monkeypatch.setenv("LAKEHOUSE_PSEUDONYM_KEY", "test-key")
    lake, state = tmp_path / "lake", str(tmp_path / "state")
    duck = DuckDBWarehouse(tmp_path / "wh.duckdb")
    bq = BigQueryWarehouse(
        bigquery_emulator.client,
        bigquery_emulator.project,
        dataset_prefix=f"t{uuid.uuid4().hex[:8]}_",
        meta_dataset=f"m{uuid.uuid4().hex[:8]}",
    )
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA app; CREATE TABLE app.things (id int PRIMARY KEY, a int, b text)")
        conn.execute(
            "INSERT INTO app.things SELECT i, i * 10, 'b' || i FROM generate_series(1, 5000) i"
        )  # several clusters
        capture = Capture(db, lake, tmp_path / "capture", "--topic-prefix", "sw").start()
        wait_landed(capture, lake, 5000)

        def step(marker: int) -> list[tuple[str, str]]:
            conn.execute("INSERT INTO app.things (id, a) VALUES (%s, 0)", [marker])
            wait_landed(capture, lake, marker)
            assert not [r.error for r in compact(str(lake), state, CONFIG, options=SMALL) if r.failed]
            loads = duck.load(state, ENTRY), bq.load(state, ENTRY)
            modes = [tuple(x.mode for x in loads)]
            want_cols, want = source_rows(conn)
            for name, table in (("duckdb", duck.read(ENTRY.table)), ("bigquery", bq.read(ENTRY.table))):
                got_cols, got = warehouse_rows(table)
                assert got_cols == want_cols, (name, got_cols, want_cols)
                assert got == want, name
            return modes

        step(10_000)
        conn.execute("ALTER TABLE app.things ADD COLUMN c int NOT NULL DEFAULT 5")
        conn.execute("ALTER TABLE app.things DROP COLUMN b")
        conn.execute("UPDATE app.things SET c = 6 WHERE id = 1")
        assert step(10_001) == [("full", "full")]  # the schema moved: one reload
        conn.execute("UPDATE app.things SET a = -1 WHERE id = 2")
        assert step(10_002) == [("incremental", "incremental")]  # and on they go incrementally
        assert source_rows(conn)[1][3]["c"] == 5  # a row never touched since the ADD: the default
        capture.stop()
