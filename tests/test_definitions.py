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
