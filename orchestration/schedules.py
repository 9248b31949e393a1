"""Schedules and declarative automation."""

from __future__ import annotations

import dagster as dg

from orchestration.jobs import daily

daily_schedule = dg.ScheduleDefinition(
    name="daily_upkeep", job=daily, cron_schedule="0 3 * * *", execution_timezone="UTC",
    description="03:00 UTC: state table maintenance (marts and dataset exports join with issue 7).")

# evaluates the warehouse assets' AutomationCondition (hourly, only tables whose state changed)
warehouse_automation = dg.AutomationConditionSensorDefinition(
    "warehouse_hourly", target=dg.AssetSelection.groups("warehouse"), minimum_interval_seconds=60,
    description="Hourly warehouse loads of the tables whose current state changed since the last hour.")
