"""Dagster resources shared by the assets."""

from __future__ import annotations

import dagster as dg

from lakehouse import settings
from lakehouse.config import TablesConfig, load_config
from lakehouse.lake.reader import LakeReader


class LakeResource(dg.ConfigurableResource):
    """The raw lake the S3 sink writes: a local folder or s3://bucket/prefix.

    S3 credentials come from the standard AWS environment (never from config)."""

    uri: str = settings.lake_uri()

    def reader(self) -> LakeReader:
        return LakeReader(self.uri)


class StateResource(dg.ConfigurableResource):
    """Where current-state tables live (folder or s3://), and the tables config that defines them.

    Pseudonymised columns need ``LAKEHOUSE_PSEUDONYM_KEY`` in the environment (never in config)."""

    uri: str = settings.state_uri()
    tables_config: str | None = None  # default: $LAKEHOUSE_TABLES_CONFIG or config/tables.yaml

    def config(self) -> TablesConfig:
        return load_config(self.tables_config)
