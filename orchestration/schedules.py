"""Schedules and declarative automation."""

from __future__ import annotations

import dagster as dg

from orchestration.jobs import daily_marts_job, maintain_state

maintenance_schedule = dg.ScheduleDefinition(
    name="daily_upkeep",
    job=maintain_state,
    cron_schedule="0 3 * * *",
    execution_timezone="UTC",
    description="03:00 UTC: current-state table maintenance.",
)

marts_schedule = dg.ScheduleDefinition(
    name="daily_marts",
    job=daily_marts_job,
    cron_schedule="0 4 * * *",
    execution_timezone="UTC",
    description="04:00 UTC: marts, checks and the RLHF dataset export, after the night's upkeep.",
)

# evaluates the warehouse assets' AutomationCondition (hourly, only tables whose state changed)
warehouse_automation = dg.AutomationConditionSensorDefinition(
    "warehouse_hourly",
    target=dg.AssetSelection.groups("consistent_state", "warehouse"),
    minimum_interval_seconds=60,
    description="Hourly: each database's consistent watermark, then warehouse loads of the tables whose state changed.",
)
