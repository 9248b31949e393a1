"""Data-quality checks on current-state and warehouse tables (plain functions; Dagster wires them
up as asset checks). Each returns counts and a few sample values, never whole rows: samples are
keys, and secret columns are never read."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import pyarrow.compute as pc

from lakehouse.config import ColumnPolicy, TableConfig
from lakehouse.lake.reader import LakeReader
from lakehouse.state.fold import placeholders
from lakehouse.state.table import StateTable
from lakehouse.state.types import to_logical

VISIBLE = pc.field("__deleted") == False  # noqa: E712  (an expression)


@dataclass
class KeyCheck:
    duplicate_keys: int = 0
    null_keys: int = 0
    samples: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.duplicate_keys == 0 and self.null_keys == 0


def _loaded(state_uri: str, table: str) -> StateTable:
    st = StateTable(state_uri, table)
    st.require()
    return st


def state_keys(state_uri: str, table: str) -> KeyCheck:
    """Visible rows: every primary key present and held by one row only."""
    st = _loaded(state_uri, table)
    assert st.meta is not None
    key = list(st.meta.key)
    keys = pl.from_arrow(to_logical(st.dataset().to_table(filter=VISIBLE, columns=key), st.meta.row_schema))
    assert isinstance(keys, pl.DataFrame)
    nulls = keys.filter(pl.any_horizontal(pl.all().is_null())).height
    dups = keys.group_by(key).len().filter(pl.col("len") > 1)
    return KeyCheck(dups.height, nulls, [str(r) for r in dups.drop("len").head(5).rows()])


def placeholder_leaks(state_uri: str, table: str) -> dict[str, int]:
    """Visible values that are still Debezium's unchanged-TOAST placeholder, per column."""
    st = _loaded(state_uri, table)
    assert st.meta is not None
    leaks: dict[str, int] = {}
    for f in st.meta.row_schema:  # one column at a time: memory stays at one column
        col = to_logical(st.dataset().to_table(filter=VISIBLE, columns=[f.name]), st.meta.row_schema).column(
            0
        )
        hit = placeholders(col, np.zeros(len(col), np.int8))
        if hit is not None and hit.any():
            leaks[f.name] = int(hit.sum())
    return leaks


@dataclass
class Unapplied:
    objects: int
    oldest_key: str | None
    oldest_age_seconds: float  # 0 when nothing waits


def unapplied_objects(
    reader: LakeReader, state_uri: str, entry: TableConfig, now: float | None = None
) -> Unapplied:
    """Objects of the table's topic that no commit of its current-state table has applied yet."""
    now = time.time() if now is None else now
    objects = reader.scan(entry.topic).objects.get(entry.topic, [])
    st = StateTable(state_uri, entry.table)
    applied = set(st.applied().column("key").to_pylist()) if st.load() is not None else set()
    waiting = [o for o in objects if o.key not in applied]
    if not waiting:
        return Unapplied(0, None, 0.0)
    oldest = min(waiting, key=lambda o: o.modified or now)
    return Unapplied(len(waiting), oldest.key, max(0.0, now - (oldest.modified or now)))


def secret_columns(columns: list[str], entry: TableConfig) -> list[str]:
    """Columns the personal-data policy says must never leave the raw lake, found in ``columns``."""
    dropped = {c for c, p in entry.columns.items() if p == ColumnPolicy.drop}
    return sorted(c for c in columns if c in dropped)


def pseudonymised_columns(entry: TableConfig) -> list[str]:
    return sorted(c for c, p in entry.columns.items() if p == ColumnPolicy.pseudonymise)
