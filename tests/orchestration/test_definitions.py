"""The Dagster code location: it loads, its graph is the reviewed one, the whole graph runs on a
generated lake (warehouse == export, marts built, checks green, dataset exported), and bad input fails only its table's run."""

from __future__ import annotations

import json
import os
from pathlib import Path

import dagster as dg
import pytest
from support.sample_lake import write_sample_lake

from assets.keys import table_key
from assets.resources import DuckDBWarehouseResource, EngineResource, LakeResource, StateResource
from lakehouse.config import load_config
from lakehouse.generate import GeneratorOptions, generate_lake
from lakehouse.lake.reader import LakeReader
from lakehouse.lake.store import LocalStore
from lakehouse.state.export import visible_rows
from lakehouse.warehouse.changes import LINEAGE
from lakehouse.warehouse.duckdb_warehouse import DuckDBWarehouse

SNAPSHOT = Path(__file__).resolve().parents[1] / "snapshots" / "asset_graph.json"
TABLES = [t.table for t in load_config().tables]


@pytest.fixture(autouse=True)
def _pseudonym_key(monkeypatch):
    monkeypatch.setenv("LAKEHOUSE_PSEUDONYM_KEY", "test-key")


def resources_for(root: Path) -> dict:
    return {
        "lake": LakeResource(uri=str(root / "lake")),
        "state": StateResource(uri=str(root / "state"), pseudonym_key="test-key"),
        "engine": EngineResource(),
        "warehouse": DuckDBWarehouseResource(path=str(root / "warehouse.duckdb")),
    }


def graph_snapshot(defs: dg.Definitions) -> dict:
    """What a reviewer should see change: assets (group, deps, kinds, pool, automation), checks
    (blocking), jobs, sensors, schedules."""
    graph = defs.resolve_asset_graph()
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        assets[key.to_user_string()] = {
            "group": node.group_name,
            "deps": sorted(p.to_user_string() for p in node.parent_keys),
            "kinds": sorted(node.kinds),
            "materializable": node.is_materializable,
            "pools": sorted(node.pools or []),
            "automation": node.automation_condition.get_label() if node.automation_condition else None,
        }
    checks = {}
    for checks_def in defs.asset_checks or []:
        for spec in checks_def.check_specs:
            checks[f"{spec.asset_key.to_user_string()}:{spec.name}"] = {"blocking": spec.blocking}
    return {
        "assets": assets,
        "checks": dict(sorted(checks.items())),
        "jobs": sorted(j.name for j in defs.jobs or []),
        "sensors": sorted(s.name for s in defs.sensors or []),
        "schedules": {s.name: s.cron_schedule for s in defs.schedules or []},
    }


def test_definitions_load_with_every_layer():
    from orchestration.definitions import defs

    for job in ("main", "compact_tables", "load_warehouse", "maintain_state", "daily_marts"):
        assert defs.resolve_job_def(job) is not None
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    for table in TABLES:
        schema, name = table.split(".")
        assert {
            f"raw/{schema}/{name}",
            f"current_state/{schema}/{name}",
            f"warehouse/{schema}/{name}",
        } <= keys


def test_asset_graph_matches_the_reviewed_snapshot():
    """Regenerate with UPDATE_SNAPSHOTS=1 after an intended change, and review the diff."""
    from orchestration.definitions import defs

    snapshot = graph_snapshot(defs)
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(json.dumps(snapshot, indent=1, sort_keys=True) + "\n")
    assert snapshot == json.loads(SNAPSHOT.read_text()), (
        "asset graph changed: review, then UPDATE_SNAPSHOTS=1"
    )


