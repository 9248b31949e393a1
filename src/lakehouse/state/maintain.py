"""Maintenance of current-state tables: merge small files, vacuum unreferenced ones."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from deltalake.exceptions import CommitFailedError
from deltalake.transaction import CommitProperties

from lakehouse.state.table import META_KEY, ConcurrentWriteError, StateMeta, StateTable

MERGE_ATTEMPTS = 8


@dataclass
class MaintenanceResult:
    table: str
    files_merged: int
    files_added: int
    files_vacuumed: int
    manifests_removed: int


def maintain(
    state_uri: str, table: str, retention_hours: int = 168, target_file_size: int = 256 << 20
) -> MaintenanceResult:
    """Bin-pack small files per cluster (one commit, carrying the table's metadata forward), then
    vacuum data files and manifests unreferenced for longer than ``retention_hours``."""
    st = StateTable(state_uri, table)
    meta, metrics = _merge_small_files(st, target_file_size)
    dt = st._dt
    assert dt is not None
    vacuumed = dt.vacuum(retention_hours=retention_hours, dry_run=False, enforce_retention_duration=False)
    removed = 0
    cutoff = datetime.now(UTC) - timedelta(hours=retention_hours)
    for info in st.store.list(f"{table}/_lakehouse/"):
        if info.key.endswith(meta.manifest or "\0"):
            continue
        written = _written_at(info.key)
        if written is None or written > cutoff:
            continue
        st.store.delete(info.key)
        removed += 1
    return MaintenanceResult(
        table,
        int(metrics.get("numFilesRemoved", 0)),
        int(metrics.get("numFilesAdded", 0)),
        len(vacuumed),
        removed,
    )


def _merge_small_files(st: StateTable, target_file_size: int) -> tuple[StateMeta, dict]:
    """Bin-pack on the newest version; a compaction that commits meanwhile wins and the merge is
    redone on its version (the merge carries the metadata of the version it read, so it must never
    be rebased onto a newer one)."""
    attempt = 0
    while True:
        attempt += 1
        meta = st.require()
        assert st._dt is not None
        props = CommitProperties(custom_metadata={META_KEY: meta.to_json()}, max_commit_retries=0)
        try:
            return meta, st._dt.optimize.compact(target_size=target_file_size, commit_properties=props)
        except CommitFailedError as exc:
            if attempt == MERGE_ATTEMPTS:
                raise ConcurrentWriteError(
                    f"{st.uri}: other writers kept committing; merge of small files "
                    f"gave up after {attempt} attempts (nothing changed), run again"
                ) from exc
            time.sleep(random.uniform(0.05, 0.5) * attempt)


def _written_at(key: str) -> datetime | None:
    """The time in ``applied-<yyyymmddTHHMMSS>-<id>.parquet``."""
    try:
        stamp = key.rsplit("/", 1)[-1].split("-")[1]
        return datetime.strptime(stamp, "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
    except (IndexError, ValueError):
        return None
