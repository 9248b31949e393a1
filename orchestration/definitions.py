"""Root definitions: assembled from small modules per concern, nothing else."""

from __future__ import annotations

import dagster as dg

from assets import lake as lake_assets
from assets import state as state_assets
from assets.resources import LakeResource, StateResource

main_job = dg.define_asset_job("main", selection=dg.AssetSelection.all(),
                               description="Everything, once: the job `make demo` runs.")

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([lake_assets, state_assets]),
    jobs=[main_job],
    resources={"lake": LakeResource(), "state": StateResource()},
)
