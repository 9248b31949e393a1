"""Maintenance of current-state tables: merge small files, vacuum unreferenced ones."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from deltalake.transaction import CommitProperties

from lakehouse.state.table import META_KEY, StateTable


@dataclass
class MaintenanceResult:
    table: str
    files_merged: int
    files_added: int
    files_vacuumed: int
    manifests_removed: int


def maintain(state_uri: str, table: str, retention_hours: int = 168,
             target_file_size: int = 256 << 20) -> MaintenanceResult:
    """Bin-pack small files per cluster (one commit, carrying the table's metadata forward), then
    vacuum data files and manifests unreferenced for longer than ``retention_hours``."""
    st = StateTable(state_uri, table)
    meta = st.require()
    dt = st._dt
    assert dt is not None
    metrics = dt.optimize.compact(target_size=target_file_size,
                                  commit_properties=CommitProperties(custom_metadata={META_KEY: meta.to_json()}))
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
    return MaintenanceResult(table, int(metrics.get("numFilesRemoved", 0)), int(metrics.get("numFilesAdded", 0)),
                             len(vacuumed), removed)


def _written_at(key: str) -> datetime | None:
    """The time in ``applied-<yyyymmddTHHMMSS>-<id>.parquet``."""
    try:
        stamp = key.rsplit("/", 1)[-1].split("-")[1]
        return datetime.strptime(stamp, "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
    except (IndexError, ValueError):
        return None
