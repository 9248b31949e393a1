"""Root definitions: assembled from small modules per concern, nothing else."""

from __future__ import annotations

import dagster as dg

from assets.consistent import consistent_assets, consistent_checks
from assets.dashboards import DASHBOARDS
from assets.datasets import rlhf_golden_dataset
from assets.erasure import account_erasure, nothing_of_closed_accounts_left
from assets.lake import lake_inventory, raw_topics
from assets.marts import dbt_resource, eco2_dbt
from assets.quality import gx_checks
from assets.report import marts_report
from assets.state import state_assets, state_checks
from assets.warehouse import warehouse_assets, warehouse_checks
from orchestration import environment, jobs
from orchestration.schedules import maintenance_schedule, marts_schedule, warehouse_automation
from orchestration.sensors import lake_sensor


def build_defs(resources: dict | None = None) -> dg.Definitions:
    """The code location; ``resources`` replaces the environment's (tests point them at temp dirs)."""
    return dg.Definitions(
        assets=[
            raw_topics,
            lake_inventory,
            *state_assets,
            *consistent_assets,
            account_erasure,
            *warehouse_assets,
            eco2_dbt,
            rlhf_golden_dataset,
            marts_report,
            *DASHBOARDS,
        ],
        asset_checks=[
            *state_checks,
            *consistent_checks,
            nothing_of_closed_accounts_left,
            *warehouse_checks,
            *gx_checks,
        ],
        jobs=jobs.ALL,
        sensors=[lake_sensor, warehouse_automation],
        schedules=[maintenance_schedule, marts_schedule],
        resources={
            "dbt": dbt_resource(),
            **(resources if resources is not None else environment.resources()),
        },
    )


defs = build_defs()
