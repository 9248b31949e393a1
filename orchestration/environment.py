"""The one place that decides where things live: local folders or S3, DuckDB or BigQuery.

    LAKEHOUSE_LAKE        lake root: a folder (default .data/lake) or s3://bucket/prefix
    LAKEHOUSE_STATE       current-state tables: a folder (default .data/state) or s3://...
    LAKEHOUSE_WAREHOUSE   duckdb (default; file LAKEHOUSE_DUCKDB, default .data/warehouse.duckdb)
    LAKEHOUSE_TABLES_CONFIG  tables config (default config/tables.yaml)

Secrets are never in config: the pseudonymisation key reaches the code as ``dg.EnvVar``;
S3 uses the standard AWS credential chain (AWS_* variables, profiles, instance or pod roles).
"""

from __future__ import annotations

import os

import dagster as dg

from assets.resources import DuckDBWarehouseResource, LakeResource, StateResource
from lakehouse import settings

PSEUDONYM_KEY = "LAKEHOUSE_PSEUDONYM_KEY"
WAREHOUSES = ("duckdb",)  # BigQuery joins with issue 6


def warehouse_kind() -> str:
    kind = os.environ.get("LAKEHOUSE_WAREHOUSE", "duckdb").strip().lower()
    if kind not in WAREHOUSES:
        raise ValueError(f"LAKEHOUSE_WAREHOUSE={kind!r}: expected one of {', '.join(WAREHOUSES)}")
    return kind


def resources() -> dict[str, dg.ConfigurableResource]:
    warehouse_kind()
    return {
        "lake": LakeResource(uri=settings.lake_uri()),
        "state": StateResource(uri=settings.state_uri(), tables_config=os.environ.get("LAKEHOUSE_TABLES_CONFIG"),
                               pseudonym_key=dg.EnvVar(PSEUDONYM_KEY)),
        "warehouse": DuckDBWarehouseResource(path=str(settings.warehouse_path())),
    }
