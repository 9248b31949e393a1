"""The one place that decides where things live: local folders or S3, DuckDB or BigQuery.

    LAKEHOUSE_LAKE        lake root: a folder (default .data/lake) or s3://bucket/prefix
    LAKEHOUSE_STATE       current-state tables: a folder (default .data/state) or s3://...
    LAKEHOUSE_TABLES_CONFIG  tables config (default config/tables.yaml)
    LAKEHOUSE_WAREHOUSE   duckdb (default) | bigquery
      duckdb:   LAKEHOUSE_DUCKDB (default .data/warehouse.duckdb)
      bigquery: LAKEHOUSE_BIGQUERY_PROJECT, LAKEHOUSE_BIGQUERY_LOCATION (default US),
                LAKEHOUSE_BIGQUERY_DATASET_PREFIX (default none: datasets auth, scan),
                LAKEHOUSE_GCP_CREDENTIALS (base64 service-account key; unset: Google's default
                credentials, e.g. workload identity), LAKEHOUSE_BIGQUERY_ENDPOINT (an emulator)

Secrets are never in config: the pseudonymisation key and the GCP key reach the code as
``dg.EnvVar``; S3 uses the standard AWS credential chain (AWS_* variables, profiles, roles).
"""

from __future__ import annotations

import os

import dagster as dg

from assets.resources import (
    BigQueryWarehouseResource,
    DuckDBWarehouseResource,
    LakeResource,
    StateResource,
    WarehouseResource,
)
from lakehouse import settings

PSEUDONYM_KEY = "LAKEHOUSE_PSEUDONYM_KEY"
GCP_CREDENTIALS = "LAKEHOUSE_GCP_CREDENTIALS"


def warehouse_resource() -> WarehouseResource:
    if settings.warehouse_kind() == "bigquery":
        return BigQueryWarehouseResource(
            project=os.environ.get("LAKEHOUSE_BIGQUERY_PROJECT"),
            location=os.environ.get("LAKEHOUSE_BIGQUERY_LOCATION", "US"),
            gcp_credentials=dg.EnvVar(GCP_CREDENTIALS) if os.environ.get(GCP_CREDENTIALS) else None,
            dataset_prefix=os.environ.get("LAKEHOUSE_BIGQUERY_DATASET_PREFIX", ""),
            api_endpoint=os.environ.get("LAKEHOUSE_BIGQUERY_ENDPOINT") or None)
    return DuckDBWarehouseResource(path=str(settings.warehouse_path()))


def resources() -> dict[str, dg.ConfigurableResource]:
    return {
        "lake": LakeResource(uri=settings.lake_uri()),
        "state": StateResource(uri=settings.state_uri(), tables_config=os.environ.get("LAKEHOUSE_TABLES_CONFIG"),
                               pseudonym_key=dg.EnvVar(PSEUDONYM_KEY)),
        "warehouse": warehouse_resource(),
    }
