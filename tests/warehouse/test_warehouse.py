"""The embedded DuckDB warehouse: incremental loads after every compaction step equal the
current-state export; replays change nothing; schema changes and rebuilds load in full."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.lake_copy import copy_companions, land_step

from lakehouse.config import load_config
from lakehouse.generate import GeneratorOptions, generate_lake
from lakehouse.state.compact import CompactOptions, compact
from lakehouse.state.export import visible_rows
from lakehouse.warehouse.changes import LINEAGE
from lakehouse.warehouse.duckdb_warehouse import DuckDBWarehouse

TABLES = [t.table for t in load_config().tables]


def entry(table: str):
    return next(t for t in load_config().tables if t.table == table)


@pytest.fixture(autouse=True)
def _pseudonym_key(monkeypatch):
    monkeypatch.setenv("LAKEHOUSE_PSEUDONYM_KEY", "test-key")


@pytest.fixture(scope="module")
def source_lake(tmp_path_factory) -> Path:
    lake = tmp_path_factory.mktemp("wh") / "lake"
    generate_lake(
        lake,
        GeneratorOptions(
            events=10_000,
            seed=11,
            flush_size=300,
            partitions=2,
            replays=True,
            pk_changes=True,
            truncates=True,
            schema_change=True,
        ),
    )
    return lake


def rows_by_key(table, key: tuple[str, ...]) -> dict[tuple, dict]:
    drop = [c for c in LINEAGE if c in table.column_names]
    return {tuple(r[c] for c in key): r for r in table.drop_columns(drop).to_pylist()}


def assert_warehouse_equals_export(wh: DuckDBWarehouse, state: Path, table: str) -> None:
    key = next(t.primary_key for t in load_config().tables if t.table == table)
    want = rows_by_key(visible_rows(str(state), table), key)
    got = rows_by_key(wh.read(table), key)
    assert set(got) == set(want), f"{table}: keys differ ({len(got)} vs {len(want)})"
    for k, row in want.items():
        assert got[k] == row, f"{table} {k}"


def test_incremental_loads_follow_every_compaction_step(source_lake, tmp_path):
    lake, state = tmp_path / "lake", tmp_path / "state"
    wh = DuckDBWarehouse(tmp_path / "warehouse.duckdb")
    copy_companions(source_lake, lake)
    config = load_config()
    modes: dict[str, list[str]] = {t: [] for t in TABLES}
    steps = 5
    for step in range(steps):
        land_step(source_lake, lake, step, steps)
        # small clusters, so a step touches some of them and the load is incremental
        results = compact(
            str(lake), str(state), config, options=CompactOptions(batch_events=700, cluster_bytes=60_000)
        )
        assert not [r.error for r in results if r.failed]
        for r in results:
            if not r.rows and not r.tombstones and r.status == "up-to-date":
                continue
            load = wh.load(str(state), entry(r.table))
            modes[r.table].append(load.mode)
            assert load.rows == r.rows, r.table
            assert_warehouse_equals_export(wh, state, r.table)
            assert wh.load(str(state), entry(r.table)).mode == "up-to-date"  # loading again changes nothing
    # after the first load, steps were incremental (schema changes and truncates may force a full one)
    assert any(m == "incremental" for ms in modes.values() for m in ms), modes
    assert all(ms[0] == "full" for ms in modes.values() if ms), modes


def test_replayed_objects_change_nothing_in_the_warehouse(source_lake, tmp_path):
    state = tmp_path / "state"
    compact(str(source_lake), str(state), load_config(), tables=["scan.feedback"])
    wh = DuckDBWarehouse(tmp_path / "w.duckdb")
    wh.load(str(state), entry("scan.feedback"))
    before = wh.read("scan.feedback")
    # the same objects again (a sink replay lands the same keys): compaction is up to date, so is the load
    again = compact(str(source_lake), str(state), load_config(), tables=["scan.feedback"])
    assert again[0].status == "up-to-date"
    assert wh.load(str(state), entry("scan.feedback")).mode == "up-to-date"
    assert wh.read("scan.feedback").equals(before)


def test_full_refresh_and_personal_data_never_reach_the_warehouse(source_lake, tmp_path):
    state = tmp_path / "state"
    compact(str(source_lake), str(state), load_config(), tables=["auth.users"])
    wh = DuckDBWarehouse(tmp_path / "w.duckdb")
    first = wh.load(str(state), entry("auth.users"))
    again = wh.load(str(state), entry("auth.users"), full_refresh=True)
    assert (first.mode, again.mode) == ("full", "full") and first.rows == again.rows > 0
    columns = wh.columns("auth.users")
    assert "password_hash" not in columns and "email" in columns
    assert wh.not_pseudonymised("auth.users", "email") == 0
    assert {"_cdc_lsn", "_cdc_committed_at"} <= set(columns)
    problems = wh.key_problems("auth.users", ("id",))
    assert (problems.duplicate_keys, problems.null_keys) == (0, 0)
    assert_warehouse_equals_export(wh, state, "auth.users")


def test_a_rebuilt_state_table_loads_in_full(source_lake, tmp_path):
    state = tmp_path / "state"
    compact(str(source_lake), str(state), load_config(), tables=["scan.scans"])
    wh = DuckDBWarehouse(tmp_path / "w.duckdb")
    wh.load(str(state), entry("scan.scans"))
    compact(
        str(source_lake),
        str(state),
        load_config(),
        tables=["scan.scans"],
        options=CompactOptions(full_refresh=True),
    )
    load = wh.load(str(state), entry("scan.scans"))
    assert load.mode == "full", load.reason
    assert_warehouse_equals_export(wh, state, "scan.scans")
