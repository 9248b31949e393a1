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


def test_suite_reports_failing_columns_counts_and_samples():
    rows = pa.table(
        {
            "id": [1, 2, 3, 3],
            "confidence": [0.5, 1.7, 0.2, 1.2],
            "category": ["glass", "paper", "metal", "can"],
        }
    )
    result = validate("scan.classification_results", rows)
    assert not result.success
    failed = {(f.column, f.expectation): f for f in result.failures}
    assert failed[("confidence", "expect_column_values_to_be_between")].unexpected_count == 2
    assert sorted(failed[("confidence", "expect_column_values_to_be_between")].samples) == [1.2, 1.7]
    assert failed[("category", "expect_column_values_to_be_in_set")].samples == ["metal"]
    assert ("id", "expect_column_values_to_be_unique") in failed
    assert validate("scan.classification_results", rows.slice(0, 1)).success


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


def test_row_count_reconciliation_between_layers():
    from lakehouse.quality import reconciliation

    calls = pa.table({"scan_id": ["a", "a", "b", None]})  # three calls belong to scans
    mart = pa.table({"scan_id": ["a", "b"], "calls": [2, 1], "cost_usd": [0.1, 0.2]})
    relation = "mart:mart_cost_per_scan"
    assert validate(relation, mart, reconciliation(relation, calls)).success
    short = validate(relation, mart.slice(0, 1), reconciliation(relation, calls))
    assert [f.expectation for f in short.failures] == ["expect_column_sum_to_be_between"]
