"""The Dagster code location loads and its main job runs on a real lake."""

from __future__ import annotations

import dagster as dg
from sample_lake import write_sample_lake

from assets.resources import LakeResource
from lakehouse.lake.store import LocalStore


def test_definitions_load_with_main_job():
    from orchestration.definitions import defs

    assert defs.resolve_job_def("main") is not None
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert "lake_inventory" in keys


def test_lake_inventory_materializes_with_counts(tmp_path):
    from assets.lake import lake_inventory

    write_sample_lake(LocalStore(tmp_path))
    result = dg.materialize([lake_inventory], resources={"lake": LakeResource(uri=str(tmp_path))},
                            instance=dg.DagsterInstance.ephemeral())
    assert result.success
    meta = result.asset_materializations_for_node("lake_inventory")[0].metadata
    assert meta["topics"].value == 4
    assert meta["events"].value == 28  # 31 sample events minus 3 tombstones
    assert meta["problems"].value == 0


def test_current_state_assets_materialize_per_table(tmp_path, monkeypatch):
    from assets.resources import StateResource
    from assets.state import current_state
    from lakehouse.generate import GeneratorOptions, generate_lake

    monkeypatch.setenv("LAKEHOUSE_PSEUDONYM_KEY", "test")
    generate_lake(tmp_path / "lake", GeneratorOptions(events=3_000, seed=2))
    resources = {"lake": LakeResource(uri=str(tmp_path / "lake")), "state": StateResource(uri=str(tmp_path / "state"))}
    selection = [dg.AssetKey(["current_state", "scan", "feedback"]), dg.AssetKey(["current_state", "auth", "users"])]
    result = dg.materialize([current_state], resources=resources, selection=selection,
                            instance=dg.DagsterInstance.ephemeral())
    assert result.success
    mats = {e.materialization.asset_key.to_user_string(): e.materialization.metadata
            for e in result.get_asset_materialization_events()}
    assert set(mats) == {"current_state/scan/feedback", "current_state/auth/users"}  # only the selection
    assert mats["current_state/scan/feedback"]["rows"].value > 0
    assert mats["current_state/scan/feedback"]["status"].value == "applied"
    # run again: nothing new
    again = dg.materialize([current_state], resources=resources, selection=selection,
                           instance=dg.DagsterInstance.ephemeral())
    statuses = {e.materialization.metadata["status"].value for e in again.get_asset_materialization_events()}
    assert statuses == {"up-to-date"}
