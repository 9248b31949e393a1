"""The BigQuery warehouse through the official client against a local emulator (bqemulator on
loopback; no mocked client calls): incremental MERGE loads over several compaction steps equal the
current-state export, a replayed (older) staging batch changes nothing, an added source column
appears, personal data is protected. What the emulator cannot do is said where it matters."""

from __future__ import annotations

import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from support.lake_copy import copy_companions, land_step

from lakehouse.config import load_config
from lakehouse.generate import GeneratorOptions, generate_lake
from lakehouse.state.compact import CompactOptions, compact
from lakehouse.state.export import visible_rows
from lakehouse.state.table import StateTable
from lakehouse.warehouse.bigquery_warehouse import BigQueryWarehouse
from lakehouse.warehouse.changes import LINEAGE, warehouse_schema
from lakehouse.warehouse.duckdb_warehouse import DuckDBWarehouse

pytestmark = pytest.mark.timeout(300)
CONFIG = load_config()


def entry(table: str):
    return next(t for t in CONFIG.tables if t.table == table)


@pytest.fixture(autouse=True)
def _pseudonym_key(monkeypatch):
    monkeypatch.setenv("LAKEHOUSE_PSEUDONYM_KEY", "test-key")


@pytest.fixture
def warehouse(bigquery_emulator) -> BigQueryWarehouse:
    # a dataset prefix per test: the emulator lives for the whole session
    return BigQueryWarehouse(
        bigquery_emulator.client,
        bigquery_emulator.project,
        dataset_prefix=f"t{uuid.uuid4().hex[:8]}_",
        meta_dataset=f"m{uuid.uuid4().hex[:8]}",
    )


@pytest.fixture(scope="module")
def source_lake(tmp_path_factory) -> Path:
    lake = tmp_path_factory.mktemp("bq") / "lake"
    generate_lake(
        lake,
        GeneratorOptions(
            events=20_000,
            seed=21,
            flush_size=400,
            partitions=2,
            replays=True,
            pk_changes=True,
            truncates=True,
            schema_change=True,
        ),
    )
    return lake


def normalized(value):
    # BigQuery NUMERIC carries 9 decimals; compare numbers by value
    return value.normalize() if isinstance(value, Decimal) else value


def rows_by_key(table, key) -> dict:
    drop = [c for c in LINEAGE if c in table.column_names]
    return {
        tuple(r[c] for c in key): {k: normalized(v) for k, v in r.items()}
        for r in table.drop_columns(drop).to_pylist()
    }


def assert_equals_export(wh: BigQueryWarehouse, state: Path, table: str) -> None:
    key = entry(table).primary_key
    want = rows_by_key(visible_rows(str(state), table), key)
    got = rows_by_key(wh.read(table), key)
    assert set(got) == set(want), f"{table}: {len(got)} rows in BigQuery, {len(want)} in the state"
    for k, row in want.items():
        assert got[k] == row, f"{table} {k}"


def test_incremental_merges_over_compaction_steps_equal_the_export(source_lake, tmp_path, warehouse):
    lake, state = tmp_path / "lake", tmp_path / "state"
    copy_companions(source_lake, lake)
    tables = ["scan.llm_call_log", "scan.rag_retrievals", "scan.feedback", "scan.scans", "auth.users"]
    modes: dict[str, list[str]] = {t: [] for t in tables}
    steps = 4
    for step in range(steps):
        land_step(source_lake, lake, step, steps)
        results = compact(
            str(lake),
            str(state),
            CONFIG,
            tables=tables,
            options=CompactOptions(batch_events=400, cluster_bytes=12_000),
        )
        assert not [r.error for r in results if r.failed]
        for r in results:
            if r.status == "up-to-date" and not r.rows:
                continue
            load = warehouse.load(str(state), entry(r.table))
            modes[r.table].append(f"{load.mode}: {load.reason}")
            assert load.rows == r.rows, (r.table, load)  # clusters hold at least 1,000 rows
            assert_equals_export(warehouse, state, r.table)
            again = warehouse.load(str(state), entry(r.table))
            assert again.mode == "up-to-date" and again.rows == load.rows  # idempotent
    assert any(m.startswith("incremental") for ms in modes.values() for m in ms), modes
    # llm_call_log gained cached_tokens mid-way (generator schema_change): it is in BigQuery
    assert "cached_tokens" in warehouse.columns("scan.llm_call_log")
    values = warehouse.read("scan.llm_call_log").column("cached_tokens").drop_null()
    assert len(values) > 0


def test_a_replayed_older_staging_batch_changes_nothing(source_lake, tmp_path, warehouse, monkeypatch):
    lake, state = tmp_path / "lake", tmp_path / "state"
    copy_companions(source_lake, lake)
    table = entry("scan.rag_retrievals")  # append-only: most steps load incrementally
    client = warehouse.client
    real_delete, staged = client.delete_table, []
    # keep every load's staging table (normally dropped after its MERGE), to replay one later
    monkeypatch.setattr(
        client,
        "delete_table",
        lambda t, **kw: staged.append(str(t)) if "stage__" in str(t) else real_delete(t, **kw),
    )
    saved = None
    saved_version = None
    steps = 4
    for step in range(steps):
        land_step(source_lake, lake, step, steps)
        compact(
            str(lake),
            str(state),
            CONFIG,
            tables=[table.table],
            options=CompactOptions(batch_events=400, cluster_bytes=12_000),
        )
        load = warehouse.load(str(state), table)
        if saved_version is None and load.mode == "incremental" and step < steps - 1:
            saved = staged[-1]  # this load's staging table, replayed after the next load
            saved_version = load.state_version
    assert saved_version is not None, "no incremental load before the last step"
    assert warehouse.loaded_version(table.table) > saved_version
    before = rows_by_key(warehouse.read(table.table), table.primary_key)
    schema = warehouse_schema(StateTable(str(state), table.table).require())
    text, params = warehouse.merge_statement(table, saved, schema, table.primary_key, saved_version, None)
    job = client.query(text, job_config=_config(params))
    job.result()
    assert (job.num_dml_affected_rows or 0) == 0
    assert rows_by_key(warehouse.read(table.table), table.primary_key) == before
    assert_equals_export(warehouse, state, table.table)


