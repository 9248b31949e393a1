"""Marts layer: the dbt project as assets (``dbt``), Great Expectations checks on the warehouse
tables and the marts (``quality``), the built-in report (``report``); the ``daily_marts`` job and
its schedule. ``defs`` is what this layer adds to the code location (the dbt CLI resource is
supplied by orchestration/definitions.py with the others)."""

import dagster as dg

from assets.marts.dbt import eco2_dbt
from assets.marts.quality import gx_checks
from assets.marts.report import marts_report

# it selects the layers the marts are built from: the day's consistent watermarks, the erasure of
# closed accounts and the warehouse loads run first, in the same run
daily_marts_job = dg.define_asset_job(
    "daily_marts",
    selection=dg.AssetSelection.groups("consistent_state", "privacy", "warehouse", "marts"),
    description="Consistent watermarks, account closures erased, warehouse tables up to date, then dbt (staging, "
    "intermediate, marts, tests), the GX checks, and the RLHF dataset export (a new version only when "
    "its rows changed; earlier versions holding closed accounts listed as superseded).",
)

marts_schedule = dg.ScheduleDefinition(
    name="daily_marts",
    job=daily_marts_job,
    cron_schedule="0 4 * * *",
    execution_timezone="UTC",
    description="04:00 UTC: marts, checks and the RLHF dataset export, after the night's upkeep.",
)

defs = dg.Definitions(
    assets=[eco2_dbt, marts_report],
    asset_checks=gx_checks,
    jobs=[daily_marts_job],
    schedules=[marts_schedule],
)
