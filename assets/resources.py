"""Dagster resources: where the lake, the current-state tables and the warehouse live.

Which concrete places (local folders or S3, DuckDB or BigQuery) is decided in one place:
``orchestration/environment.py``. Secrets reach code only through ``dg.EnvVar`` there."""

from __future__ import annotations

import dagster as dg
from dagster_gcp import BigQueryResource

from assets import keys
from lakehouse import settings
from lakehouse.config import TablesConfig
from lakehouse.lake.reader import LakeReader
from lakehouse.lake.store import ObjectStore, open_store
from lakehouse.state.engine import FoldEngine, LocalEngine
from lakehouse.warehouse import Warehouse
from lakehouse.warehouse.bigquery_warehouse import BigQueryWarehouse, bigquery_client
from lakehouse.warehouse.duckdb_warehouse import DuckDBWarehouse
from lakehouse.warehouse.engines import bigquery_engine


class LakeResource(dg.ConfigurableResource):
    """The raw lake the S3 sink writes: a local folder or ``s3://bucket/prefix``.

    S3 goes through boto3 with the standard AWS credential chain (environment, profile, instance
    or pod role); ``AWS_ENDPOINT_URL`` points it at MinIO or another S3-compatible store."""

    uri: str = settings.get_settings().lake

    def store(self) -> ObjectStore:
        return open_store(self.uri)

    def reader(self) -> LakeReader:
        return LakeReader(self.uri)


class StateResource(dg.ConfigurableResource):
    """Where current-state tables live (folder or ``s3://``), and the tables config that defines them."""

    uri: str = settings.get_settings().state
    tables_config: str | None = None  # default: $LAKEHOUSE_TABLES_CONFIG or config/tables.yaml
    pseudonym_key: str | None = None  # HMAC key for pseudonymised columns: pass dg.EnvVar(...)

    def config(self) -> TablesConfig:
        """The tables config: the object the definitions were generated from when it is the same
        file (``assets.keys.tables_config``, read once per file)."""
        return keys.tables_config(self.tables_config)


class EngineResource(dg.ConfigurableResource):
    """What runs the fold of compaction: ``local`` (this process) or ``bigquery`` (the BigQuery
    connection fields below; credentials: Google's Application Default Credentials)."""

    kind: str = "local"
    project: str | None = None
    location: str | None = "US"
    api_endpoint: str | None = None
    dataset: str = "lakehouse_engine"  # raw change tables and working tables

    def engine(self) -> FoldEngine:
        if self.kind == "local":
            return LocalEngine()
        return bigquery_engine(self.project, self.location, self.api_endpoint, self.dataset)


class DuckDBWarehouseResource(dg.ConfigurableResource):
    """The embedded warehouse: one DuckDB file (default under the local data folder)."""

    path: str = str(settings.get_settings().duckdb_path)

    def warehouse(self) -> DuckDBWarehouse:
        return DuckDBWarehouse(self.path)

    def create_resource(self, context: dg.InitResourceContext) -> Warehouse:  # type: ignore[override]
        """Assets and checks get the warehouse itself (``dg.ResourceParam[Warehouse]``)."""
        return self.warehouse()


class BigQueryWarehouseResource(BigQueryResource):
    """BigQuery through dagster-gcp's resource (``project``, ``location``). Credentials are Google's
    Application Default Credentials only (``GOOGLE_APPLICATION_CREDENTIALS``, workload identity, the
    metadata server), the same for the loads, the checks and dbt; dagster-gcp's ``gcp_credentials``
    (a key in config) is refused.

    ``api_endpoint`` points the client at an emulator (anonymous credentials), for local use.
    Assets get the warehouse itself (``create_resource``), not dagster-gcp's client."""

    dataset_prefix: str = ""  # dataset = prefix + source schema (auth, scan)
    meta_dataset: str = "lakehouse_meta"  # load records and staging tables
    api_endpoint: str | None = None

    def warehouse(self) -> BigQueryWarehouse:
        if self.gcp_credentials:
            raise ValueError(
                "gcp_credentials is not read: BigQuery uses Google's Application Default Credentials "
                "(GOOGLE_APPLICATION_CREDENTIALS, workload identity) for loads, checks and dbt alike"
            )
        client = bigquery_client(self.project, self.location, self.api_endpoint)
        if not client.project:
            raise ValueError(
                "BigQuery needs a project: set LAKEHOUSE_BIGQUERY_PROJECT or GOOGLE_CLOUD_PROJECT"
            )
        return BigQueryWarehouse(
            lambda: client,
            client.project,
            dataset_prefix=self.dataset_prefix,
            meta_dataset=self.meta_dataset,
            location=self.location,
            endpoint=self.api_endpoint,
        )

    def create_resource(self, context: dg.InitResourceContext) -> Warehouse:  # type: ignore[override]
        return self.warehouse()


# what orchestration/environment.py picks from; assets take the warehouse itself as
# ``warehouse: dg.ResourceParam[Warehouse]`` (lakehouse.warehouse.base: the one interface)
WarehouseResource = DuckDBWarehouseResource | BigQueryWarehouseResource
