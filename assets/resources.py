"""Dagster resources: where the lake, the current-state tables and the warehouse live.

Which concrete places (local folders or S3, DuckDB or BigQuery) is decided in one place:
``orchestration/environment.py``. Secrets reach code only through ``dg.EnvVar`` there."""

from __future__ import annotations

import abc
from pathlib import Path
from typing import ClassVar

import dagster as dg
from dagster_gcp import BigQueryResource

from lakehouse import settings
from lakehouse.config import TablesConfig, load_config
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


class EngineResource(dg.ConfigurableResource):
    """What runs the fold of compaction: ``local`` (this process) or ``bigquery`` (the BigQuery
    connection fields below; ``gcp_credentials`` as ``dg.EnvVar``, unset: default credentials)."""

    kind: str = "local"
    project: str | None = None
    location: str | None = "US"
    gcp_credentials: str | None = None
    api_endpoint: str | None = None
    dataset: str = "lakehouse_engine"  # raw change tables and working tables

    def engine(self) -> FoldEngine:
        if self.kind == "local":
            return LocalEngine()
        return bigquery_engine(
            self.project, self.location, self.gcp_credentials, self.api_endpoint, self.dataset
        )


class WarehouseResource(dg.ConfigurableResource, abc.ABC):
    """Where the warehouse tables live; ``orchestration/environment.py`` picks the kind."""

    kind: ClassVar[str] = ""

    @abc.abstractmethod
    def warehouse(self) -> Warehouse:
        """The warehouse client (loads, reads, checks)."""

    @abc.abstractmethod
    def table_name(self, table: str) -> str:
        """The table's fully qualified name, for ``dagster/table_name``."""

    @abc.abstractmethod
    def dbt_env(self) -> dict[str, str]:
        """Environment for the dbt CLI: the target and where it writes (see dbt_project/profiles.yml)."""

    @abc.abstractmethod
    def dbt_relation(self, schema: str, name: str) -> str:
        """A dbt model's relation, as ``read`` takes it (dbt schema = target schema + _ + custom)."""


class DuckDBWarehouseResource(WarehouseResource):
    """The embedded warehouse: one DuckDB file (default under the local data folder)."""

    kind: ClassVar[str] = "duckdb"
    path: str = str(settings.warehouse_path())

    def warehouse(self) -> DuckDBWarehouse:
        return DuckDBWarehouse(self.path)

    def table_name(self, table: str) -> str:
        return f"{Path(self.path).stem}.{table}"

    def dbt_env(self) -> dict[str, str]:
        return {"LAKEHOUSE_DBT_TARGET": "duckdb", "LAKEHOUSE_DUCKDB": str(Path(self.path).resolve())}

    def dbt_relation(self, schema: str, name: str) -> str:
        return f"main_{schema}.{name}"


class BigQueryWarehouseResource(BigQueryResource, WarehouseResource):
    """BigQuery through dagster-gcp's resource (``project``, ``location``, ``gcp_credentials``: a
    base64 service-account key passed as ``dg.EnvVar``; without it, Google's default credentials:
    workload identity, the metadata server or ``GOOGLE_APPLICATION_CREDENTIALS``).

    ``api_endpoint`` points the client at an emulator (anonymous credentials), for local use."""

    kind: ClassVar[str] = "bigquery"
    dataset_prefix: str = ""  # dataset = prefix + source schema (auth, scan)
    meta_dataset: str = "lakehouse_meta"  # load records and staging tables
    api_endpoint: str | None = None

    def _client(self):
        return bigquery_client(self.project, self.location, self.gcp_credentials, self.api_endpoint)

    def warehouse(self) -> BigQueryWarehouse:
        if not self.project and not self.gcp_credentials:
            raise ValueError("BigQuery needs a project: set LAKEHOUSE_BIGQUERY_PROJECT")
        return BigQueryWarehouse(
            self._client,
            self.project or "",
            dataset_prefix=self.dataset_prefix,
            meta_dataset=self.meta_dataset,
            location=self.location,
        )

    def table_name(self, table: str) -> str:
        schema, name = table.split(".", 1)
        return f"{self.project}.{self.dataset_prefix}{schema}.{name}"

    def dbt_env(self) -> dict[str, str]:
        env = {
            "LAKEHOUSE_DBT_TARGET": "bigquery_emulator" if self.api_endpoint else "bigquery",
            "LAKEHOUSE_BIGQUERY_PROJECT": self.project or "",
            "LAKEHOUSE_BIGQUERY_DATASET_PREFIX": self.dataset_prefix,
            "LAKEHOUSE_BIGQUERY_LOCATION": self.location or "US",
        }
        if self.api_endpoint:
            env["LAKEHOUSE_BIGQUERY_ENDPOINT"] = self.api_endpoint
        return env

    def dbt_relation(self, schema: str, name: str) -> str:
        return f"marts_{schema}.{name}"  # the dataset prefix is added by the warehouse