def _config(params: dict):
    from google.cloud import bigquery

    from lakehouse.warehouse.bigquery_warehouse import _param

    return bigquery.QueryJobConfig(query_parameters=[_param(k, v) for k, v in params.items()])


def test_personal_data_never_reaches_bigquery_and_pseudonyms_match_across_warehouses(
    source_lake, tmp_path, warehouse
):
    state = tmp_path / "state"
    compact(str(source_lake), str(state), CONFIG, tables=["auth.users"])
    users = entry("auth.users")
    warehouse.load(str(state), users)
    assert "password_hash" not in warehouse.columns("auth.users")
    assert "password_hash" not in warehouse.read("auth.users").column_names
    assert warehouse.not_pseudonymised("auth.users", "email") == 0
    duck = DuckDBWarehouse(tmp_path / "w.duckdb")
    duck.load(str(state), users)
    bq = dict(
        zip(
            warehouse.read("auth.users").column("id").to_pylist(),
            warehouse.read("auth.users").column("email").to_pylist(),
        )
    )
    dd = dict(
        zip(
            duck.read("auth.users").column("id").to_pylist(),
            duck.read("auth.users").column("email").to_pylist(),
        )
    )
    assert bq == dd and len(bq) > 0
    # a second compaction from scratch (another run, same key) gives the same pseudonyms
    compact(str(source_lake), str(tmp_path / "again"), CONFIG, tables=["auth.users"])
    again = visible_rows(str(tmp_path / "again"), "auth.users")
    assert dict(zip(again.column("id").to_pylist(), again.column("email").to_pylist())) == bq
    problems = warehouse.key_problems("auth.users", ("id",))
    assert (problems.duplicate_keys, problems.null_keys) == (0, 0)


def test_the_dagster_graph_runs_on_bigquery_by_one_setting(bigquery_emulator, tmp_path):
    """The same assets and checks with the fold engine and the warehouse switched to BigQuery (what
    LAKEHOUSE_ENGINE=bigquery and LAKEHOUSE_WAREHOUSE=bigquery select in orchestration/environment.py);
    the state equals what the local engine gives."""
    import dagster as dg

    from assets.resources import BigQueryWarehouseResource, EngineResource, LakeResource, StateResource
    from orchestration.definitions import build_defs

    generate_lake(tmp_path / "lake", GeneratorOptions(events=3_000, seed=22, flush_size=300))
    prefix = f"g{uuid.uuid4().hex[:8]}_"
    resources = {
        "lake": LakeResource(uri=str(tmp_path / "lake")),
        "state": StateResource(uri=str(tmp_path / "state"), pseudonym_key="test-key"),
        "engine": EngineResource(
            kind="bigquery",
            project=bigquery_emulator.project,
            api_endpoint=bigquery_emulator.endpoint,
            dataset=prefix + "engine",
        ),
        "warehouse": BigQueryWarehouseResource(
            project=bigquery_emulator.project,
            location="US",
            api_endpoint=bigquery_emulator.endpoint,
            dataset_prefix=prefix,
            meta_dataset=prefix + "meta",
        ),
    }
    result = (
        build_defs(resources)
        .resolve_job_def("main")
        .execute_in_process(instance=dg.DagsterInstance.ephemeral())
    )
    assert result.success
    failed = [
        (c.asset_key.to_user_string(), c.check_name)
        for c in result.get_asset_check_evaluations()
        if not c.passed
    ]
    assert not failed
    mats = {
        e.materialization.asset_key.to_user_string(): e.materialization.metadata
        for e in result.get_asset_materialization_events()
    }
    users = mats["warehouse/auth/users"]
    assert users["dagster/table_name"].value == f"{bigquery_emulator.project}.{prefix}auth.users"
    assert users["rows"].value == visible_rows(str(tmp_path / "state"), "auth.users").num_rows > 0
    assert "bytes_processed" in users and "rows_affected" in users
    state = mats["current_state/scan/feedback"]
    assert state["engine"].value == "bigquery" and state["engine_folds"].value >= 1
    wh = resources["warehouse"].warehouse()
    assert_equals_export(wh, tmp_path / "state", "scan.feedback")
    compact(
        str(tmp_path / "lake"),
        str(tmp_path / "local"),
        load_config(),
        options=CompactOptions(pseudonym_key="test-key"),
    )
    for table in ("auth.users", "scan.feedback", "scan.rag_retrievals"):
        assert sorted(visible_rows(str(tmp_path / "state"), table).to_pylist(), key=repr) == sorted(
            visible_rows(str(tmp_path / "local"), table).to_pylist(), key=repr
        ), table
