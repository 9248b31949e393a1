"""Embedded defaults: where a one-machine install keeps its lake, warehouse and Dagster home.

Everything lives under ``LAKEHOUSE_HOME`` (default ``.data`` in the working directory). Each
location can be overridden on its own by an environment variable; production points ``LAKEHOUSE_LAKE``
at ``s3://bucket/prefix``.
"""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    return Path(os.environ.get("LAKEHOUSE_HOME", ".data")).resolve()


def lake_uri() -> str:
    return os.environ.get("LAKEHOUSE_LAKE") or str(home() / "lake")


def dagster_home() -> Path:
    return Path(os.environ.get("DAGSTER_HOME") or home() / "dagster").resolve()


def state_uri() -> str:
    """Where the current-state tables live (Delta tables, one per source table)."""
    return os.environ.get("LAKEHOUSE_STATE") or str(home() / "state")


def warehouse_path() -> Path:
    """The embedded DuckDB warehouse file."""
    return Path(os.environ.get("LAKEHOUSE_DUCKDB") or home() / "warehouse.duckdb").resolve()


WAREHOUSE_KINDS = ("duckdb", "bigquery")


def warehouse_kind() -> str:
    """``LAKEHOUSE_WAREHOUSE``: duckdb (default, embedded) or bigquery (production)."""
    kind = os.environ.get("LAKEHOUSE_WAREHOUSE", "duckdb").strip().lower()
    if kind not in WAREHOUSE_KINDS:
        raise ValueError(f"LAKEHOUSE_WAREHOUSE={kind!r}: expected one of {', '.join(WAREHOUSE_KINDS)}")
    return kind


ENGINE_KINDS = ("local", "bigquery")


def engine_kind() -> str:
    """``LAKEHOUSE_ENGINE``: what runs the fold. local (default: in this process) or bigquery (past
    one machine; BigQuery settings below)."""
    kind = os.environ.get("LAKEHOUSE_ENGINE", "local").strip().lower()
    if kind not in ENGINE_KINDS:
        raise ValueError(f"LAKEHOUSE_ENGINE={kind!r}: expected one of {', '.join(ENGINE_KINDS)}")
    return kind


def bigquery_project() -> str | None:
    return os.environ.get("LAKEHOUSE_BIGQUERY_PROJECT") or None


def bigquery_location() -> str:
    return os.environ.get("LAKEHOUSE_BIGQUERY_LOCATION", "US")


def bigquery_dataset_prefix() -> str:
    return os.environ.get("LAKEHOUSE_BIGQUERY_DATASET_PREFIX", "")


def bigquery_endpoint() -> str | None:
    """An emulator's endpoint (anonymous credentials); unset in production."""
    return os.environ.get("LAKEHOUSE_BIGQUERY_ENDPOINT") or None


def engine_dataset() -> str:
    """Dataset of the BigQuery engine's raw change tables and working tables (after the prefix)."""
    return os.environ.get("LAKEHOUSE_BIGQUERY_ENGINE_DATASET", "lakehouse_engine")


def storage_attempts() -> int:
    """``LAKEHOUSE_STORAGE_ATTEMPTS``: tries of one storage request (S3 and delta-rs) before its
    error counts; transient errors (5xx, throttling, dropped connections) are retried with backoff."""
    return max(1, int(os.environ.get("LAKEHOUSE_STORAGE_ATTEMPTS", "8")))


def storage_retry_seconds() -> float:
    """``LAKEHOUSE_STORAGE_RETRY_SECONDS``: how long one read or write keeps retrying through an
    outage before the table fails with "storage unavailable" (nothing committed; a rerun resumes)."""
    return float(os.environ.get("LAKEHOUSE_STORAGE_RETRY_SECONDS", "120"))


def consistent_reads() -> bool:
    """Warehouse loads (and so the marts and datasets) read each database at its published
    consistent watermark when there is one (LAKEHOUSE_CONSISTENT_READS, default on)."""
    return os.environ.get("LAKEHOUSE_CONSISTENT_READS", "true").strip().lower() not in (
        "0",
        "false",
        "no",
        "off",
    )
