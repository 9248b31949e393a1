"""The fold engine the settings choose (``LAKEHOUSE_ENGINE``, lakehouse.settings)."""

from __future__ import annotations

from lakehouse import settings
from lakehouse.state.engine import FoldEngine, LocalEngine


def open_engine(kind: str | None = None) -> FoldEngine:
    """``kind`` (default: the setting): local, or bigquery on the LAKEHOUSE_BIGQUERY_* settings."""
    kind = (kind or settings.get_settings().engine).strip().lower()
    if kind == "local":
        return LocalEngine()
    if kind != "bigquery":
        raise ValueError(f"engine {kind!r}: expected one of {', '.join(settings.ENGINE_KINDS)}")
    return bigquery_engine(
        settings.get_settings().bigquery_project,
        settings.get_settings().bigquery_location,
        settings.get_settings().bigquery_endpoint,
        settings.get_settings().engine_dataset,
    )


def bigquery_engine(
    project: str | None, location: str | None, endpoint: str | None, dataset: str
) -> FoldEngine:
    """The BigQuery engine on ``project`` (default: the credentials'), its tables in ``dataset``."""
    from lakehouse.warehouse.bigquery_fold import BigQueryEngine
    from lakehouse.warehouse.bigquery_warehouse import bigquery_client

    client = bigquery_client(project, location, endpoint)
    if not client.project:
        raise ValueError("the bigquery engine needs a project: set LAKEHOUSE_BIGQUERY_PROJECT")
    return BigQueryEngine(client, f"{client.project}.{dataset}", location)
