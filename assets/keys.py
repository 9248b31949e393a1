"""Asset keys per layer, derived from the tables config (one place, so layers line up)."""

from __future__ import annotations

import dagster as dg

from lakehouse.config import TableConfig, load_config

LAYERS = ("raw", "current_state", "warehouse", "marts")


def table_key(layer: str, table: str) -> dg.AssetKey:
    schema, name = table.split(".", 1)
    return dg.AssetKey([layer, schema, name])


def configured_tables() -> tuple[TableConfig, ...]:
    """The tables config the definitions are generated from (read once, at load)."""
    return load_config().tables
