"""The one place that decides where things live: local folders or S3, DuckDB or BigQuery.

    LAKEHOUSE_LAKE        lake root: a folder (default .data/lake) or s3://bucket/prefix
    LAKEHOUSE_STATE       current-state tables: a folder (default .data/state) or s3://...
    LAKEHOUSE_TABLES_CONFIG  tables config (default config/tables.yaml)
    LAKEHOUSE_ENGINE      what runs the fold: local (default, this process) | bigquery
      bigquery: the BigQuery settings below, LAKEHOUSE_BIGQUERY_ENGINE_DATASET (default
                lakehouse_engine: raw change tables, working tables)
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
    EngineResource,
    LakeResource,
    StateResource,
    WarehouseResource,
)
from lakehouse import settings

PSEUDONYM_KEY = "LAKEHOUSE_PSEUDONYM_KEY"
GCP_CREDENTIALS = "LAKEHOUSE_GCP_CREDENTIALS"


def _gcp_credentials():
    return dg.EnvVar(GCP_CREDENTIALS) if os.environ.get(GCP_CREDENTIALS) else None


def warehouse_resource() -> WarehouseResource:
    if settings.warehouse_kind() == "bigquery":
        return BigQueryWarehouseResource(
            project=settings.bigquery_project(),
            location=settings.bigquery_location(),
            gcp_credentials=_gcp_credentials(),
            dataset_prefix=settings.bigquery_dataset_prefix(),
            api_endpoint=settings.bigquery_endpoint(),
        )
    return DuckDBWarehouseResource(path=str(settings.warehouse_path()))


def engine_resource() -> EngineResource:
    if settings.engine_kind() == "bigquery":
        return EngineResource(
            kind="bigquery",
            project=settings.bigquery_project(),
            location=settings.bigquery_location(),
            gcp_credentials=_gcp_credentials(),
            api_endpoint=settings.bigquery_endpoint(),
            dataset=settings.bigquery_dataset_prefix() + settings.engine_dataset(),
        )
    return EngineResource(kind="local")


def resources() -> dict[str, dg.ConfigurableResource]:
    return {
        "lake": LakeResource(uri=settings.lake_uri()),
        "state": StateResource(
            uri=settings.state_uri(),
            tables_config=os.environ.get("LAKEHOUSE_TABLES_CONFIG"),
            pseudonym_key=dg.EnvVar(PSEUDONYM_KEY),
        ),
        "engine": engine_resource(),
        "warehouse": warehouse_resource(),
    }
