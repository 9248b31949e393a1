"""The fold on BigQuery: sql/fold/ carried over by sqlglot and run as one script (docs/fold-sql.md).

The same statements as :func:`lakehouse.state.sqlfold.fold_sql` on DuckDB: the narrow skeleton and
the known truncates are loaded into ``<dataset>.fold_skeleton`` / ``fold_truncates``, the script
runs as one job (its temp tables live as long as the script; key-change links loop inside it),
and its outputs land in ``<dataset>.out_*`` tables that are read back. Values stay on the caller's
side and are gathered by row id, as on DuckDB.

This is the building block of the BigQuery engine (issue 14): the fold's result is identical to
DuckDB's and to the reference fold (tests/test_sqlfold.py). Still to come: raw change tables,
folding straight into the state tables inside a transaction with the applied-objects record.
"""

from __future__ import annotations

import tempfile

import pyarrow as pa
import pyarrow.parquet as pq

from lakehouse.state.fold import FoldResult, Truncate, state_schema
from lakehouse.state.sqlfold import _inputs, _raise_if_late, _result, _truncates, fold_script
from lakehouse.warehouse.bigquery_warehouse import (
    _parquet_options,
    _to_bigquery,
    arrow_for_bigquery,
    schema_field,
)


def fold_bigquery(client, dataset: str, events: pa.Table, prior: pa.Table | None, key: tuple[str, ...],
                  row_fields: list[pa.Field], truncates: list[Truncate] = (), pairing: pa.Table | None = None,
                  keep_images: bool = False) -> FoldResult:
    """:func:`lakehouse.state.fold.fold` on BigQuery (``dataset``: ``project.dataset`` for the
    working tables)."""
    schema = state_schema(row_fields)
    wide, skeleton = _inputs(events, prior, pairing, schema, key, row_fields)
    _load(client, f"{dataset}.fold_skeleton", skeleton)
    _load(client, f"{dataset}.fold_truncates", _truncates(truncates))
    client.query(fold_script(key, row_fields, keep_images, "bigquery", dataset)).result()

    def read(table: str) -> pa.Table:
        return client.query(f"SELECT * FROM `{dataset}.{table}`").result().to_arrow(create_bqstorage_client=False)

    late = read("out_late").to_pylist()[0]
    _raise_if_late((late["late"], late["first_in"]), wide)
    effects = read("out_effects").to_pylist()[0]
    narrow = _from_bigquery(read("out_result"))
    return _result(wide, narrow, (effects["inserts"], effects["updates"], effects["deletes"], effects["duplicates"]),
                   truncates, read("out_new_truncates"), events.num_rows, schema, key, row_fields)


def _load(client, table_id: str, table: pa.Table) -> None:
    """Create ``table_id`` from the Arrow schema and load the rows (Parquet load job)."""
    from google.cloud import bigquery

    client.delete_table(table_id, not_found_ok=True)
    client.create_table(bigquery.Table(table_id, schema=[schema_field(f.name, f.type) for f in table.schema]))
    target = pa.schema([pa.field(f.name, arrow_for_bigquery(f.type)) for f in table.schema])
    rows = pa.Table.from_arrays([_to_bigquery(table.column(f.name), f.type) for f in target], schema=target)
    with tempfile.TemporaryFile() as f:
        pq.write_table(rows, f)
        f.seek(0)
        client.load_table_from_file(f, table_id, job_config=bigquery.LoadJobConfig(
            source_format=bigquery.SourceFormat.PARQUET, parquet_options=_parquet_options())).result()


def _from_bigquery(narrow: pa.Table) -> pa.Table:
    """REST results come back with BigQuery's types: ids as int64, lists of names as lists."""
    return narrow
