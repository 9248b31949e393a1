"""The BigQuery statements in sql/warehouse/bigquery/ parse as GoogleSQL (sqlglot's BigQuery
dialect). The emulator runs them through DuckDB, which is more lenient than BigQuery in places, so
the dialect check covers what the emulator cannot; partition pruning and dry-run byte estimates have
no emulator equivalent and are checked here by the statement's shape only."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pyarrow as pa
import pytest
import sqlglot
from sqlglot import exp

from lakehouse.config import load_config
from lakehouse.sqlfiles import SQL_ROOT, sql
from lakehouse.warehouse.bigquery_warehouse import BigQueryWarehouse, bq_type, quote

IDENTIFIERS = {
    "loads": quote("p.meta.loads"),
    "target": quote("p.scan.scans"),
    "column": quote("email"),
    "column_type": "STRING",
    "key_columns": quote("id"),
    "any_key_null": f"{quote('id')} IS NULL",
    "staging": quote("p.meta.stage__scan__scans"),
    "key_match": "t.`id` = s.`id`",
    "partition_filter": "",
    "update_set": "`a` = s.`a`",
    "columns": "`id`, `a`",
    "source_columns": "s.`id`, s.`a`",
}


@pytest.mark.parametrize(
    "path", sorted((SQL_ROOT / "warehouse" / "bigquery").glob("*.sql")), ids=lambda p: p.name
)
def test_every_statement_parses_as_bigquery(path):
    text = sql(f"warehouse/bigquery/{path.name}", **IDENTIFIERS)
    statements = [s for s in sqlglot.parse(text, read="bigquery") if s is not None]
    assert statements, path.name


def test_the_merge_is_pruned_to_the_changed_partitions_and_guarded():
    wh = BigQueryWarehouse(lambda: None, "p", meta_dataset="meta")
    entry = next(t for t in load_config().tables if t.table == "scan.scans")
    schema = pa.schema(
        [
            ("id", pa.string()),
            ("status", pa.string()),
            ("created_at", pa.timestamp("us", "UTC")),
            ("_cdc_lsn", pa.int64()),
        ]
    )
    lo, hi = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 2, tzinfo=UTC)
    text, params = wh.merge_statement(entry, "p.meta.stage__scan__scans", schema, ("id",), 7, (lo, hi))
    merge = sqlglot.parse_one(text, read="bigquery")
    assert isinstance(merge, exp.Merge)
    on = merge.args["on"].sql(dialect="bigquery")
    assert "BETWEEN @partition_lo AND @partition_hi" in on and "t.created_at" in on.replace("`", "")
    assert params["partition_lo"] == lo and params["state_version"] == 7
    assert "_cdc_lsn" in text and "@state_version >" in text
    # no partition column configured: no filter
    users = next(t for t in load_config().tables if t.table == "auth.users")
    text, params = wh.merge_statement(users, "p.meta.s", schema, ("id",), 7, None)
    assert "partition_lo" not in params and "BETWEEN" not in text


@pytest.mark.parametrize(
    ("arrow", "expected"),
    [
        (pa.int16(), ("INTEGER", "NULLABLE")),
        (pa.float64(), ("FLOAT", "NULLABLE")),
        (pa.decimal128(5, 4), ("NUMERIC", "NULLABLE")),
        (pa.decimal128(38, 10), ("BIGNUMERIC", "NULLABLE")),
        (pa.decimal256(60, 5), ("STRING", "NULLABLE")),
        (pa.timestamp("us", "UTC"), ("TIMESTAMP", "NULLABLE")),
        (pa.timestamp("us"), ("DATETIME", "NULLABLE")),
        (pa.date32(), ("DATE", "NULLABLE")),
        (pa.time64("us"), ("TIME", "NULLABLE")),
        (pa.list_(pa.string()), ("STRING", "REPEATED")),
        (pa.map_(pa.string(), pa.string()), ("RECORD", "REPEATED")),
        (pa.binary(), ("BYTES", "NULLABLE")),
        (pa.duration("us"), ("INTEGER", "NULLABLE")),
    ],
)
def test_type_mapping(arrow, expected):
    assert bq_type(arrow)[:2] == expected


def test_column_names_bigquery_cannot_hold_get_plain_distinct_names():
    from lakehouse.warehouse.bigquery_warehouse import column_name

    for plain in ("id", "user_id", "select", "_x", "A1"):
        assert column_name(plain) == plain
    odd = ['a"b', "a b", "a-b", "ü 名前", "1st", "😀", "_TABLE_x", "x" * 400]
    renamed = [column_name(n) for n in odd]
    assert len(set(renamed)) == len(odd)  # a b and a-b both start a_b: the hash keeps them apart
    for name in renamed:
        assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,299}", name) and not name.lower().startswith("_table_")
    assert column_name('a"b').startswith("a_b_") and column_name("1st").startswith("_1st_")
