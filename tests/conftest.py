"""Shared fixtures for the lake reader tests.

* ``sample_events``: the real Debezium 3.6.3 captures (``tests/sample_lake.load_events``).
* ``moto_s3``: a real S3 endpoint over HTTP (moto's server on loopback), with the standard AWS
  environment variables pointing at it for the whole session (restored afterwards). Yields a
  function that creates a fresh bucket and returns its ``s3://`` URI.
* ``dbz``: builders for Debezium-shaped Connect schemas and envelope records, so tests can craft
  lake files through :class:`~lakehouse.lake.sink.SinkWriter` instead of hand-writing bytes.
"""

from __future__ import annotations

import itertools
import uuid
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from support.bq_emulator import bigquery_emulator  # noqa: F401  (fixture, tests/bq_emulator.py)
from support.sample_lake import load_events

from lakehouse.lake.connect import ConnectSchema, struct
from lakehouse.lake.sink import SinkConfig, SinkWriter
from lakehouse.lake.store import ObjectStore

# --------------------------------------------------------------------------------------------
# real samples
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def _report_in_tmp(tmp_path_factory):
    """Jobs that build the marts report write it under the session's tmp dir, not ./.data
    (session scope: hypothesis refuses function-scoped autouse fixtures)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("LAKEHOUSE_REPORT", str(tmp_path_factory.mktemp("report")))
    yield
    mp.undo()


@pytest.fixture(scope="session")
def sample_events():
    return load_events()


# --------------------------------------------------------------------------------------------
# S3 over HTTP (moto server on loopback)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def moto_s3():
    """moto's S3 server in its own process on a free loopback port (a thread would share the GIL
    with deltalake, whose Rust I/O holds it while waiting for the answer); point the standard AWS
    environment at it; yield ``new_bucket(prefix="") -> "s3://bucket[/prefix]"``."""
    import boto3
    from support.moto import AWS_OVERRIDES, MOTO_REGION, moto_env, moto_server

    with moto_server() as (_, endpoint), pytest.MonkeyPatch.context() as mp:
        for var in AWS_OVERRIDES:
            mp.delenv(var, raising=False)
        for var, value in moto_env(endpoint, {}).items():
            mp.setenv(var, value)
        client = boto3.client("s3", endpoint_url=endpoint, region_name=MOTO_REGION)
        counter = itertools.count()

        def new_bucket(prefix: str = "") -> str:
            name = f"lake-{next(counter)}-{uuid.uuid4().hex[:8]}"
            client.create_bucket(Bucket=name)
            return f"s3://{name}/{prefix.strip('/')}" if prefix.strip("/") else f"s3://{name}"

        new_bucket.endpoint = endpoint  # type: ignore[attr-defined]
        new_bucket.client = client  # type: ignore[attr-defined]
        yield new_bucket


# --------------------------------------------------------------------------------------------
# Debezium-shaped schemas and records
# --------------------------------------------------------------------------------------------


class Dbz:
    """Builders for Debezium PostgreSQL envelopes (spec lake-format.md §4.5, §5.2, §5.3)."""

    def __init__(self, source_schema: ConnectSchema):
        self.source_schema = source_schema

    @staticmethod
    def opt(
        type_: str, name: str | None = None, params: dict[str, str] | None = None, **kw: Any
    ) -> ConnectSchema:
        return ConnectSchema(
            type_, name=name, optional=True, parameters=tuple(sorted((params or {}).items())), **kw
        )

    @staticmethod
    def req(
        type_: str, name: str | None = None, params: dict[str, str] | None = None, **kw: Any
    ) -> ConnectSchema:
        return ConnectSchema(
            type_, name=name, optional=False, parameters=tuple(sorted((params or {}).items())), **kw
        )

    def value_schema(self, topic: str, fields: list[tuple[str, ConnectSchema]]) -> ConnectSchema:
        return struct(f"{topic}.Value", fields, optional=True)

    def envelope(
        self,
        topic: str,
        fields: list[tuple[str, ConnectSchema]],
        source: ConnectSchema | None = None,
    ) -> ConnectSchema:
        """The Envelope schema Debezium 3.x builds for a table with these value fields."""
        value = self.value_schema(topic, fields)
        block = struct(
            "event.block",
            [
                ("id", ConnectSchema("string")),
                ("total_order", ConnectSchema("int64")),
                ("data_collection_order", ConnectSchema("int64")),
            ],
            optional=True,
            version=1,
        )
        return struct(
            f"{topic}.Envelope",
            [
                ("before", value),
                ("after", value),
                ("source", source or self.source_schema),
                ("transaction", block),
                ("op", ConnectSchema("string")),
                ("ts_ms", self.opt("int64")),
                ("ts_us", self.opt("int64")),
                ("ts_ns", self.opt("int64")),
            ],
            version=2,
        )

    def source(
        self,
        table: str = "things",
        schema: str = "public",
        *,
        lsn: int | None = 100,
        tx_id: int | None = 10,
        snapshot: str | None = "false",
        ts_us: int | None = None,
        ts_ms: int | None = None,
        source_schema: ConnectSchema | None = None,
    ) -> dict:
        ts_us = 1_715_088_896_123_456 if ts_us is None else ts_us
        full = {
            "version": "3.6.3.Final",
            "connector": "postgresql",
            "name": "eco2",
            "ts_ms": ts_us // 1000 if ts_ms is None else ts_ms,
            "snapshot": snapshot,
            "db": "eco2",
            "sequence": f'[null,"{lsn}"]',
            "ts_us": ts_us,
            "ts_ns": ts_us * 1000,
            "schema": schema,
            "table": table,
            "txId": tx_id,
            "lsn": lsn,
            "xmin": None,
            "origin": None,
            "origin_lsn": None,
        }
        names = (source_schema or self.source_schema).field_names()
        return {k: v for k, v in full.items() if k in names}

    def record(
        self,
        op: str,
        *,
        after: dict | None = None,
        before: dict | None = None,
        ts_ms: int | None = None,
        **source_kw: Any,
    ) -> dict:
        src = self.source(**source_kw)
        return {
            "before": before,
            "after": after,
            "source": src,
            "transaction": None,
            "op": op,
            "ts_ms": ts_ms if ts_ms is not None else src["ts_ms"] + 5,
            "ts_us": None,
            "ts_ns": None,
        }

    @staticmethod
    def table(schema: ConnectSchema, rows: list[dict]) -> pa.Table:
        """Rows (Python values in the physical layout) -> the Arrow table parquet-avro would give."""
        return pa.Table.from_pylist(rows, schema=pa.schema(list(schema.physical_arrow_type())))

    def write(
        self,
        store: ObjectStore,
        topic: str,
        schema: ConnectSchema,
        rows: list[dict],
        offsets: list[int],
        *,
        partition: int = 0,
        config: SinkConfig | None = None,
        writer: SinkWriter | None = None,
        close: bool = True,
    ) -> SinkWriter:
        """Write records through the sink emulation (one record at a time, in Kafka order)."""
        w = writer or SinkWriter(store, config or SinkConfig(flush_size=1000))
        for row, off in zip(rows, offsets, strict=True):
            ts = np.array([row["source"]["ts_ms"] if "source" in row else 0], dtype=np.int64)
            w.write(
                topic,
                partition,
                self.table(schema, [row]),
                schema,
                np.array([off], dtype=np.int64),
                timestamps_ms=ts,
            )
        if close:
            w.close()
        return w


@pytest.fixture(scope="session")
def dbz(sample_events) -> Dbz:
    source = next(e for e in sample_events if e.value is not None).value_schema.field("source").schema
    return Dbz(source)


# --------------------------------------------------------------------------------------------
# PostgreSQL (a throwaway cluster from the machine's binaries, wal_level=logical)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_cluster():
    from lakehouse.pg.cluster import PgCluster

    cluster = PgCluster.temporary().start()
    try:
        yield cluster
    finally:
        cluster.remove()  # data directory, WAL and replication slots


@pytest.fixture
def eco2_db(pg_cluster, request):
    """A fresh database holding both Eco2 schemas (auth and scan); yields its DSN."""
    import re
    from pathlib import Path

    import psycopg

    name = "t_" + re.sub(r"[^a-z0-9]", "_", request.node.name.lower())[:40] + "_" + uuid.uuid4().hex[:6]
    with psycopg.connect(pg_cluster.dsn(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = pg_cluster.dsn(name)
    sql_dir = Path(__file__).resolve().parents[1] / "sql" / "eco2"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute((sql_dir / "auth.sql").read_text())
        conn.execute((sql_dir / "scan.sql").read_text())
    yield dsn
    from support.pgdb import drop_database

    drop_database(pg_cluster, name)
