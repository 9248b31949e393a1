"""Smoke test of the BigQuery emulator fixture through the official client (google-cloud-bigquery).

The path the warehouse loads take: dataset, table with a schema, Parquet load (WRITE_TRUNCATE),
MERGE from a staging table (update + insert + delete), read back over REST as Arrow.

Confirmed here from shared/spec/stack-notes.md §4 / §6.2 (bqemulator 1.4.0, duckdb 1.5.5,
google-cloud-bigquery 3.47.0):
* it starts offline once spatial and avro are pre-installed into $HOME/.duckdb (here the
  repo-local .bqemu-home), with numpy in its venv; the start command of §6.2 works as written;
* the client setup (AnonymousCredentials + client_options api_endpoint) needs nothing else;
* create_dataset, create_table with a REQUIRED column, load_table_from_file with Parquet bytes and
  WRITE_TRUNCATE into a pre-created table (it replaces the rows), MERGE as a query job with
  num_dml_affected_rows, and .to_arrow(create_bqstorage_client=False) from a query and list_rows;
* TIMESTAMP values survive the Parquet load and the MERGE as UTC microseconds.
Not in stack-notes: tables.get returns a column's type as spelled at creation (``INT64`` stays
``INT64``; BigQuery answers ``INTEGER``), so this test creates the schema with the legacy names.
"""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.timeout(180)  # a client retrying on HTTP 500 would otherwise hang (§4.2)

ARROW_SCHEMA = pa.schema(
    [
        pa.field("id", pa.int64(), nullable=False),
        pa.field("name", pa.string()),
        pa.field("qty", pa.int64()),
        pa.field("updated_at", pa.timestamp("us", tz="UTC")),
    ]
)


def _ts(day: int) -> datetime:
    return datetime(2026, 1, day, 12, 30, 15, 123456, tzinfo=UTC)


def _parquet(rows: list[dict], schema: pa.Schema = ARROW_SCHEMA) -> io.BytesIO:
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), buf)
    buf.seek(0)
    return buf


def test_load_merge_read_back(bigquery_emulator):
    from google.cloud import bigquery

    client = bigquery_emulator.client()
    assert bigquery_emulator.endpoint.startswith("http://127.0.0.1:")
    assert client.project == bigquery_emulator.project == "local-proj"

    dataset = client.create_dataset(f"{client.project}.smoke_{uuid.uuid4().hex[:8]}")
    assert dataset.dataset_id in [d.dataset_id for d in client.list_datasets()]

    # legacy type names: BigQuery answers tables.get with INTEGER even for INT64, the emulator echoes
    # whatever name the table was created with
    schema = [
        bigquery.SchemaField("id", "INTEGER", mode="REQUIRED"),
        bigquery.SchemaField("name", "STRING"),
        bigquery.SchemaField("qty", "INTEGER"),
        bigquery.SchemaField("updated_at", "TIMESTAMP"),
    ]
    ds = f"{dataset.project}.{dataset.dataset_id}"
    target = client.create_table(bigquery.Table(f"{ds}.target", schema=schema))
    staging = client.create_table(
        bigquery.Table(f"{ds}.staging", schema=[*schema, bigquery.SchemaField("op", "STRING")])
    )
    assert [(f.name, f.field_type, f.mode) for f in client.get_table(target).schema] == [
        ("id", "INTEGER", "REQUIRED"),
        ("name", "STRING", "NULLABLE"),
        ("qty", "INTEGER", "NULLABLE"),
        ("updated_at", "TIMESTAMP", "NULLABLE"),
    ]

    truncate = bigquery.LoadJobConfig(
        source_format=bigquery.SourceFormat.PARQUET,
        write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE,
    )
    # a first load that the second WRITE_TRUNCATE load must replace
    client.load_table_from_file(
        _parquet([{"id": 99, "name": "stale", "qty": 0, "updated_at": _ts(1)}]), target, job_config=truncate
    ).result(timeout=60)
    job = client.load_table_from_file(
        _parquet(
            [
                {"id": 1, "name": "apple", "qty": 10, "updated_at": _ts(1)},
                {"id": 2, "name": "pear", "qty": 20, "updated_at": _ts(1)},
                {"id": 3, "name": "plum", "qty": None, "updated_at": _ts(1)},
            ]
        ),
        target,
        job_config=truncate,
    )
    job.result(timeout=60)
    assert job.output_rows == 3
    assert client.get_table(target).num_rows == 3

    staging_schema = ARROW_SCHEMA.append(pa.field("op", pa.string()))
    client.load_table_from_file(
        _parquet(
            [
                {"id": 1, "name": "apple", "qty": 11, "updated_at": _ts(2), "op": "u"},  # update
                {"id": 3, "name": None, "qty": None, "updated_at": _ts(2), "op": "d"},  # delete
                {"id": 4, "name": "fig", "qty": 40, "updated_at": _ts(2), "op": "c"},  # insert
                # a delete of a row the target does not have: neither deletes nor inserts
                {"id": 5, "name": "gone", "qty": 50, "updated_at": _ts(2), "op": "d"},
            ],
            staging_schema,
        ),
        staging,
        job_config=truncate,
    ).result(timeout=60)

    merge = client.query(f"""
        MERGE `{ds}.target` T
        USING `{ds}.staging` S
        ON T.id = S.id
        WHEN MATCHED AND S.op = 'd' THEN DELETE
        WHEN MATCHED THEN UPDATE SET name = S.name, qty = S.qty, updated_at = S.updated_at
        WHEN NOT MATCHED AND S.op != 'd' THEN
          INSERT (id, name, qty, updated_at) VALUES (S.id, S.name, S.qty, S.updated_at)
    """)
    merge.result(timeout=60)
    assert merge.num_dml_affected_rows == 3

    expected = [
        {"id": 1, "name": "apple", "qty": 11, "updated_at": _ts(2)},
        {"id": 2, "name": "pear", "qty": 20, "updated_at": _ts(1)},
        {"id": 4, "name": "fig", "qty": 40, "updated_at": _ts(2)},
    ]
    result = (
        client.query(f"SELECT id, name, qty, updated_at FROM `{ds}.target` ORDER BY id")
        .result(timeout=60)
        .to_arrow(create_bqstorage_client=False)
    )
    assert result.to_pylist() == expected
    listed = client.list_rows(target).to_arrow(create_bqstorage_client=False)
    assert sorted(listed.to_pylist(), key=lambda r: r["id"]) == expected
