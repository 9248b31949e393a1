"""dbt runs for real on both warehouses: `dbt build` of the project on the DuckDB warehouse the
pipeline loaded, and on the BigQuery emulator loaded the same way (dbt-bigquery, no credentials)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from lakehouse.config import load_config
from lakehouse.generate import GeneratorOptions, generate_lake
from lakehouse.state.compact import compact
from lakehouse.warehouse.bigquery_warehouse import BigQueryWarehouse
from lakehouse.warehouse.duckdb_warehouse import DuckDBWarehouse

PROJECT = Path(__file__).resolve().parents[2] / "dbt_project"
DBT = Path(sys.executable).with_name("dbt")  # the project's environment, not PATH
pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def state(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dbt")
    generate_lake(root / "lake", GeneratorOptions(events=3_000, seed=31, flush_size=500))
    os.environ.setdefault("LAKEHOUSE_PSEUDONYM_KEY", "test-key")
    results = compact(str(root / "lake"), str(root / "state"), load_config())
    assert not [r.error for r in results if r.failed]
    return root / "state"


def dbt(args: list[str], tmp_path: Path, expect: int = 0, **env: str) -> subprocess.CompletedProcess:
    run = subprocess.run(
        [
            str(DBT),
            *args,
            "--project-dir",
            str(PROJECT),
            "--profiles-dir",
            str(PROJECT),
            "--target-path",
            str(tmp_path / "target"),
            "--log-path",
            str(tmp_path / "logs"),
        ],
        env={**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", **env},
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert run.returncode == expect, run.stdout[-4000:] + run.stderr[-2000:]
    return run


def test_dbt_build_on_the_duckdb_warehouse(state, tmp_path):
    wh = DuckDBWarehouse(tmp_path / "warehouse.duckdb")
    for entry in load_config().tables:
        wh.load(str(state), entry)
        if entry.history:
            wh.load_history(str(state), entry)
    run = dbt(["build", "--target", "duckdb"], tmp_path, LAKEHOUSE_DUCKDB=str(wh.path))
    assert "ERROR=0" in run.stdout and "SKIP=0" in run.stdout and "WARN=0" in run.stdout
    with wh.connect(read_only=True) as con:
        staged = con.execute("select count(*) from main_staging.stg_scan__feedback").fetchone()[0]
    assert staged == wh.row_count("scan.feedback") > 0
    # the per-column mart rules are dbt tests: a value out of range or set fails exactly its test
    with wh.connect() as con:
        con.execute(
            "update main_marts.mart_rlhf_golden set predicted_confidence = 1.7, golden_category = 'metal' "
            "where scan_id = (select min(scan_id) from main_marts.mart_rlhf_golden)"
        )
    bad = dbt(["test", "--select", "mart_rlhf_golden"], tmp_path, expect=1, LAKEHOUSE_DUCKDB=str(wh.path))
    failed = sorted(re.findall(r"FAIL 1 (\S+)", bad.stdout))
    assert len(failed) == 2, bad.stdout[-3000:]
    assert failed[0].startswith("accepted_range_mart_rlhf_golden_predicted_confidence")
    assert failed[1].startswith("accepted_values_mart_rlhf_golden_golden_category")


def test_dbt_bigquery_builds_on_the_emulator(state, tmp_path, bigquery_emulator):
    prefix = f"d{uuid.uuid4().hex[:8]}_"
    wh = BigQueryWarehouse(
        bigquery_emulator.client,
        bigquery_emulator.project,
        dataset_prefix=prefix,
        meta_dataset=prefix + "meta",
        location="US",
    )
    for entry in load_config().tables:
        wh.load(str(state), entry)
        if entry.history:
            wh.load_history(str(state), entry)
    run = dbt(
        ["build", "--target", "bigquery_emulator"],
        tmp_path,
        LAKEHOUSE_BIGQUERY_ENDPOINT=bigquery_emulator.endpoint,
        LAKEHOUSE_BIGQUERY_PROJECT=bigquery_emulator.project,
        LAKEHOUSE_BIGQUERY_DATASET_PREFIX=prefix,
    )
    assert "ERROR=0" in run.stdout and "SKIP=0" in run.stdout and "WARN=0" in run.stdout
    rows = list(
        bigquery_emulator.client()
        .query(f"select count(*) from `{bigquery_emulator.project}.{prefix}marts_staging.stg_scan__feedback`")
        .result()
    )
    assert rows[0][0] == wh.row_count("scan.feedback") > 0
    # daily marts are partitioned by their day (the hourly one by its hour's day): a date filter
    # and the incremental lookback read only the days they touch
    marts = f"{bigquery_emulator.project}.{prefix}marts_marts"
    client = bigquery_emulator.client()
    daily = [p.stem for p in (PROJECT / "models" / "marts").glob("mart_*_daily.sql")]
    partitions = {name: client.get_table(f"{marts}.{name}").time_partitioning for name in daily}
    assert len(partitions) == 6 and all(p is not None for p in partitions.values()), partitions
    assert {(p.field, p.type_) for p in partitions.values()} == {("day", "DAY")}
    # the emulator keeps no partitioning of a TIMESTAMP column: the DDL dbt sent says it
    hourly = next((tmp_path / "target" / "run").rglob("mart_llm_latency_hourly.sql")).read_text()
    assert "partition by timestamp_trunc(hour, day)" in hourly
    # the incremental marts merge into their partitions on a second run
    again = dbt(
        [
            "build",
            "--target",
            "bigquery_emulator",
            "--select",
            "mart_llm_cost_daily",
            "mart_llm_latency_hourly",
        ],
        tmp_path,
        LAKEHOUSE_BIGQUERY_ENDPOINT=bigquery_emulator.endpoint,
        LAKEHOUSE_BIGQUERY_PROJECT=bigquery_emulator.project,
        LAKEHOUSE_BIGQUERY_DATASET_PREFIX=prefix,
    )
    assert "ERROR=0" in again.stdout, again.stdout[-2000:]
    # the same marts from the same state on DuckDB: exact marts agree (percentiles are approximate on
    # BigQuery by design, see macros/cross_db.sql)
    duck = DuckDBWarehouse(tmp_path / "warehouse.duckdb")
    for entry in load_config().tables:
        duck.load(str(state), entry)
        if entry.history:
            duck.load_history(str(state), entry)
    dbt(["build", "--target", "duckdb"], tmp_path / "duck", LAKEHOUSE_DUCKDB=str(duck.path))
    for mart, key in (
        ("mart_confusion_matrix", ["predicted_category", "actual_category"]),
        ("mart_llm_cost_daily", ["day", "model", "stage"]),
        ("mart_rlhf_golden", ["scan_id"]),
    ):
        columns = (
            ["calls", "cost_usd"]
            if mart == "mart_llm_cost_daily"
            else (["scans"] if mart == "mart_confusion_matrix" else ["golden_category", "golden_source"])
        )
        on_bq = wh.read(f"marts_marts.{mart}", columns=key + columns).sort_by([(k, "ascending") for k in key])
        on_duck = duck.read(f"main_marts.{mart}", columns=key + columns).sort_by(
            [(k, "ascending") for k in key]
        )
        assert on_bq.num_rows == on_duck.num_rows > 0, mart
        for c in key + columns:
            a, b = on_bq.column(c).to_pylist(), on_duck.column(c).to_pylist()
            if c == "cost_usd":
                assert [float(x) for x in a] == pytest.approx([float(x) for x in b], rel=1e-9), mart
            else:
                assert [str(x) for x in a] == [str(x) for x in b], (mart, c)
