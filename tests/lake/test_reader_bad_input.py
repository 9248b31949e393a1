"""Broken objects in the lake: each one is reported as a LakeObjectError naming the object key and
the reason; nothing is skipped silently, and the other tables of the lake keep reading."""

from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lakehouse.lake.connect import ConnectSchema
from lakehouse.lake.layout import LakeObjectError, SinkLayout, build_object_key
from lakehouse.lake.reader import LakeReader
from lakehouse.lake.sink import SinkConfig, UnwrapConfig
from lakehouse.lake.store import LocalStore

BAD = "eco2.scan.feedback"  # the topic that gets a broken object
GOOD = "eco2.scan.results"  # a healthy topic in the same lake
I64 = ConnectSchema("int64")
LAYOUT = SinkLayout()


def key_for(
    topic: str,
    offset: int = 0,
    ext: str = ".snappy.parquet",
    enc: str = "partition=0",
    partition: int = 0,
    layout: SinkLayout = LAYOUT,
) -> str:
    return build_object_key(layout, topic, enc, partition, offset, ext)


def fields(dbz):
    return [("id", I64), ("label", dbz.opt("string"))]


def rows(dbz, ids, op="c"):
    return [dbz.record(op, after={"id": i, "label": f"l{i}"}, lsn=100 + i) for i in ids]


@pytest.fixture
def lake(tmp_path, dbz):
    """Two healthy topics (one file each)."""
    store = LocalStore(tmp_path)
    dbz.write(store, GOOD, dbz.envelope(GOOD, fields(dbz)), rows(dbz, [1, 2]), [0, 1])
    dbz.write(store, BAD, dbz.envelope(BAD, fields(dbz)), rows(dbz, [7]), [0])
    return store


def assert_other_topic_reads(store, layout: SinkLayout = LAYOUT):
    t = LakeReader(store, layout=layout).read_changes(GOOD)
    assert t.column("id").to_pylist() == [1, 2]


def expect_read_error(store, key: str, *reason_words: str, layout: SinkLayout = LAYOUT) -> LakeObjectError:
    reader = LakeReader(store, layout=layout)
    with pytest.raises(LakeObjectError) as ei:
        reader.read_changes(BAD)
    err = ei.value
    assert err.key == key
    assert str(err).startswith(key + ": ")
    for w in reason_words:
        assert w.lower() in err.reason.lower(), err.reason
    assert_other_topic_reads(store, layout)
    return err


def expect_listing_error(store, key: str, *reason_words: str, layout: SinkLayout = LAYOUT) -> None:
    reader = LakeReader(store, layout=layout)
    listing = reader.scan()
    assert [e.key for e in listing.errors] == [key]
    assert [e.key for e in listing.errors_for(BAD)] == [key]
    assert listing.errors_for(GOOD) == []
    for w in reason_words:
        assert w.lower() in listing.errors[0].reason.lower()
    # the broken object is not silently among the readable ones
    assert key not in [o.key for objs in listing.objects.values() for o in objs]
    with pytest.raises(LakeObjectError) as ei:
        reader.plan(BAD)
    assert ei.value.key == key
    with pytest.raises(LakeObjectError):
        reader.read_changes(BAD)
    assert_other_topic_reads(store, layout)


# --------------------------------------------------------------------------------------------
# broken objects
# --------------------------------------------------------------------------------------------


def test_zero_byte_object(lake):
    key = key_for(BAD, 5)
    lake.put_bytes(key, b"")
    expect_listing_error(lake, key, "zero-byte")


