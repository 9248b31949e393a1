"""Jobs that span every layer (each layer's own jobs are in its module under assets/)."""

import dagster as dg

main_job = dg.define_asset_job(
    "main",
    selection=dg.AssetSelection.all(),
    description="Everything, once: raw observations, current state, warehouse, checks (what `make demo` runs).",
)
