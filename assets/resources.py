"""Dagster resources: where the lake, the current-state tables and the warehouse live.

Which concrete places (local folders or S3, DuckDB or BigQuery) is decided in one place:
``orchestration/environment.py``. Secrets reach code only through ``dg.EnvVar`` there."""

from __future__ import annotations

import dagster as dg

from lakehouse import settings
from lakehouse.config import TablesConfig, load_config
from lakehouse.lake.reader import LakeReader
from lakehouse.lake.store import ObjectStore, open_store
from lakehouse.warehouse.duckdb_warehouse import DuckDBWarehouse


class LakeResource(dg.ConfigurableResource):
    """The raw lake the S3 sink writes: a local folder or ``s3://bucket/prefix``.

    S3 goes through boto3 with the standard AWS credential chain (environment, profile, instance
    or pod role); ``AWS_ENDPOINT_URL`` points it at MinIO or another S3-compatible store."""

    uri: str = settings.lake_uri()

    def store(self) -> ObjectStore:
        return open_store(self.uri)

    def reader(self) -> LakeReader:
        return LakeReader(self.uri)


class StateResource(dg.ConfigurableResource):
    """Where current-state tables live (folder or ``s3://``), and the tables config that defines them."""

    uri: str = settings.state_uri()
    tables_config: str | None = None  # default: $LAKEHOUSE_TABLES_CONFIG or config/tables.yaml
    pseudonym_key: str | None = None  # HMAC key for pseudonymised columns: pass dg.EnvVar(...)

    def config(self) -> TablesConfig:
        return load_config(self.tables_config)


class DuckDBWarehouseResource(dg.ConfigurableResource):
    """The embedded warehouse: one DuckDB file (default under the local data folder)."""

    path: str = str(settings.warehouse_path())

    def warehouse(self) -> DuckDBWarehouse:
        return DuckDBWarehouse(self.path)
