"""Dagster resources shared by the assets."""

from __future__ import annotations

import dagster as dg

from lakehouse import settings
from lakehouse.lake.reader import LakeReader


class LakeResource(dg.ConfigurableResource):
    """The raw lake the S3 sink writes: a local folder or s3://bucket/prefix.

    S3 credentials come from the standard AWS environment (never from config)."""

    uri: str = settings.lake_uri()

    def reader(self) -> LakeReader:
        return LakeReader(self.uri)
