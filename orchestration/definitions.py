"""Root definitions: each layer's ``defs`` (assets/: raw, state, warehouse, marts, datasets,
dashboards: their assets, checks, jobs, sensors and schedules), the jobs spanning every layer, and
the resources. Nothing else."""

from __future__ import annotations

import dagster as dg

from assets import dashboards, datasets, marts, raw, state, warehouse
from assets.marts.dbt import dbt_resource
from orchestration import environment
from orchestration.jobs import main_job

LAYERS = (raw.defs, state.defs, warehouse.defs, marts.defs, datasets.defs, dashboards.defs)


def build_defs(resources: dict | None = None) -> dg.Definitions:
    """The code location; ``resources`` replaces the environment's (tests point them at temp dirs)."""
    return dg.Definitions.merge(
        *LAYERS,
        dg.Definitions(
            jobs=[main_job],
            resources={
                "dbt": dbt_resource(),
                **(resources if resources is not None else environment.resources()),
            },
        ),
    )


defs = build_defs()
