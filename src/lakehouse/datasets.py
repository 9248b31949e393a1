"""Versioned dataset exports under the lake, for training jobs to pin a version.

    datasets/<name>/version=<UTC timestamp>/data.parquet
    datasets/<name>/version=<UTC timestamp>/data.jsonl
    datasets/<name>/version=<UTC timestamp>/manifest.json   (written last: a version exists once it has one)

The manifest holds the row count, a content hash of the rows (SHA-256 of the canonical JSON lines:
rows sorted by the key, keys sorted, so it does not depend on Parquet writer versions) and the
current-state versions the rows were built from. Exporting rows whose hash equals the newest
version's writes nothing.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq

from lakehouse.lake.store import ObjectStore

PREFIX = "datasets"


@dataclass
class DatasetVersion:
    name: str
    version: str
    rows: int
    content_hash: str
    built_from: dict
    prefix: str  # datasets/<name>/version=<v>/
    created: bool  # False: the newest version already held these rows


def _json_default(value):
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def canonical_jsonl(rows: pa.Table, key: list[str]) -> bytes:
    ordered = rows.sort_by([(k, "ascending") for k in key]) if rows.num_rows else rows
    lines = (
        json.dumps(r, sort_keys=True, ensure_ascii=False, default=_json_default) for r in ordered.to_pylist()
    )
    return ("\n".join(lines) + ("\n" if rows.num_rows else "")).encode("utf-8")


def latest_version(store: ObjectStore, name: str) -> dict | None:
    manifests = sorted(o.key for o in store.list(f"{PREFIX}/{name}/") if o.key.endswith("/manifest.json"))
    return json.loads(store.get_bytes(manifests[-1])) if manifests else None


def export_dataset(
    store: ObjectStore,
    name: str,
    rows: pa.Table,
    key: list[str],
    built_from: dict,
    now: datetime | None = None,
) -> DatasetVersion:
    """Write a new version of dataset ``name`` unless the newest one holds the same rows."""
    jsonl = canonical_jsonl(rows, key)
    digest = hashlib.sha256(jsonl).hexdigest()
    latest = latest_version(store, name)
    if latest is not None and latest["content_hash"] == digest:
        return DatasetVersion(
            name,
            latest["version"],
            latest["rows"],
            digest,
            latest["built_from"],
            f"{PREFIX}/{name}/version={latest['version']}/",
            created=False,
        )
    version = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S%fZ")
    prefix = f"{PREFIX}/{name}/version={version}/"
    buf = io.BytesIO()
    ordered = rows.sort_by([(k, "ascending") for k in key]) if rows.num_rows else rows
    pq.write_table(ordered, buf, compression="zstd")
    store.put_bytes(prefix + "data.parquet", buf.getvalue())
    store.put_bytes(prefix + "data.jsonl", jsonl)
    manifest = {
        "name": name,
        "version": version,
        "rows": rows.num_rows,
        "content_hash": digest,
        "hash_of": "data.jsonl (rows sorted by key, keys sorted)",
        "key": key,
        "built_from": built_from,
        "files": ["data.parquet", "data.jsonl"],
        "schema": [f"{f.name}: {f.type}" for f in rows.schema],
    }
    store.put_bytes(prefix + "manifest.json", json.dumps(manifest, indent=1, sort_keys=True).encode())
    return DatasetVersion(name, version, rows.num_rows, digest, built_from, prefix, created=True)
