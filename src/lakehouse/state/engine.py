"""Which engine runs the fold: ``local`` (in this process, the default) or ``bigquery``.

Compaction does the same bookkeeping on both (what is pending, re-deliveries, schema timeline,
clusters, the atomic Delta commit with the record of applied objects); the engine only turns a
batch of change events plus the state rows of the keys they touch into each key's new state.
Both implement the rules of :mod:`lakehouse.state.fold`; the property tests hold them together.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import pyarrow as pa

from lakehouse.state.fold import FoldResult, Truncate, fold


@dataclass
class EngineStats:
    """What a table's folds cost on the engine (BigQuery: bytes its jobs processed)."""

    folds: int = 0
    bytes_processed: int | None = None  # from the jobs' statistics; None: not reported (local, the emulator)
    input_bytes: int = 0  # logical bytes of the folds' inputs (skeleton of events and prior rows)


class FoldEngine(Protocol):
    @property
    def kind(self) -> str:
        """The engine's name (``local``, ``bigquery``); read-only."""

    def fold(
        self,
        table: str,
        events: pa.Table,
        prior: pa.Table | None,
        key: tuple[str, ...],
        row_fields: list[pa.Field],
        truncates: list[Truncate],
        pairing: pa.Table | None,
        keep_images: bool,
        stats: EngineStats,
    ) -> FoldResult:
        """:func:`lakehouse.state.fold.fold` for one batch of ``table`` (schema.table)."""


@dataclass(frozen=True)
class LocalEngine:
    """The fold in this process (numpy / Arrow / Polars): fastest on one machine (docs/fold-sql.md)."""

    kind: str = field(default="local", init=False)

    def fold(
        self,
        table: str,
        events: pa.Table,
        prior: pa.Table | None,
        key: tuple[str, ...],
        row_fields: list[pa.Field],
        truncates: list[Truncate],
        pairing: pa.Table | None,
        keep_images: bool,
        stats: EngineStats,
    ) -> FoldResult:
        stats.folds += 1
        return fold(events, prior, key, row_fields, truncates, pairing, keep_images=keep_images)