def test_the_tables_config_is_read_once_for_the_graph_and_its_runs(tmp_path, monkeypatch):
    """Loading the code location and running a state asset (with its checks) read the tables config
    file once: every layer's module and the run's StateResource.config() share the object
    assets.keys.tables_config() read, so the graph and the run never disagree about the tables."""
    import sys

    import lakehouse.config

    reads: list = []
    real = lakehouse.config.load_config

    def counted(path=None):
        reads.append(path)
        return real(path)

    monkeypatch.setattr(lakehouse.config, "load_config", counted)
    # a fresh import of the code location, as a code server or run worker does (restored afterwards)
    for name in [m for m in sys.modules if m.split(".")[0] in ("assets", "orchestration")]:
        monkeypatch.delitem(sys.modules, name)
    import assets.keys
    import assets.resources
    from orchestration.definitions import build_defs

    assert len(reads) == 1, reads
    generate_lake(tmp_path / "lake", GeneratorOptions(events=2_000, seed=9, flush_size=300))
    resources = {
        "lake": assets.resources.LakeResource(uri=str(tmp_path / "lake")),
        "state": assets.resources.StateResource(uri=str(tmp_path / "state"), pseudonym_key="test-key"),
        "engine": assets.resources.EngineResource(),
        "warehouse": assets.resources.DuckDBWarehouseResource(path=str(tmp_path / "warehouse.duckdb")),
    }
    result = (
        build_defs(resources)
        .resolve_job_def("compact_tables")
        .execute_in_process(
            instance=dg.DagsterInstance.ephemeral(),
            asset_selection=[table_key("current_state", "scan.feedback")],
        )
    )
    assert result.success and result.get_asset_check_evaluations()
    assert len(reads) == 1, reads
    assert (
        resources["state"].config()
        is assets.keys.tables_config()
        is assets.keys.tables_config(Path(load_config().source))
    )


