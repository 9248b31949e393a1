"""Great Expectations checks (GX 1.x) and the versioned RLHF dataset export.

- bad values injected into the warehouse (confidence 1.7, negative latency) fail the GX checks, the
  metadata names the column and the count, and the marts downstream are not built in that run;
- the export is reproducible: same rows -> same hash, no new version; changed rows -> a new one."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pytest

from assets.resources import DuckDBWarehouseResource, EngineResource, LakeResource, StateResource
from lakehouse.datasets import canonical_jsonl, export_dataset, latest_version
from lakehouse.generate import GeneratorOptions, generate_lake
from lakehouse.lake.store import LocalStore
from lakehouse.quality import validate
from lakehouse.warehouse.duckdb_warehouse import DuckDBWarehouse

pytestmark = pytest.mark.timeout(600)


def resources_for(root: Path) -> dict:
    return {
        "lake": LakeResource(uri=str(root / "lake")),
        "state": StateResource(uri=str(root / "state"), pseudonym_key="test-key"),
        "engine": EngineResource(),
        "warehouse": DuckDBWarehouseResource(path=str(root / "warehouse.duckdb")),
    }


def test_every_relation_has_its_suite():
    from lakehouse.quality import RELATIONS, suites

    assert set(RELATIONS) == set(suites())


BAD_RESULTS = pa.table(
    {
        "id": [1, 2, 3, 3],
        "confidence": [0.5, 1.7, 0.2, 1.2],
        "category": ["glass", "paper", "metal", "can"],
    }
)


def duckdb_with(path: Path, tables: dict[str, pa.Table]) -> DuckDBWarehouse:
    wh = DuckDBWarehouse(path)
    with wh.connect() as con:
        for name, rows in tables.items():
            con.register("rows", rows)
            con.execute(f"create schema if not exists {name.split('.')[0]}")
            con.execute(f"create or replace table {name} as select * from rows")
            con.unregister("rows")
    return wh


def assert_bad_results_reported(result) -> None:
    assert not result.success and result.rows == 4
    failed = {(f.column, f.expectation): f for f in result.failures}
    between = failed[("confidence", "expect_column_values_to_be_between")]
    assert between.unexpected_count == 2 and sorted(float(v) for v in between.samples) == [1.2, 1.7]
    assert failed[("category", "expect_column_values_to_be_in_set")].samples == ["metal"]
    assert failed[("id", "expect_column_values_to_be_unique")].unexpected_count == 2
    assert len(failed) == 3


def test_suite_runs_as_sql_on_duckdb_and_reports_columns_counts_and_samples(tmp_path):
    wh = duckdb_with(tmp_path / "wh.duckdb", {"scan.classification_results": BAD_RESULTS})
    assert_bad_results_reported(
        validate("scan.classification_results", wh.quality_target(), "scan.classification_results")
    )
    good = duckdb_with(tmp_path / "good.duckdb", {"scan.classification_results": BAD_RESULTS.slice(0, 1)})
    assert validate(
        "scan.classification_results", good.quality_target(), "scan.classification_results"
    ).success


def test_sql_rules_regex_and_missing_columns(tmp_path):
    users = pa.table({"id": [1, 2], "provider": ["kakao", "email"], "email": ["a" * 64, "bob@example.com"]})
    wh = duckdb_with(tmp_path / "wh.duckdb", {"auth.users": users, "auth.nomail": users.drop(["email"])})
    result = validate("auth.users", wh.quality_target(), "auth.users")
    assert [(f.column, f.unexpected_count) for f in result.failures] == [("email", 1)]
    # a column the policy keeps out of the warehouse: its rule is left out, the rest still runs
    without = validate("auth.users", wh.quality_target(), "auth.nomail")
    assert without.success and without.evaluated == 3


def test_suite_runs_as_sql_on_bigquery_with_aggregates_only(bigquery_emulator):
    """The same suite on the BigQuery emulator through sqlalchemy-bigquery on the warehouse's own
    client: the same failures, and every statement GX sent returns aggregates or a few samples."""
    import io

    import pyarrow.parquet as pq
    import sqlglot
    from google.cloud import bigquery
    from sqlglot import exp

    from lakehouse.warehouse.bigquery_warehouse import BigQueryWarehouse

    prefix = f"q{random.randrange(10**6)}_"
    wh = BigQueryWarehouse(bigquery_emulator.client, bigquery_emulator.project, dataset_prefix=prefix)
    wh.client.create_dataset(wh.dataset_id("scan.x"), exists_ok=True)
    table = wh.table_id("scan.classification_results")
    wh.client.query(f"create table `{table}` (id INT64, confidence FLOAT64, category STRING)").result()
    buf = io.BytesIO()
    pq.write_table(BAD_RESULTS, buf)
    buf.seek(0)
    config = bigquery.LoadJobConfig(source_format="PARQUET")
    wh.client.load_table_from_file(buf, table, job_config=config).result()
    before = {j.job_id for j in wh.client.list_jobs()}
    assert_bad_results_reported(
        validate("scan.classification_results", wh.quality_target(), "scan.classification_results")
    )
    jobs = [j for j in wh.client.list_jobs() if j.job_id not in before and j.job_type == "query"]
    statements = [j.query for j in jobs]
    assert statements
    for text in statements:
        tree = sqlglot.parse_one(text, read="bigquery")
        assert tree.args.get("limit") is not None or tree.find(exp.AggFunc) is not None, text


def test_injected_bad_values_fail_gx_and_block_the_marts(tmp_path):
    from orchestration.definitions import build_defs

    generate_lake(tmp_path / "lake", GeneratorOptions(events=3_000, seed=51, flush_size=500))
    defs = build_defs(resources_for(tmp_path))
    instance = dg.DagsterInstance.ephemeral()
    assert defs.resolve_job_def("main").execute_in_process(instance=instance).success  # clean first
    with DuckDBWarehouse(tmp_path / "warehouse.duckdb").connect() as con:  # injected, as a bad load would
        con.execute(
            "update scan.classification_results set confidence = 1.7 "
            "where id in (select id from scan.classification_results order by id limit 2)"
        )
        con.execute(
            "update scan.llm_call_log set latency_ms = -5 "
            "where id in (select id from scan.llm_call_log order by id limit 3)"
        )
    result = defs.resolve_job_def("daily_marts").execute_in_process(instance=instance, raise_on_error=False)
    failed = {
        (c.asset_key.to_user_string(), c.check_name): c
        for c in result.get_asset_check_evaluations()
        if not c.passed
    }
    gx_cr = failed[("warehouse/scan/classification_results", "great_expectations")]
    gx_llm = failed[("warehouse/scan/llm_call_log", "great_expectations")]
    assert gx_cr.metadata["failed_rows.confidence"].value == 2 and "1.7" in gx_cr.metadata["failures"].value
    assert gx_llm.metadata["failed_rows.latency_ms"].value == 3 and "-5" in gx_llm.metadata["failures"].value
    built = {e.materialization.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    for downstream in ("marts/mart_llm_latency_daily", "marts/mart_rlhf_golden", "datasets/rlhf_golden"):
        assert downstream not in built
    assert "warehouse/scan/scans" in built  # the tables themselves were checked, not blocked


def test_a_failing_mart_dbt_test_blocks_the_dataset_and_report(tmp_path):
    """A per-column mart rule is a dbt test (dbt_project/models/marts/_marts.yml): a model with no
    price passes the warehouse's GX suite but leaves unpriced calls in mart_llm_cost_daily; its
    accepted_range test fails, and nothing downstream of dbt runs on it."""
    from orchestration.definitions import build_defs

    generate_lake(tmp_path / "lake", GeneratorOptions(events=3_000, seed=52, flush_size=500))
    defs = build_defs(resources_for(tmp_path))
    instance = dg.DagsterInstance.ephemeral()
    assert defs.resolve_job_def("main").execute_in_process(instance=instance).success
    with DuckDBWarehouse(tmp_path / "warehouse.duckdb").connect() as con:
        con.execute(
            "update scan.llm_call_log set model = 'no-such-model' "  # the newest calls: in the
            "where id in (select id from scan.llm_call_log order by created_at desc limit 3)"  # lookback
        )
    result = defs.resolve_job_def("daily_marts").execute_in_process(instance=instance, raise_on_error=False)
    failed = {
        (c.asset_key.to_user_string(), c.check_name)
        for c in result.get_asset_check_evaluations()
        if not c.passed
    }
    assert [name for key, name in failed if key == "marts/mart_llm_cost_daily"] == [
        "accepted_range_mart_llm_cost_daily_unpriced_calls__0__0"
    ], failed
    assert not any(name == "great_expectations" for _, name in failed)  # the warehouse was fine
    built = {e.materialization.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "datasets/rlhf_golden" not in built and "reports/marts_report" not in built


def test_export_is_reproducible_and_versions_only_on_change(tmp_path):
    store = LocalStore(tmp_path / "lake")
    rows = pa.table(
        {
            "scan_id": ["b", "a", "c"],
            "golden_category": ["glass", "paper", "can"],
            "feedback_at": [datetime(2026, 11, d, tzinfo=UTC) for d in (1, 2, 3)],
        }
    )
    first = export_dataset(
        store,
        "rlhf_golden",
        rows,
        ["scan_id"],
        {"scan.feedback": 4},
        now=datetime(2026, 11, 23, 1, tzinfo=UTC),
    )
    assert first.created and first.rows == 3
    shuffled = rows.take(pa.array(random.Random(1).sample(range(3), 3)))
    again = export_dataset(
        store,
        "rlhf_golden",
        shuffled,
        ["scan_id"],
        {"scan.feedback": 5},
        now=datetime(2026, 11, 23, 2, tzinfo=UTC),
    )
    assert not again.created and again.version == first.version and again.content_hash == first.content_hash
    changed = export_dataset(
        store,
        "rlhf_golden",
        rows.slice(0, 2),
        ["scan_id"],
        {"scan.feedback": 6},
        now=datetime(2026, 11, 23, 3, tzinfo=UTC),
    )
    assert changed.created and changed.version > first.version and changed.content_hash != first.content_hash
    manifest = latest_version(store, "rlhf_golden")
    assert manifest["version"] == changed.version and manifest["rows"] == 2
    assert manifest["built_from"] == {"scan.feedback": 6}
    files = {o.key.rsplit("/", 1)[-1] for o in store.list(changed.prefix)}
    assert files == {"data.parquet", "data.jsonl", "manifest.json"}
    lines = store.get_bytes(changed.prefix + "data.jsonl").decode().splitlines()
    assert [json.loads(x)["scan_id"] for x in lines] == ["a", "b"]
    assert canonical_jsonl(rows, ["scan_id"]) == canonical_jsonl(shuffled, ["scan_id"])


def test_pipeline_export_twice_gives_one_version(tmp_path):
    from orchestration.definitions import build_defs

    generate_lake(tmp_path / "lake", GeneratorOptions(events=3_000, seed=52, flush_size=500))
    defs = build_defs(resources_for(tmp_path))
    instance = dg.DagsterInstance.ephemeral()
    versions = []
    for _ in range(2):
        result = defs.resolve_job_def("main").execute_in_process(instance=instance)
        [meta] = [
            e.materialization.metadata
            for e in result.get_asset_materialization_events()
            if e.materialization.asset_key == dg.AssetKey(["datasets", "rlhf_golden"])
        ]
        versions.append((meta["version"].value, meta["new_version"].value, meta["content_hash"].value))
    assert versions[0][1] is True and versions[1][1] is False
    assert versions[0][0] == versions[1][0] and versions[0][2] == versions[1][2]
    assert len(list(LocalStore(tmp_path / "lake").list("datasets/rlhf_golden/"))) == 3  # one version's files


def test_row_count_reconciliation_between_layers(tmp_path):
    from lakehouse.quality import reconciliation, suites

    calls = pa.table({"scan_id": ["a", "a", "b", None]})  # three calls belong to scans
    mart = pa.table({"scan_id": ["a", "b"], "calls": [2, 1], "cost_usd": [0.1, 0.2]})
    relation = "mart:mart_cost_per_scan"
    for name, rows, ok in (("even", mart, True), ("short", mart.slice(0, 1), False)):
        wh = duckdb_with(
            tmp_path / f"{name}.duckdb", {"scan.llm_call_log": calls, "main_marts.mart_cost_per_scan": rows}
        )
        target = wh.quality_target()
        result = validate(
            relation,
            target,
            "main_marts.mart_cost_per_scan",
            suites()[relation] + reconciliation(relation, target),
        )
        assert result.success is ok
        assert ok or [(f.column, f.expectation) for f in result.failures] == [
            ("calls", "unexpected_rows_expectation")
        ]
