"""The one place that decides where things live: local folders or S3, DuckDB or BigQuery, from
the typed settings (``lakehouse.settings.get_settings()``; every variable and default is there):

    LAKEHOUSE_LAKE        lake root: a folder (default .data/lake) or s3://bucket/prefix
    LAKEHOUSE_STATE       current-state tables: a folder (default .data/state) or s3://...
    LAKEHOUSE_TABLES_CONFIG  tables config (default config/tables.yaml)
    LAKEHOUSE_ENGINE      what runs the fold: local (default, this process) | bigquery
      bigquery: the BigQuery settings below, LAKEHOUSE_BIGQUERY_ENGINE_DATASET (default
                lakehouse_engine: raw change tables, working tables)
    LAKEHOUSE_WAREHOUSE   duckdb (default) | bigquery
      duckdb:   LAKEHOUSE_DUCKDB (default .data/warehouse.duckdb)
      bigquery: LAKEHOUSE_BIGQUERY_PROJECT (else GOOGLE_CLOUD_PROJECT, else the credentials'),
                LAKEHOUSE_BIGQUERY_LOCATION (default US), LAKEHOUSE_BIGQUERY_DATASET_PREFIX
                (default none: datasets auth, scan), LAKEHOUSE_BIGQUERY_ENDPOINT (an emulator)

Secrets are never in config: the pseudonymisation key reaches the code as ``dg.EnvVar``; BigQuery
uses Google's Application Default Credentials (GOOGLE_APPLICATION_CREDENTIALS, workload identity) and
S3 the standard AWS credential chain (AWS_* variables, profiles, roles).
"""

from __future__ import annotations

import dagster as dg

from assets.resources import (
    BigQueryWarehouseResource,
    DuckDBWarehouseResource,
    EngineResource,
    LakeResource,
    StateResource,
    WarehouseResource,
)
from lakehouse.settings import (
    DEFAULT_TABLES_CONFIG,
    PSEUDONYM_KEY_ENV,
    get_settings,
)


def warehouse_resource() -> WarehouseResource:
    s = get_settings()
    if s.warehouse == "bigquery":
        return BigQueryWarehouseResource(
            project=s.bigquery_project,
            location=s.bigquery_location,
            dataset_prefix=s.bigquery_dataset_prefix,
            api_endpoint=s.bigquery_endpoint,
        )
    return DuckDBWarehouseResource(path=str(s.duckdb_path))


def engine_resource() -> EngineResource:
    s = get_settings()
    if s.engine == "bigquery":
        return EngineResource(
            kind="bigquery",
            project=s.bigquery_project,
            location=s.bigquery_location,
            api_endpoint=s.bigquery_endpoint,
            dataset=s.engine_dataset,
        )
    return EngineResource(kind="local")


def state_resource(pseudonym_key: str | None = None) -> StateResource:
    """The state resource; the key as ``dg.EnvVar`` unless given (``make demo`` passes its own)."""
    s = get_settings()
    return StateResource(
        uri=s.state,
        # None: the default, resolved by the resource itself
        tables_config=None if s.tables_config == DEFAULT_TABLES_CONFIG else str(s.tables_config),
        pseudonym_key=pseudonym_key if pseudonym_key is not None else dg.EnvVar(PSEUDONYM_KEY_ENV),
    )


def resources() -> dict[str, dg.ConfigurableResource]:
    return {
        "lake": LakeResource(uri=get_settings().lake),
        "state": state_resource(),
        "engine": engine_resource(),
        "warehouse": warehouse_resource(),
    }