def test_lake_inventory_materializes_with_counts(tmp_path):
    from assets.raw import lake_inventory

    write_sample_lake(LocalStore(tmp_path))
    result = dg.materialize(
        [lake_inventory],
        resources={"lake": LakeResource(uri=str(tmp_path))},
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    meta = result.asset_materializations_for_node("lake_inventory")[0].metadata
    assert meta["topics"].value == 4
    assert meta["events"].value == 28  # 31 sample events minus 3 tombstones
    assert meta["problems"].value == 0


def test_whole_graph_in_process_warehouse_equals_export(tmp_path):
    from orchestration.definitions import build_defs

    generate_lake(
        tmp_path / "lake",
        GeneratorOptions(
            events=4_000,
            seed=8,
            flush_size=400,
            pk_changes=True,
            truncates=True,
            replays=True,
            transactions=True,
        ),
    )
    defs = build_defs(resources_for(tmp_path))
    instance = dg.DagsterInstance.ephemeral()
    result = defs.resolve_job_def("main").execute_in_process(instance=instance)
    assert result.success
    checks = result.get_asset_check_evaluations()
    # every check of the graph ran (state, warehouse, Great Expectations, dbt tests) and passed
    assert len(checks) == len(list(defs.resolve_asset_graph().asset_check_keys)) > 6 * len(TABLES)
    assert all(c.passed for c in checks), [
        (c.asset_key.to_user_string(), c.check_name) for c in checks if not c.passed
    ]
    mats = {
        e.materialization.asset_key.to_user_string(): e.materialization.metadata
        for e in result.get_asset_materialization_events()
    }
    wh = DuckDBWarehouse(tmp_path / "warehouse.duckdb")
    for entry in load_config().tables:
        schema, name = entry.table.split(".")
        state_meta = mats[f"current_state/{schema}/{name}"]
        want = visible_rows(str(tmp_path / "state"), entry.table)
        assert state_meta["rows"].value == want.num_rows > 0
        assert sum(state_meta[f"events_{op}"].value for op in "rcudt") == state_meta["events"].value
        assert (
            state_meta["lag_seconds"].value >= 0 and "lag over the last 1" in state_meta["lag_history"].value
        )
        got = wh.read(entry.table)
        assert (
            got.drop_columns(list(LINEAGE)).sort_by([(k, "ascending") for k in entry.primary_key]).to_pylist()
            == want.sort_by([(k, "ascending") for k in entry.primary_key]).to_pylist()
        ), entry.table
        assert mats[f"warehouse/{schema}/{name}"]["mode"].value == "full"
        # everything landed: the consistent watermark is the newest commit, and the loads read it
        assert mats[f"warehouse/{schema}/{name}"]["read_from"].value == "consistent watermark"
    for database in ("eco2/transaction_auth", "eco2/transaction_scan"):
        mark = mats[f"consistent_state/{database}"]
        assert mark["consistent"].value is True and mark["lag_seconds"].value == 0
        assert mark["watermark_lsn"].value == mark["newest_landed_lsn"].value
    # a second run: nothing new anywhere; the lag history grows
    again = defs.resolve_job_def("main").execute_in_process(instance=instance)
    metas = {
        e.materialization.asset_key.to_user_string(): e.materialization.metadata
        for e in again.get_asset_materialization_events()
    }
    assert {m["status"].value for k, m in metas.items() if k.startswith("current_state/")} == {"up-to-date"}
    assert {
        m["mode"].value for k, m in metas.items() if k.startswith("warehouse/") and not k.endswith("_history")
    } == {"up-to-date"}
    # history tables (history: true) land beside their tables: every version, the current ones equal the table
    history = wh.read("scan.feedback_history")
    current = history.filter(history.column("is_current")).drop_columns(
        ["valid_from", "valid_to", "valid_from_lsn", "valid_to_lsn", "is_current", "previous_key"]
    )
    assert (
        history.num_rows
        >= current.num_rows
        == visible_rows(str(tmp_path / "state"), "scan.feedback").num_rows
    )
    assert "lag over the last 2" in metas["current_state/scan/feedback"]["lag_history"].value


def test_bad_object_fails_only_its_tables_run_and_names_the_object(tmp_path):
    from orchestration.definitions import build_defs

    generate_lake(tmp_path / "lake", GeneratorOptions(events=2_000, seed=9, flush_size=300))
    feedback = LakeReader(str(tmp_path / "lake")).scan().objects["eco2.scan.feedback"]
    broken = feedback[len(feedback) // 2].key
    (tmp_path / "lake" / broken).write_bytes(b"PAR1 this is not parquet PAR1")
    defs = build_defs(resources_for(tmp_path))
    job = defs.resolve_job_def("compact_tables")
    instance = dg.DagsterInstance.ephemeral()
    outcomes = {}
    for table in TABLES:  # one run per table, as the lake sensor requests them
        result = job.execute_in_process(
            instance=instance, asset_selection=[table_key("current_state", table)], raise_on_error=False
        )
        outcomes[table] = result
    assert not outcomes["scan.feedback"].success
    failure = next(e for e in outcomes["scan.feedback"].all_events if e.is_step_failure)
    assert broken in failure.step_failure_data.error.message
    # a bad object fails the same way every time: not retried by the storage retry policy
    assert not any(e.event_type_value == "STEP_UP_FOR_RETRY" for e in outcomes["scan.feedback"].all_events)
    assert all(r.success for t, r in outcomes.items() if t != "scan.feedback")
    # nothing of the failed table was committed; the others hold their rows
    assert not (tmp_path / "state" / "scan.feedback").exists()
    assert visible_rows(str(tmp_path / "state"), "scan.scans").num_rows > 0


def test_a_failing_blocking_check_keeps_the_warehouse_from_loading(tmp_path, monkeypatch):
    """The gate itself: a state check that fails (here the TOAST detector is told it found leaks in
    scan.feedback — leaks cannot be produced from a correct lake) stops that table's warehouse load
    in the same run, and its database's (the warehouse reads a database at one consistent point),
    and the check's metadata names the column and the count."""
    import assets.state.current
    from orchestration.definitions import build_defs

    real = assets.state.current.placeholder_leaks
    monkeypatch.setattr(
        assets.state.current,
        "placeholder_leaks",
        lambda uri, table: {"comment": 3} if table == "scan.feedback" else real(uri, table),
    )
    generate_lake(tmp_path / "lake", GeneratorOptions(events=2_000, seed=10, flush_size=400))
    result = (
        build_defs(resources_for(tmp_path))
        .resolve_job_def("main")
        .execute_in_process(instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    )
    failed = [c for c in result.get_asset_check_evaluations() if not c.passed]
    assert [(c.asset_key.to_user_string(), c.check_name) for c in failed] == [
        ("current_state/scan/feedback", "no_toast_placeholder")
    ]
    assert (
        failed[0].metadata["leaked_values"].value == 3 and "comment: 3" in failed[0].metadata["columns"].value
    )
    loaded = {e.materialization.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "warehouse/scan/feedback" not in loaded
    # the scan database's consistent point cannot pass a table that failed its gate: its tables stay
    # where they were (their last consistent point); the other database goes on
    assert "consistent_state/eco2/transaction_scan" not in loaded and "warehouse/scan/scans" not in loaded
    assert "warehouse/auth/users" in loaded


def test_steps_touching_storage_carry_the_retry_policy_and_retry_only_transient_failures(
    tmp_path, monkeypatch
):
    """Dagster retries a compaction that failed on storage (the step is idempotent: it resumes from
    the last commit) and does not retry one that failed on its input."""
    import assets.state.current as state_assets
    from assets.raw import lake_inventory
    from assets.retries import STORAGE_RETRY, only_transient_failures_retried
    from assets.warehouse import build_warehouse_asset
    from lakehouse.lake.retry import StorageUnavailableError

    entry = next(t for t in load_config().tables if t.table == "scan.feedback")
    for node in (state_assets.build_state_asset(entry), build_warehouse_asset(entry), lake_inventory):
        assert node.op.retry_policy == STORAGE_RETRY, node.key
    generate_lake(tmp_path / "lake", GeneratorOptions(events=1_000, seed=9, flush_size=300))
    monkeypatch.setattr(state_assets, "STORAGE_RETRY", dg.RetryPolicy(max_retries=2, delay=0))
    real_compact, calls = state_assets.compact, []

    def flaky(*args, **kwargs):  # the storage stays away for the first attempt's whole budget
        calls.append(1)
        if len(calls) == 1:
            [r] = real_compact(*args, **kwargs)
            r.status, r.error, r.retryable = "failed", "scan.feedback: storage unavailable (injected)", True
            return [r]
        return real_compact(*args, **kwargs)

    monkeypatch.setattr(state_assets, "compact", flaky)
    result = dg.materialize(
        [state_assets.build_state_asset(entry)],
        resources=resources_for(tmp_path),
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success and len(calls) == 2
    assert visible_rows(str(tmp_path / "state"), "scan.feedback").num_rows > 0
    with pytest.raises(StorageUnavailableError), only_transient_failures_retried("x"):
        raise StorageUnavailableError("gone")
    with pytest.raises(dg.Failure) as failure, only_transient_failures_retried("loading t"):
        raise ValueError("bad schema")
    assert (
        not failure.value.allow_retries and "loading t: ValueError: bad schema" in failure.value.description
    )


def test_hourly_automation_moves_the_watermark_then_loads_only_the_changed_table():
    """Declarative automation after the hour: one table's state changed, so its database's
    consistent watermark moves and that table (and its history) loads; nothing else does."""
    import datetime as dt

    from assets.keys import table_key
    from orchestration.definitions import defs

    instance = dg.DagsterInstance.ephemeral()
    selection = dg.AssetSelection.groups("consistent_state", "warehouse")

    def evaluate(hour: int, minute: int, cursor=None):
        return dg.evaluate_automation_conditions(
            defs=defs,
            instance=instance,
            asset_selection=selection,
            cursor=cursor,
            evaluation_time=dt.datetime(2026, 12, 5, hour, minute, tzinfo=dt.UTC),
        )

    first = evaluate(10, 30)
    tick = evaluate(11, 1, first.cursor)
    assert first.total_requested == tick.total_requested == 0  # the hour passed, nothing changed
    instance.report_runless_asset_event(dg.AssetMaterialization(table_key("current_state", "scan.feedback")))
    after = evaluate(11, 5, tick.cursor)
    requested = {r.key.to_user_string() for r in after.results if r.true_subset.size}
    assert requested == {
        "consistent_state/eco2/transaction_scan",
        "warehouse/scan/feedback",
        "warehouse/scan/feedback_history",
    }
