"""The fold on BigQuery: sql/fold/ carried over by sqlglot and run as one script (docs/fold-sql.md).

The same statements as :func:`lakehouse.state.sqlfold.fold_sql` on DuckDB: the narrow skeleton and
the known truncates are loaded into working tables of ``dataset`` (a suffix per call, so folds
can run side by side), the script runs as one job (its temp tables live as long as it does;
key-change links loop inside it), and its outputs are read back. Values stay on the caller's side
and are gathered by row id, as on DuckDB.

The building block of the BigQuery engine (issue 14): tests/test_bigquery_fold.py holds it to
the reference fold. Still to come: raw change tables, folding straight into the state tables
inside a transaction with the applied-objects record.
"""

from __future__ import annotations

import uuid

import pyarrow as pa

from lakehouse.sqlfiles import sql
from lakehouse.state.fold import FoldResult, Truncate
from lakehouse.state.sqlfold import fold_inputs, fold_output, fold_script, raise_if_late
from lakehouse.warehouse.bigquery_warehouse import quote, schema_field, upload

WORK_TABLES = ("fold_skeleton", "fold_truncates", "out_late", "out_result", "out_effects", "out_new_truncates")


def fold_bigquery(client, dataset: str, events: pa.Table, prior: pa.Table | None, key: tuple[str, ...],
                  row_fields: list[pa.Field], truncates: list[Truncate] = (), pairing: pa.Table | None = None,
                  keep_images: bool = False) -> FoldResult:
    """:func:`lakehouse.state.fold.fold` on BigQuery (``dataset``: ``project.dataset`` for the
    working tables, which are dropped afterwards)."""
    inputs = fold_inputs(events, prior, pairing, truncates, key, row_fields)
    suffix = uuid.uuid4().hex[:12]
    tables = {name: f"{dataset}.{name}_{suffix}" for name in WORK_TABLES}
    try:
        _load(client, tables["fold_skeleton"], inputs.skeleton)
        _load(client, tables["fold_truncates"], inputs.truncates)
        client.query(fold_script(key, row_fields, keep_images, "bigquery", tables)).result()

        def read(name: str) -> pa.Table:
            text = sql("fold/read_output.sql", table=quote(tables[name]))
            return client.query(text).result().to_arrow(create_bqstorage_client=False)

        late = read("out_late").to_pylist()[0]
        raise_if_late((late["late"], late["first_in"]), inputs.wide)
        effects = read("out_effects").to_pylist()[0]
        effects = (effects["inserts"], effects["updates"], effects["deletes"], effects["duplicates"])
        return fold_output(inputs, read("out_result"), effects, truncates, read("out_new_truncates"), key,
                           row_fields)
    finally:
        for table_id in tables.values():
            client.delete_table(table_id, not_found_ok=True)


def _load(client, table_id: str, table: pa.Table) -> None:
    """Create ``table_id`` from the Arrow schema and load the rows (the warehouse's upload)."""
    from google.cloud import bigquery

    client.create_table(bigquery.Table(table_id, schema=[schema_field(f.name, f.type) for f in table.schema]))
    upload(client, table, table.schema, table_id, truncate=True)
