"""Asset keys per layer, derived from the tables config (one place, so layers line up), and the
tables config itself: read once per file, by the graph and by the runs alike."""

from __future__ import annotations

import functools
from pathlib import Path

import dagster as dg

from lakehouse.config import TableConfig, TablesConfig, config_path, load_config

LAYERS = ("raw", "current_state", "warehouse", "marts")


def table_key(layer: str, table: str) -> dg.AssetKey:
    schema, name = table.split(".", 1)
    return dg.AssetKey([layer, schema, name])


@functools.cache
def _read(path: Path) -> TablesConfig:
    return load_config(path)


def tables_config(path: str | Path | None = None) -> TablesConfig:
    """The tables config at ``path`` (default: ``LAKEHOUSE_TABLES_CONFIG``, else config/tables.yaml),
    read once per file and process: the definitions are generated from it and the runs
    (``StateResource.config()``) use the same object, so a run never sees tables its graph lacks.
    A changed file takes effect when the code location reloads (a new process)."""
    return _read(Path(path if path is not None else config_path()).resolve())


def configured_tables() -> tuple[TableConfig, ...]:
    """The tables the definitions are generated from."""
    return tables_config().tables