def test_truncated_parquet(lake):
    key = key_for(BAD, 0)
    data = lake.get_bytes(key)
    lake.put_bytes(key, data[: len(data) // 2])
    expect_read_error(lake, key, "not a readable Parquet file")


@pytest.mark.parametrize("codec", ["none", "zstd"])
def test_corrupt_parquet_data_pages(tmp_path, dbz, codec):
    """A valid footer over garbage pages fails while reading rows, still naming the object."""
    store = LocalStore(tmp_path)
    dbz.write(store, GOOD, dbz.envelope(GOOD, fields(dbz)), rows(dbz, [1, 2]), [0, 1])
    schema = dbz.envelope(BAD, [("id", I64), ("body", dbz.opt("string"))])
    body = [
        dbz.record("c", after={"id": i, "body": f"{i}-" + "abcdefghij" * 400 + str(i)}, lsn=i)
        for i in range(4)
    ]
    w = dbz.write(store, BAD, schema, body, [0, 1, 2, 3], config=SinkConfig(parquet_codec=codec))
    (key,) = w.objects_written
    data = bytearray(store.get_bytes(key))
    md = pq.ParquetFile(io.BytesIO(bytes(data))).metadata
    col = next(
        c
        for c in (md.row_group(0).column(i) for i in range(md.num_columns))
        if c.path_in_schema == "after.body"
    )
    start = col.dictionary_page_offset if col.has_dictionary_page else col.data_page_offset
    for i in range(start + 40, start + col.total_compressed_size - 40):
        data[i] = 0xFF
    store.put_bytes(key, bytes(data))
    expect_read_error(store, key, "Parquet data unreadable")


def test_parquet_without_avro_schema(lake):
    key = key_for(BAD, 3)
    buf = io.BytesIO()
    pq.write_table(pa.table({"id": [1, 2], "label": ["a", "b"]}), buf)
    lake.put_bytes(key, buf.getvalue())
    expect_read_error(lake, key, "no parquet.avro.schema")


def _parquet_with_footer(table: pa.Table, avro_schema: str) -> bytes:
    buf = io.BytesIO()
    with pq.ParquetWriter(buf, table.schema, store_schema=False) as w:
        w.write_table(table)
        w.add_key_value_metadata({"parquet.avro.schema": avro_schema, "writer.model.name": "avro"})
    return buf.getvalue()


def test_parquet_with_foreign_avro_schema(lake):
    key = key_for(BAD, 3)
    avro = json.dumps(
        {
            "type": "record",
            "name": "Order",
            "namespace": "com.example",
            "fields": [{"name": "order_id", "type": "long"}, {"name": "amount", "type": "double"}],
        }
    )
    lake.put_bytes(key, _parquet_with_footer(pa.table({"order_id": [1], "amount": [2.5]}), avro))
    expect_read_error(lake, key, "not a Debezium topic file")


def test_parquet_with_unparseable_avro_schema(lake):
    key = key_for(BAD, 3)
    lake.put_bytes(key, _parquet_with_footer(pa.table({"id": [1]}), "{this is not json"))
    expect_read_error(lake, key, "unreadable parquet.avro.schema")


def test_parquet_with_non_struct_value_schema(lake):
    key = key_for(BAD, 3)
    lake.put_bytes(key, _parquet_with_footer(pa.table({"id": [1]}), json.dumps("string")))
    expect_read_error(lake, key, "not a struct")


def test_envelope_name_without_envelope_fields(lake):
    key = key_for(BAD, 3)
    avro = json.dumps(
        {
            "type": "record",
            "name": "Envelope",
            "namespace": BAD,
            "fields": [{"name": "op", "type": "string"}, {"name": "id", "type": "long"}],
        }
    )
    lake.put_bytes(key, _parquet_with_footer(pa.table({"op": ["c"], "id": [1]}), avro))
    expect_read_error(lake, key, "envelope schema without before/after/source/op")


def test_row_column_colliding_with_internal_column(tmp_path, dbz):
    store = LocalStore(tmp_path)
    dbz.write(store, GOOD, dbz.envelope(GOOD, fields(dbz)), rows(dbz, [1, 2]), [0, 1])
    schema = dbz.envelope(BAD, [("id", I64), ("__lsn", dbz.opt("int64"))])
    w = dbz.write(store, BAD, schema, [dbz.record("c", after={"id": 1, "__lsn": 5}, lsn=1)], [0])
    expect_read_error(store, w.objects_written[0], "collides with an internal column")


def test_zoned_timestamp_that_is_not_iso(tmp_path, dbz):
    store = LocalStore(tmp_path)
    dbz.write(store, GOOD, dbz.envelope(GOOD, fields(dbz)), rows(dbz, [1, 2]), [0, 1])
    schema = dbz.envelope(BAD, [("id", I64), ("at", dbz.opt("string", "io.debezium.time.ZonedTimestamp"))])
    recs = [
        dbz.record("c", after={"id": 1, "at": "2024-05-07T13:34:56Z"}, lsn=1),
        dbz.record("c", after={"id": 2, "at": "yesterday"}, lsn=2),
    ]
    w = dbz.write(store, BAD, schema, recs, [0, 1])
    err = expect_read_error(store, w.objects_written[0], "'at'", "ZonedTimestamp")
    assert "yesterday" in err.reason


# --------------------------------------------------------------------------------------------
# keys that are not sink objects
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, reason",
    [
        ("notes.txt", "file name is not"),
        (f"{BAD}+0.snappy.parquet", "file name is not"),
        (f"{BAD}+x+0000000000.snappy.parquet", "file name is not"),
        ("eco2.scan.other+0+0000000000.snappy.parquet", "differs from its directory"),
        (f"{BAD}+0+0000000009.bin", "not supported"),
        (".DS_Store", "hidden"),
    ],
)
def test_unparseable_key_inside_topic_dir(lake, name, reason):
    key = f"topics/{BAD}/partition=0/{name}"
    lake.put_bytes(key, b"some bytes")
    expect_listing_error(lake, key, reason)


def test_value_file_directly_in_topic_dir(lake):
    key = f"topics/{BAD}/{BAD}+0+0000000009.snappy.parquet"
    lake.put_bytes(key, lake.get_bytes(key_for(BAD, 0)))
    expect_listing_error(lake, key, "no encoded partition")


def test_object_directly_under_topics_dir(lake):
    key = "topics/README.txt"
    lake.put_bytes(key, b"hello")
    listing = LakeReader(lake).scan()
    assert [e.key for e in listing.errors] == [key]
    assert "no topic directory" in listing.errors[0].reason
    assert listing.topics == sorted([BAD, GOOD])
    assert LakeReader(lake).read_changes(BAD).num_rows == 1
    assert_other_topic_reads(lake)


def test_unparseable_key_with_nested_topics_dir(tmp_path, dbz):
    layout = SinkLayout(topics_dir="lake/raw")
    store = LocalStore(tmp_path)
    cfg = SinkConfig(layout=layout)
    dbz.write(store, GOOD, dbz.envelope(GOOD, fields(dbz)), rows(dbz, [1, 2]), [0, 1], config=cfg)
    dbz.write(store, BAD, dbz.envelope(BAD, fields(dbz)), rows(dbz, [7]), [0], config=cfg)
    key = f"lake/raw/{BAD}/partition=0/notes.txt"
    store.put_bytes(key, b"x")
    expect_listing_error(store, key, "file name is not", layout=layout)


# --------------------------------------------------------------------------------------------
# bad rows
# --------------------------------------------------------------------------------------------


def test_unknown_op_in_envelope(lake, dbz):
    key = key_for(BAD, 0)
    recs = rows(dbz, [1, 2]) + [dbz.record("x", after={"id": 3, "label": "?"}, lsn=3)]
    dbz.write(lake, BAD, dbz.envelope(BAD, fields(dbz)), recs, [0, 1, 2])
    err = expect_read_error(lake, key, "unknown op 'x'", "row 2")
    assert "c, u, d, r, t" in err.reason


def test_unknown_op_in_unwrapped_rows(lake, dbz):
    key = key_for(BAD, 0)
    recs = rows(dbz, [1]) + [dbz.record("x", after={"id": 3, "label": "?"}, lsn=3)]
    dbz.write(
        lake,
        BAD,
        dbz.envelope(BAD, fields(dbz)),
        recs,
        [0, 1],
        config=SinkConfig(unwrap=UnwrapConfig()),
    )
    expect_read_error(lake, key, "unknown op 'x'", "row 1")


def test_unknown_op_in_later_batch_reports_absolute_row(tmp_path, dbz):
    store = LocalStore(tmp_path)
    dbz.write(store, GOOD, dbz.envelope(GOOD, fields(dbz)), rows(dbz, [1, 2]), [0, 1])
    recs = rows(dbz, range(5)) + [dbz.record("m", after={"id": 9, "label": "?"}, lsn=9)]
    w = dbz.write(store, BAD, dbz.envelope(BAD, fields(dbz)), recs, list(range(6)))
    reader = LakeReader(store)
    plan = reader.plan(BAD)
    with pytest.raises(LakeObjectError) as ei:
        list(reader.iter_changes(plan, batch_size=2))
    assert ei.value.key == w.objects_written[0]
    assert "unknown op 'm' at row 5" in ei.value.reason


# --------------------------------------------------------------------------------------------
# bad JSON lines
# --------------------------------------------------------------------------------------------


def _json_line(op="c", id_=1):
    return json.dumps(
        {
            "before": None,
            "after": {"id": id_, "label": "a"},
            "op": op,
            "source": {
                "ts_ms": 1,
                "ts_us": 1000,
                "schema": "scan",
                "table": "feedback",
                "lsn": 5,
                "txId": 3,
                "snapshot": "false",
            },
        }
    )


@pytest.mark.parametrize(
    "content, reason",
    [
        ((_json_line() + "\n{not json\n").encode(), "not valid JSON Lines"),
        (b"\n\n  \n", "holds no lines"),
        (
            (
                json.dumps({"schema": {"type": "struct", "fields": [], "optional": False}, "payload": {}})
                + "\n"
                + _json_line()
                + "\n"
            ).encode(),
            "no embedded schema",
        ),
        ((_json_line(op="x") + "\n").encode(), "unknown op 'x'"),
        (
            (_json_line() + "\n" + _json_line(id_=1).replace('"id": 1', '"id": "one"') + "\n").encode(),
            "not valid JSON Lines",
        ),
    ],
    ids=["garbage-line", "blank-lines", "schema-then-schemaless", "unknown-op", "type-flip"],
)
def test_bad_json_lines(lake, content, reason):
    key = key_for(BAD, 10, ".json")
    lake.put_bytes(key, content)
    expect_read_error(lake, key, reason)


def test_gzip_json_that_is_not_gzip(lake):
    key = key_for(BAD, 10, ".json.gz")
    lake.put_bytes(key, (_json_line() + "\n").encode())
    expect_read_error(lake, key, "not valid JSON Lines")


@pytest.mark.parametrize("line", [b"[1, 2, 3]", b"42"], ids=["array", "number"])
def test_json_line_that_is_not_an_object(lake, line):
    key = key_for(BAD, 10, ".json")
    lake.put_bytes(key, line + b"\n")
    expect_read_error(lake, key, "JSON")


# --------------------------------------------------------------------------------------------
# objects that vanish, and the same failures on S3
# --------------------------------------------------------------------------------------------


def test_object_deleted_between_listing_and_reading(lake):
    key = key_for(BAD, 0)
    reader = LakeReader(lake)
    listing = reader.scan()
    lake.delete(key)
    with pytest.raises(LakeObjectError) as ei:
        reader.plan(BAD, objects=listing.objects[BAD])
    assert ei.value.key == key and "not a readable Parquet file" in ei.value.reason
    assert_other_topic_reads(lake)


@pytest.mark.s3
def test_bad_objects_on_s3(moto_s3, dbz):
    from lakehouse.lake.store import open_store

    store = open_store(moto_s3())  # bucket root, no prefix
    dbz.write(store, GOOD, dbz.envelope(GOOD, fields(dbz)), rows(dbz, [1, 2]), [0, 1])
    w = dbz.write(store, BAD, dbz.envelope(BAD, fields(dbz)), rows(dbz, [7, 8]), [0, 1])
    (key,) = w.objects_written
    data = store.get_bytes(key)
    # truncated Parquet, read through pyarrow's S3 filesystem
    store.put_bytes(key, data[: len(data) // 2])
    expect_read_error(store, key, "not a readable Parquet file")
    # zero-byte object: a listing-level error
    store.put_bytes(key, data)
    empty = key_for(BAD, 9)
    store.put_bytes(empty, b"")
    expect_listing_error(store, empty, "zero-byte")
    store.delete(empty)
    # deleted after listing
    reader = LakeReader(store)
    listing = reader.scan()
    assert listing.errors == []
    store.delete(key)
    with pytest.raises(LakeObjectError) as ei:
        reader.plan(BAD, objects=listing.objects[BAD])
    assert ei.value.key == key
    assert_other_topic_reads(store)
