"""One test per reading pitfall of spec lake-format.md §8 (numbers in the test names).

Lake files are built through the sink emulation (SinkWriter + ConnectSchema), never by hand.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import uuid
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lakehouse.lake.connect import ConnectSchema, struct
from lakehouse.lake.layout import build_object_key
from lakehouse.lake.reader import LakeReader, SchemaConflictError
from lakehouse.lake.semantic import TOAST_PLACEHOLDER, is_toast_placeholder
from lakehouse.lake.sink import (
    SinkConfig,
    SinkWriter,
    UnwrapConfig,
    encode_json_lines,
)
from lakehouse.lake.store import LocalStore

T = "eco2.public.things"
UTC = dt.UTC
I64 = ConnectSchema("int64")


def basic_fields(dbz):
    return [("id", I64), ("name", dbz.opt("string"))]


def c_rows(dbz, ids, lsn0=100, **kw):
    return [dbz.record("c", after={"id": i, "name": f"n{i}"}, lsn=lsn0 + i, tx_id=10 + i, **kw) for i in ids]


def read(store, topic=T, **kw) -> pa.Table:
    return LakeReader(store, **kw).read_changes(topic)


def positions(t: pa.Table) -> list[tuple[int, int, int]]:
    return list(
        zip(
            t.column("__kafka_partition").to_pylist(),
            t.column("__file_start_offset").to_pylist(),
            t.column("__row_index").to_pylist(),
        )
    )


# --------------------------------------------------------------------------------------------
# 1  companion files are never data
# --------------------------------------------------------------------------------------------


def test_p01_companions_are_not_read_as_data(tmp_path, dbz):
    store = LocalStore(tmp_path)
    schema = dbz.envelope(T, basic_fields(dbz))
    w = dbz.write(store, T, schema, c_rows(dbz, [1, 2]), [0, 1])
    (value_key,) = w.objects_written
    data = store.get_bytes(value_key)
    stem = value_key[: -len(".snappy.parquet")]
    # the companions are copies of the value file: reading any of them as data would duplicate rows
    companions = [
        stem + ".keys.snappy.parquet",
        stem + ".headers.snappy.parquet",
        stem + ".keys.avro",
        stem + ".headers.avro",
        stem + ".headers.json",
        f"topics/{T}/tombstone/{T}+0+0000000042.keys.avro",
        f"topics/{T}/tombstone/{T}+0+0000000042.keys.snappy.parquet",
    ]
    for k in companions:
        store.put_bytes(k, data)
    reader = LakeReader(store)
    listing = reader.scan()
    assert listing.errors == []
    assert [o.key for o in listing.objects[T]] == [value_key]
    assert sorted(i.key for i in listing.ignored) == sorted(companions)
    t = reader.read_changes(T)
    assert t.column("id").to_pylist() == [1, 2]
    assert set(t.column("__source_object").to_pylist()) == {value_key}


# --------------------------------------------------------------------------------------------
# 2  offsets past 10 digits
# --------------------------------------------------------------------------------------------


def test_p02_offsets_past_ten_digits_sort_numerically(tmp_path, dbz):
    store = LocalStore(tmp_path)
    schema = dbz.envelope(T, basic_fields(dbz))
    offs = [9_999_999_998, 9_999_999_999, 10_000_000_000, 10_000_000_001]
    dbz.write(store, T, schema, c_rows(dbz, [0, 1, 2, 3]), offs, config=SinkConfig(flush_size=2))
    keys = [o.key for o in store.list()]
    # lexicographic listing puts the 11-digit offset first
    assert keys[0].endswith(f"{T}+0+10000000000.snappy.parquet")
    assert keys[1].endswith(f"{T}+0+9999999998.snappy.parquet")
    t = read(store)
    assert t.column("__file_start_offset").to_pylist() == [9_999_999_998] * 2 + [10_000_000_000] * 2
    assert t.column("__file_start_offset").type == pa.int64()
    assert t.column("id").to_pylist() == [0, 1, 2, 3]
    assert t.column("__lsn").to_pylist() == [100, 101, 102, 103]


# --------------------------------------------------------------------------------------------
# 3  overlapping files (replays with different cut points)
# --------------------------------------------------------------------------------------------


def test_p03_overlapping_files_are_both_read(tmp_path, dbz):
    store = LocalStore(tmp_path)
    schema = dbz.envelope(T, basic_fields(dbz))
    rows = c_rows(dbz, range(6))
    dbz.write(store, T, schema, rows, list(range(6)), config=SinkConfig(flush_size=3))  # +0, +3
    dbz.write(store, T, schema, rows[2:], [2, 3, 4, 5], config=SinkConfig(flush_size=2))  # replay: +2, +4
    t = read(store)
    assert t.num_rows == 10  # nothing dropped silently: duplicates stay visible for compaction
    assert positions(t) == [
        (0, 0, 0),
        (0, 0, 1),
        (0, 0, 2),
        (0, 2, 0),
        (0, 2, 1),
        (0, 3, 0),
        (0, 3, 1),
        (0, 3, 2),
        (0, 4, 0),
        (0, 4, 1),
    ]
    assert t.column("id").to_pylist() == [0, 1, 2, 2, 3, 3, 4, 5, 4, 5]
    by_event: dict = {}
    for r in t.to_pylist():
        by_event.setdefault((r["id"], r["__lsn"], r["__tx_id"]), set()).add(r["__source_object"])
    assert {k[0]: len(v) for k, v in by_event.items()} == {0: 1, 1: 1, 2: 2, 3: 2, 4: 2, 5: 2}


# --------------------------------------------------------------------------------------------
# 4  non-contiguous offsets
# --------------------------------------------------------------------------------------------


def test_p04_non_contiguous_offsets(tmp_path, dbz):
    store = LocalStore(tmp_path)
    schema = dbz.envelope(T, basic_fields(dbz))
    dbz.write(store, T, schema, c_rows(dbz, range(5)), [0, 3, 4, 10, 25], config=SinkConfig(flush_size=2))
    keys = sorted(o.key.rsplit("+", 1)[1] for o in store.list())
    assert keys == [
        "0000000000.snappy.parquet",
        "0000000004.snappy.parquet",
        "0000000025.snappy.parquet",
    ]
    t = read(store)
    assert positions(t) == [(0, 0, 0), (0, 0, 1), (0, 4, 0), (0, 4, 1), (0, 25, 0)]
    assert t.column("id").to_pylist() == [0, 1, 2, 3, 4]


# --------------------------------------------------------------------------------------------
# 5  Kafka coordinates come from the object name, never from the value
# --------------------------------------------------------------------------------------------


def test_p05_position_comes_from_the_object_key(tmp_path, dbz):
    store = LocalStore(tmp_path)
    fields = [("id", I64), ("partition", dbz.opt("int32")), ("offset", dbz.opt("int64"))]
    schema = dbz.envelope(T, fields)
    rows = [dbz.record("c", after={"id": i, "partition": 0, "offset": i}, lsn=100 + i) for i in (1, 2)]
    w = dbz.write(store, T, schema, rows, [4711, 4712], partition=3)
    (key,) = w.objects_written
    assert key == f"topics/{T}/partition=3/{T}+3+0000004711.snappy.parquet"
    # the value file holds no Kafka coordinates at all: only the envelope
    assert pq.read_schema(store.path(key)).names == [
        "before",
        "after",
        "source",
        "transaction",
        "op",
        "ts_ms",
        "ts_us",
        "ts_ns",
    ]
    other = build_object_key(SinkConfig().layout, T, "partition=5", 5, 99, ".snappy.parquet")
    store.put_bytes(other, store.get_bytes(key))
    t = read(store)
    got = [
        (
            r["__kafka_partition"],
            r["__file_start_offset"],
            r["__row_index"],
            r["id"],
            r["partition"],
            r["offset"],
        )
        for r in t.to_pylist()
    ]
    assert got == [
        (3, 4711, 0, 1, 0, 1),
        (3, 4711, 1, 2, 0, 2),
        (5, 99, 0, 1, 0, 1),
        (5, 99, 1, 2, 0, 2),
    ]


# --------------------------------------------------------------------------------------------
# 6  the value file does not say which columns are the key
# --------------------------------------------------------------------------------------------


def test_p06_key_columns_only_from_configuration(tmp_path, dbz):
    store = LocalStore(tmp_path)
    dbz.write(store, T, dbz.envelope(T, basic_fields(dbz)), c_rows(dbz, [1]), [0])
    reader = LakeReader(store)
    assert b"lakehouse.key_columns" not in (reader.plan(T).schema.metadata or {})
    plan = reader.plan(T, key_columns=["id"])
    assert plan.key_columns == ("id",)
    assert plan.schema.metadata[b"lakehouse.key_columns"] == b'["id"]'
    assert reader.read_changes(T, key_columns=["id"]).schema.metadata[b"lakehouse.key_columns"] == b'["id"]'


# --------------------------------------------------------------------------------------------
# 7  deletes
# --------------------------------------------------------------------------------------------


def _create_delete(dbz):
    return [
        dbz.record("c", after={"id": 1, "name": "a"}, lsn=100, tx_id=10),
        dbz.record("c", after={"id": 2, "name": "b"}, lsn=101, tx_id=10),
        dbz.record("d", before={"id": 1, "name": None}, lsn=200, tx_id=11),
    ]


def test_p07_envelope_delete_is_op_d_with_key_from_before(tmp_path, dbz):
    store = LocalStore(tmp_path)
    dbz.write(store, T, dbz.envelope(T, basic_fields(dbz)), _create_delete(dbz), [0, 1, 3])  # 4: tombstone
    t = read(store)
    assert t.column("__op").to_pylist() == ["c", "c", "d"]
    assert t.column("id").to_pylist() == [1, 2, 1]
    assert t.column("name").to_pylist() == ["a", "b", None]
    assert t.column("__lsn").to_pylist() == [100, 101, 200]


def test_p07_unwrap_rewrite_delete_is_op_d(tmp_path, dbz):
    store = LocalStore(tmp_path)
    cfg = SinkConfig(unwrap=UnwrapConfig(delete_handling="rewrite"))
    w = dbz.write(store, T, dbz.envelope(T, basic_fields(dbz)), _create_delete(dbz), [0, 1, 3], config=cfg)
    phys = pq.read_table(store.path(w.objects_written[0]))
    assert phys.column("__deleted").to_pylist() == ["false", "false", "true"]
    assert phys.column("__op").to_pylist() == ["c", "c", "d"]
    t = read(store)
    assert t.column("__op").to_pylist() == ["c", "c", "d"]
    assert t.column("id").to_pylist() == [1, 2, 1]
    assert "__deleted" not in t.column_names


def test_p07_unwrap_drop_mode_has_no_deletes_in_the_lake(tmp_path, dbz):
    store = LocalStore(tmp_path)
    cfg = SinkConfig(unwrap=UnwrapConfig(delete_handling="drop"))
    dbz.write(store, T, dbz.envelope(T, basic_fields(dbz)), _create_delete(dbz), [0, 1, 3], config=cfg)
    t = read(store)
    assert t.column("__op").to_pylist() == ["c", "c"]


# --------------------------------------------------------------------------------------------
# 8  before under REPLICA IDENTITY DEFAULT
# --------------------------------------------------------------------------------------------


def test_p08_before_under_default_identity(tmp_path, dbz):
    store = LocalStore(tmp_path)
    fields = [("id", I64), ("name", ConnectSchema("string")), ("note", dbz.opt("string"))]
    rows = [
        dbz.record("c", after={"id": 1, "name": "a", "note": "x"}, lsn=100),
        # DEFAULT: no before on updates
        dbz.record("u", before=None, after={"id": 1, "name": "b", "note": "y"}, lsn=200),
        # FULL: before is the old row; the image must still be after
        dbz.record(
            "u",
            before={"id": 1, "name": "b", "note": "y"},
            after={"id": 1, "name": "c", "note": None},
            lsn=300,
        ),
        # DEFAULT delete: key + fallback "" for the NOT NULL column, nulls elsewhere
        dbz.record("d", before={"id": 1, "name": "", "note": None}, lsn=400),
    ]
    dbz.write(store, T, dbz.envelope(T, fields), rows, [0, 1, 2, 3])
    t = read(store)
    assert t.column("__op").to_pylist() == ["c", "u", "u", "d"]
    assert t.column("name").to_pylist() == ["a", "b", "c", ""]
    assert t.column("note").to_pylist() == ["x", "y", None, None]
    assert t.column("id").to_pylist() == [1, 1, 1, 1]


# --------------------------------------------------------------------------------------------
# 9  TOAST placeholders
# --------------------------------------------------------------------------------------------

PLACEHOLDER_BYTES = TOAST_PLACEHOLDER.encode()


def _java_name_uuid(data: bytes) -> str:
    """java.util.UUID.nameUUIDFromBytes (what Debezium puts into uuid[] columns)."""
    h = bytearray(hashlib.md5(data).digest())
    h[6] = (h[6] & 0x0F) | 0x30
    h[8] = (h[8] & 0x3F) | 0x80
    return str(uuid.UUID(bytes=bytes(h)))


def test_p09_toast_placeholder_forms(tmp_path, dbz):
    store = LocalStore(tmp_path)
    fields = [
        ("id", I64),
        ("body", dbz.opt("string")),
        ("blob", dbz.opt("bytes")),
        ("doc", dbz.opt("string", "io.debezium.data.Json")),
        ("tags", dbz.opt("array", items=dbz.opt("string"))),
        ("nums", dbz.opt("array", items=dbz.opt("int32"))),
        ("bigs", dbz.opt("array", items=dbz.opt("int64"))),
    ]
    full = {
        "id": 1,
        "body": "x" * 3000,
        "blob": b"\x00\x01",
        "doc": '{"a": 1}',
        "tags": ["a", "b"],
        "nums": [1, 2],
        "bigs": [3],
    }
    toasted = {
        "id": 1,
        "body": TOAST_PLACEHOLDER,
        "blob": PLACEHOLDER_BYTES,
        "doc": TOAST_PLACEHOLDER,
        "tags": [TOAST_PLACEHOLDER],
        "nums": list(PLACEHOLDER_BYTES),
        "bigs": list(PLACEHOLDER_BYTES),
    }
    near = {
        "id": 1,
        "body": TOAST_PLACEHOLDER + " ",
        "blob": None,
        "doc": None,
        "tags": ["x", TOAST_PLACEHOLDER],
        "nums": list(PLACEHOLDER_BYTES)[:-1],
        "bigs": [],
    }
    rows = [
        dbz.record("c", after=full, lsn=1),
        dbz.record("u", after=toasted, lsn=2),
        dbz.record("u", after=near, lsn=3),
    ]
    dbz.write(store, T, dbz.envelope(T, fields), rows, [0, 1, 2])
    t = read(store)
    # the placeholder survives as written (a jsonb column holds a string that is not JSON)
    assert t.column("doc").to_pylist()[1] == TOAST_PLACEHOLDER
    assert t.column("body").to_pylist()[1] == TOAST_PLACEHOLDER
    assert len(PLACEHOLDER_BYTES) == 28
    for col in ("body", "blob", "doc", "tags", "nums", "bigs"):
        mask = is_toast_placeholder(t.column(col).combine_chunks()).to_pylist()
        assert mask == [False, True, False], col


def test_p09_toast_placeholder_uuid_array(tmp_path, dbz):
    store = LocalStore(tmp_path)
    uuid_item = dbz.opt("string", "io.debezium.data.Uuid")
    fields = [("id", I64), ("uuids", dbz.opt("array", items=uuid_item))]
    placeholder_uuid = _java_name_uuid(PLACEHOLDER_BYTES)
    assert placeholder_uuid == "b68a35a7-17ad-35b3-af2a-ae46edb4545a"
    rows = [
        dbz.record("c", after={"id": 1, "uuids": [str(uuid.uuid4())]}, lsn=1),
        dbz.record("u", after={"id": 1, "uuids": [placeholder_uuid]}, lsn=2),
        dbz.record("u", after={"id": 1, "uuids": [placeholder_uuid, str(uuid.uuid4())]}, lsn=3),
    ]
    dbz.write(store, T, dbz.envelope(T, fields), rows, [0, 1, 2])
    t = read(store)
    assert t.column("uuids").to_pylist()[1] == [placeholder_uuid]
    assert is_toast_placeholder(t.column("uuids").combine_chunks()).to_pylist() == [
        False,
        True,
        False,
    ]


def test_p09_toast_placeholder_hstore_map(tmp_path, dbz):
    store = LocalStore(tmp_path)
    fields = [
        ("id", I64),
        ("attrs", dbz.opt("map", keys=ConnectSchema("string"), values=dbz.opt("string"))),
    ]
    rows = [
        dbz.record("c", after={"id": 1, "attrs": [("k", "v")]}, lsn=1),
        dbz.record("u", after={"id": 1, "attrs": [(TOAST_PLACEHOLDER, TOAST_PLACEHOLDER)]}, lsn=2),
    ]
    dbz.write(store, T, dbz.envelope(T, fields), rows, [0, 1])
    t = read(store)
    assert t.column("attrs").to_pylist()[1] == [(TOAST_PLACEHOLDER, TOAST_PLACEHOLDER)]
    assert is_toast_placeholder(t.column("attrs").combine_chunks()).to_pylist() == [False, True]


# --------------------------------------------------------------------------------------------
# 10 / 24  order is the Kafka position, per partition; never lsn, never offsets across partitions
# --------------------------------------------------------------------------------------------


def test_p10_p24_order_is_by_position_not_lsn(tmp_path, dbz):
    store = LocalStore(tmp_path)
    schema = dbz.envelope(T, basic_fields(dbz))
    cfg = SinkConfig(flush_size=2)
    # partition 0: a transaction with a lower change LSN committed after one with a higher LSN
    p0 = [
        dbz.record("c", after={"id": 1, "name": "a"}, lsn=500, tx_id=20),
        dbz.record("u", after={"id": 1, "name": "b"}, lsn=300, tx_id=21),
        dbz.record("u", after={"id": 1, "name": "c"}, lsn=100, tx_id=22),
    ]
    dbz.write(store, T, schema, p0, [5, 6, 7], partition=0, config=cfg)  # +5, +7
    p1 = [
        dbz.record("c", after={"id": 2, "name": "x"}, lsn=50, tx_id=23),
        dbz.record("u", after={"id": 2, "name": "y"}, lsn=900, tx_id=24),
    ]
    dbz.write(store, T, schema, p1, [0, 1], partition=1, config=SinkConfig(flush_size=1))  # +0, +1
    reader = LakeReader(store)
    plan = reader.plan(T)
    # offsets are only compared within a partition: p0's +5/+7 are not interleaved with p1's +0/+1
    assert [(o.ref.kafka_partition, o.ref.start_offset) for o in plan.objects] == [
        (0, 5),
        (0, 7),
        (1, 0),
        (1, 1),
    ]
    t = pa.Table.from_batches(list(reader.iter_changes(plan)), schema=plan.schema)
    assert t.column("__lsn").to_pylist() == [500, 300, 100, 50, 900]
    assert t.column("name").to_pylist() == ["a", "b", "c", "x", "y"]  # per key: last is the newest
    assert positions(t) == [(0, 5, 0), (0, 5, 1), (0, 7, 0), (1, 0, 0), (1, 1, 0)]


# --------------------------------------------------------------------------------------------
# 13  temporal types from connect.name
# --------------------------------------------------------------------------------------------


def test_p13_temporal_types_decoded_from_connect_name(tmp_path, dbz):
    store = LocalStore(tmp_path)
    o = dbz.opt
    fields = [
        ("id", I64),
        ("d", o("int32", "io.debezium.time.Date")),
        ("t", o("int32", "io.debezium.time.Time")),
        ("mt", o("int64", "io.debezium.time.MicroTime")),
        ("ts", o("int64", "io.debezium.time.Timestamp")),
        ("mts", o("int64", "io.debezium.time.MicroTimestamp")),
        ("zts", o("string", "io.debezium.time.ZonedTimestamp")),
        ("dur", o("int64", "io.debezium.time.MicroDuration")),
        ("cd", o("int32", "org.apache.kafka.connect.data.Date")),
        ("ct", o("int32", "org.apache.kafka.connect.data.Time")),
        ("cts", o("int64", "org.apache.kafka.connect.data.Timestamp")),
        ("plain", o("int64")),
    ]
    after = {
        "id": 1,
        "d": 19850,
        "t": 45_296_789,
        "mt": 45_296_789_012,
        "ts": 1_715_088_896_123,
        "mts": 1_715_088_896_123_456,
        "zts": "2024-05-07T13:34:56.123456Z",
        "dur": 90_061_000_001,
        "cd": dt.date(2024, 5, 7),
        "ct": dt.time(12, 34, 56, 789000),
        "cts": dt.datetime(2024, 5, 7, 13, 34, 56, 123000, tzinfo=UTC),
        "plain": 1_715_088_896_123_456,
    }
    inf = {"id": 2, "mts": 9_223_372_036_825_200_000, "d": -1, "dur": -1}
    rows = [dbz.record("c", after=after, lsn=1), dbz.record("c", after=inf, lsn=2)]
    w = dbz.write(store, T, dbz.envelope(T, fields), rows, [0, 1])
    # physically the Debezium types carry no logical annotation: plain INT32/INT64/BINARY
    phys = pq.read_schema(store.path(w.objects_written[0])).field("after").type
    assert phys.field("d").type == pa.int32() and phys.field("mts").type == pa.int64()
    assert phys.field("zts").type == pa.string()
    t = read(store)
    s = t.schema
    assert s.field("d").type == pa.date32()
    assert s.field("t").type == pa.time32("ms")
    assert s.field("mt").type == pa.time64("us")
    assert s.field("ts").type == pa.timestamp("ms")
    assert s.field("mts").type == pa.timestamp("us")
    assert s.field("zts").type == pa.timestamp("us", tz="UTC")
    assert s.field("dur").type == pa.duration("us")
    assert s.field("cd").type == pa.date32()
    assert s.field("ct").type == pa.time32("ms")
    assert s.field("cts").type == pa.timestamp("ms", tz="UTC")
    assert s.field("plain").type == pa.int64()  # no connect.name: stays a number
    assert s.field("mts").metadata[b"debezium.name"] == b"io.debezium.time.MicroTimestamp"
    r = t.slice(0, 1).to_pylist()[0]
    assert r["d"] == dt.date(2024, 5, 7)
    assert r["t"] == dt.time(12, 34, 56, 789000)
    assert r["mt"] == dt.time(12, 34, 56, 789012)
    assert r["ts"] == dt.datetime(2024, 5, 7, 13, 34, 56, 123000)
    assert r["mts"] == dt.datetime(2024, 5, 7, 13, 34, 56, 123456)
    assert r["zts"] == dt.datetime(2024, 5, 7, 13, 34, 56, 123456, tzinfo=UTC)
    assert r["dur"] == dt.timedelta(days=1, hours=1, minutes=1, seconds=1, microseconds=1)
    assert r["cd"] == dt.date(2024, 5, 7)
    assert r["ct"] == dt.time(12, 34, 56, 789000)
    assert r["cts"] == dt.datetime(2024, 5, 7, 13, 34, 56, 123000, tzinfo=UTC)
    assert r["plain"] == 1_715_088_896_123_456
    # +infinity timestamps keep their sentinel value; pre-epoch values stay negative
    assert t.column("mts").cast(pa.int64()).to_pylist() == [
        1_715_088_896_123_456,
        9_223_372_036_825_200_000,
    ]
    assert t.column("d").to_pylist()[1] == dt.date(1969, 12, 31)
    assert t.column("dur").to_pylist()[1] == dt.timedelta(microseconds=-1)


# --------------------------------------------------------------------------------------------
# 14  VariableScaleDecimal and Decimal without precision
# --------------------------------------------------------------------------------------------


def _vsd(dbz):
    return struct(
        "io.debezium.data.VariableScaleDecimal",
        [("scale", ConnectSchema("int32")), ("value", ConnectSchema("bytes"))],
        optional=True,
    )


def _unscaled(n: int) -> bytes:
    return n.to_bytes(max(1, (n + (n < 0)).bit_length() // 8 + 1), "big", signed=True)


def test_p14_variable_scale_decimal_and_decimal_without_precision(tmp_path, dbz):
    store = LocalStore(tmp_path)
    dec = dbz.opt("bytes", "org.apache.kafka.connect.data.Decimal", {"scale": "2"})  # no precision
    fields = [("id", I64), ("score", _vsd(dbz)), ("amount", dec)]
    values = [(2, 12345), (0, -42), (3, -1), (10, 1), (0, 0), (6, 123_456_789_012_345_678_901_234)]
    amounts = [
        Decimal("12.34"),
        Decimal("-0.01"),
        Decimal("99999999999999999999999999999999999999999.99"),
        None,
        Decimal("0.00"),
        Decimal("1.00"),
    ]
    rows = [
        dbz.record("c", after={"id": i, "score": {"scale": s, "value": _unscaled(u)}, "amount": a}, lsn=i)
        for i, ((s, u), a) in enumerate(zip(values, amounts))
    ]
    rows.append(dbz.record("c", after={"id": 99, "score": None, "amount": None}, lsn=99))
    w = dbz.write(store, T, dbz.envelope(T, fields), rows, list(range(len(rows))))
    phys = pq.read_schema(store.path(w.objects_written[0])).field("after").type
    assert phys.field("score").type == pa.struct(
        [pa.field("scale", pa.int32(), False), pa.field("value", pa.binary(), False)]
    )
    t = read(store)
    assert t.schema.field("score").type == pa.string()
    assert t.schema.field("amount").type == pa.decimal256(64, 2)  # precision 64 default (§4.3)
    got = [None if v is None else Decimal(v) for v in t.column("score").to_pylist()]
    assert got == [
        Decimal("123.45"),
        Decimal(-42),
        Decimal("-0.001"),
        Decimal("1E-10"),
        Decimal(0),
        Decimal("123456789012345678.901234"),
        None,
    ]
    assert t.column("score").to_pylist()[0] == "123.45"
    assert t.column("amount").to_pylist() == amounts + [None]


def test_p14_variable_scale_decimal_beyond_28_digits_is_exact(tmp_path, dbz):
    store = LocalStore(tmp_path)
    fields = [("id", I64), ("score", _vsd(dbz))]
    unscaled = 1_234_567_890_123_456_789_012_345_678_901_234  # 34 digits, numeric allows far more
    rows = [
        dbz.record("c", after={"id": 1, "score": {"scale": 5, "value": _unscaled(unscaled)}}, lsn=1),
        dbz.record("c", after={"id": 2, "score": {"scale": 0, "value": _unscaled(-(10**40) - 1)}}, lsn=2),
    ]
    dbz.write(store, T, dbz.envelope(T, fields), rows, [0, 1])
    got = read(store).column("score").to_pylist()
    assert [Decimal(v) for v in got] == [
        Decimal("12345678901234567890123456789.01234"),
        Decimal(-(10**40) - 1),
    ]


BIG = Decimal("123456789012345678901234567890123456.78")  # numeric(38,2): 38 significant digits
BIG_UNSCALED = 12345678901234567890123456789012345678


def _big_decimal_envelope(dbz):
    return dbz.envelope(
        T,
        [
            ("id", I64),
            (
                "amount",
                dbz.opt(
                    "bytes",
                    "org.apache.kafka.connect.data.Decimal",
                    {"scale": "2", "connect.decimal.precision": "38"},
                ),
            ),
        ],
    )


def test_p14_parquet_decimal_38_digits_is_exact(tmp_path, dbz):
    store = LocalStore(tmp_path)
    rows = [
        dbz.record("c", after={"id": 1, "amount": BIG}, lsn=1),
        dbz.record("c", after={"id": 2, "amount": -BIG}, lsn=2),
    ]
    dbz.write(store, T, _big_decimal_envelope(dbz), rows, [0, 1])
    t = read(store)
    assert t.schema.field("amount").type == pa.decimal128(38, 2)
    assert t.column("amount").to_pylist() == [BIG, -BIG]


def test_p14_json_decimal_38_digits_is_exact(tmp_path, dbz):
    """A JSON line (embedded schema) carrying the exact unscaled bytes of a 38-digit decimal."""
    store = LocalStore(tmp_path)
    env = _big_decimal_envelope(dbz)
    b64 = base64.b64encode(BIG_UNSCALED.to_bytes(16, "big", signed=True)).decode()
    rec = dbz.record("c", after={"id": 1, "amount": b64}, lsn=1)
    line = json.dumps({"schema": env.to_connect_json(), "payload": rec})
    store.put_bytes(
        build_object_key(SinkConfig().layout, T, "partition=0", 0, 0, ".json"),
        line.encode() + b"\n",
    )
    assert read(store).column("amount").to_pylist() == [BIG]


def test_p14_sink_writes_exact_json_decimal_bytes(tmp_path, dbz):
    store = LocalStore(tmp_path)
    w = dbz.write(
        store,
        T,
        _big_decimal_envelope(dbz),
        [dbz.record("c", after={"id": 1, "amount": BIG}, lsn=1)],
        [0],
        config=SinkConfig(format="json"),
    )
    payload = json.loads(store.get_bytes(w.objects_written[0]))
    raw = base64.b64decode(payload["after"]["amount"])
    assert int.from_bytes(raw, "big", signed=True) == BIG_UNSCALED


# --------------------------------------------------------------------------------------------
# 16  schemas merge across files
# --------------------------------------------------------------------------------------------


def _v1(dbz):
    return dbz.envelope(
        T,
        [
            ("id", I64),
            ("qty", dbz.opt("int32")),
            (
                "price",
                dbz.opt(
                    "bytes",
                    "org.apache.kafka.connect.data.Decimal",
                    {"scale": "4", "connect.decimal.precision": "5"},
                ),
            ),
            ("legacy", dbz.opt("string")),
        ],
    )


def _v2(dbz):
    return dbz.envelope(
        T,
        [
            ("id", I64),
            ("qty", dbz.opt("int64")),
            (
                "price",
                dbz.opt(
                    "bytes",
                    "org.apache.kafka.connect.data.Decimal",
                    {"scale": "4", "connect.decimal.precision": "7"},
                ),
            ),
            ("note", dbz.opt("string")),
        ],
    )


def _merge_rows(dbz):
    r1 = [
        dbz.record("c", after={"id": 1, "qty": 5, "price": Decimal("0.1234"), "legacy": "old"}, lsn=1),
        dbz.record("u", after={"id": 1, "qty": 6, "price": Decimal("9.9999"), "legacy": None}, lsn=2),
    ]
    r2 = [
        dbz.record(
            "u",
            after={"id": 1, "qty": 3_000_000_000, "price": Decimal("123.4567"), "note": "n"},
            lsn=3,
        ),
        dbz.record("c", after={"id": 2, "qty": None, "price": Decimal("-999.0001"), "note": None}, lsn=4),
    ]
    return r1, r2


def _assert_merged(t: pa.Table):
    s = t.schema
    assert [f for f in s.names if not f.startswith("__")] == [
        "id",
        "qty",
        "price",
        "legacy",
        "note",
    ]
    assert s.field("qty").type == pa.int64()
    assert s.field("price").type == pa.decimal128(7, 4)
    assert s.field("legacy").type == pa.string() and s.field("note").type == pa.string()
    assert t.column("qty").to_pylist() == [5, 6, 3_000_000_000, None]
    assert t.column("price").to_pylist() == [
        Decimal("0.1234"),
        Decimal("9.9999"),
        Decimal("123.4567"),
        Decimal("-999.0001"),
    ]
    assert t.column("legacy").to_pylist() == ["old", None, None, None]  # dropped column: null later
    assert t.column("note").to_pylist() == [None, None, "n", None]  # added column: null earlier


def test_p16_schema_merge_across_parquet_files(tmp_path, dbz):
    store = LocalStore(tmp_path)
    r1, r2 = _merge_rows(dbz)
    w = SinkWriter(store, SinkConfig(flush_size=100))
    dbz.write(store, T, _v1(dbz), r1, [0, 1], writer=w, close=False)
    dbz.write(store, T, _v2(dbz), r2, [2, 3], writer=w)  # schema change rotates
    assert len(w.objects_written) == 2
    _assert_merged(read(store))


def test_p16_schema_merge_inside_one_json_file(tmp_path, dbz):
    """A schemaless JSON sink never rotates: one object holds lines with different schemas."""
    store = LocalStore(tmp_path)
    r1, r2 = _merge_rows(dbz)
    data = encode_json_lines(dbz.table(_v1(dbz), r1), _v1(dbz), embed_schema=True) + encode_json_lines(
        dbz.table(_v2(dbz), r2), _v2(dbz), embed_schema=True
    )
    key = build_object_key(SinkConfig().layout, T, "partition=0", 0, 0, ".json")
    store.put_bytes(key, data)
    t = read(store)
    _assert_merged(t)
    assert t.column("__row_index").to_pylist() == [0, 1, 2, 3]


def test_p16_incompatible_type_change_raises(tmp_path, dbz):
    store = LocalStore(tmp_path)
    r1, _ = _merge_rows(dbz)
    v3 = dbz.envelope(T, [("id", I64), ("qty", dbz.opt("string"))])
    w = SinkWriter(store, SinkConfig(flush_size=100))
    dbz.write(store, T, _v1(dbz), r1, [0, 1], writer=w, close=False)
    dbz.write(store, T, v3, [dbz.record("u", after={"id": 1, "qty": "many"}, lsn=3)], [2], writer=w)
    bad_key = w.objects_written[-1]
    with pytest.raises(SchemaConflictError) as ei:
        LakeReader(store).plan(T)
    e = ei.value
    assert (e.topic, e.column, e.key) == (T, "qty", bad_key)
    assert e.old == pa.int32() and e.new == pa.string()
    msg = str(e)
    assert T in msg and "'qty'" in msg and bad_key in msg


# --------------------------------------------------------------------------------------------
# 17  commit time is source.ts_*, not the processing-time ts_ms
# --------------------------------------------------------------------------------------------


def test_p17_commit_time_from_source_not_processing_time(tmp_path, dbz):
    src_us = 1_715_088_896_123_456
    commit = dt.datetime(2024, 5, 7, 13, 34, 56, 123456, tzinfo=UTC)
    # envelope with source.ts_us
    store = LocalStore(tmp_path / "a")
    rec = dbz.record("c", after={"id": 1, "name": "a"}, ts_us=src_us, ts_ms=src_us // 1000 + 60_000)
    rec["source"]["ts_ms"] = src_us // 1000
    dbz.write(store, T, dbz.envelope(T, basic_fields(dbz)), [rec], [0])
    assert read(store).column("__commit_ts").to_pylist() == [commit]
    # Debezium < 2.6: no source.ts_us -> ms resolution from source.ts_ms
    old_src = struct(
        dbz.source_schema.name,
        [(f.name, f.schema) for f in dbz.source_schema.fields if f.name not in ("ts_us", "ts_ns")],
        version=1,
    )
    store = LocalStore(tmp_path / "b")
    rec = dbz.record(
        "c",
        after={"id": 1, "name": "a"},
        ts_us=src_us,
        source_schema=old_src,
        ts_ms=src_us // 1000 + 60_000,
    )
    rec["source"]["ts_ms"] = src_us // 1000
    dbz.write(store, T, dbz.envelope(T, basic_fields(dbz), source=old_src), [rec], [0])
    assert read(store).column("__commit_ts").to_pylist() == [commit.replace(microsecond=123000)]
    # unwrap with add.fields ts_ms (processing time) and source.ts_ms (commit time)
    store = LocalStore(tmp_path / "c")
    rec = dbz.record("c", after={"id": 1, "name": "a"}, ts_us=src_us, ts_ms=src_us // 1000 + 60_000)
    rec["source"]["ts_ms"] = src_us // 1000
    cfg = SinkConfig(unwrap=UnwrapConfig(add_fields=("op", "ts_ms", "source.ts_ms")))
    w = dbz.write(store, T, dbz.envelope(T, basic_fields(dbz)), [rec], [0], config=cfg)
    phys = pq.read_table(store.path(w.objects_written[0]))
    assert phys.column("__ts_ms").to_pylist() == [src_us // 1000 + 60_000]
    assert read(store).column("__commit_ts").to_pylist() == [commit.replace(microsecond=123000)]


# --------------------------------------------------------------------------------------------
# 18  __deleted is a string
# --------------------------------------------------------------------------------------------


def test_p18_deleted_is_the_string_true(tmp_path, dbz):
    store = LocalStore(tmp_path)
    cfg = SinkConfig(unwrap=UnwrapConfig(add_fields=("lsn",)))  # no __op: only __deleted tells
    rows = _create_delete(dbz) + [dbz.record("u", after={"id": 2, "name": "c"}, lsn=300, tx_id=12)]
    w = dbz.write(store, T, dbz.envelope(T, basic_fields(dbz)), rows, [0, 1, 3, 5], config=cfg)
    phys = pq.read_table(store.path(w.objects_written[0]))
    assert phys.schema.field("__deleted").type == pa.string()
    assert "__op" not in phys.column_names
    t = read(store)
    assert t.column("__op").to_pylist() == ["u", "u", "d", "u"]  # c/u/r indistinguishable: upserts
    assert t.column("id").to_pylist() == [1, 2, 1, 2]
    assert t.column("__lsn").to_pylist() == [100, 101, 200, 300]


# --------------------------------------------------------------------------------------------
# 19  heartbeat / transaction / message topics
# --------------------------------------------------------------------------------------------


def _write_non_table_topics(store, dbz):
    w = SinkWriter(store, SinkConfig(flush_size=10))
    hb = struct("io.debezium.connector.common.Heartbeat", [("ts_ms", I64)], version=1)
    w.write("__debezium-heartbeat.eco2", 0, pa.table({"ts_ms": [1, 2]}), hb, np.array([0, 1]))
    dc = struct(
        "event.data_collection",
        [("data_collection", ConnectSchema("string")), ("event_count", I64)],
    )
    tx = struct(
        "io.debezium.connector.common.TransactionMetadataValue",
        [
            ("status", ConnectSchema("string")),
            ("id", ConnectSchema("string")),
            ("event_count", dbz.opt("int64")),
            ("data_collections", dbz.opt("array", items=dc)),
            ("ts_ms", I64),
        ],
        version=1,
    )
    w.write(
        "eco2.transaction",
        0,
        pa.Table.from_pylist(
            [
                {
                    "status": "BEGIN",
                    "id": "571:53195832",
                    "event_count": None,
                    "data_collections": None,
                    "ts_ms": 1,
                },
                {
                    "status": "END",
                    "id": "571:53195832",
                    "event_count": 1,
                    "data_collections": [{"data_collection": "public.things", "event_count": 1}],
                    "ts_ms": 2,
                },
            ],
            schema=pa.schema(list(tx.physical_arrow_type())),
        ),
        tx,
        np.array([0, 1]),
    )
    msg_block = struct(
        "io.debezium.connector.postgresql.Message",
        [("prefix", ConnectSchema("string")), ("content", dbz.opt("bytes"))],
    )
    msg = struct(
        "eco2.message.Envelope",
        [
            ("op", ConnectSchema("string")),
            ("ts_ms", dbz.opt("int64")),
            ("source", dbz.source_schema),
            ("message", msg_block),
        ],
        version=2,
    )
    src = dbz.source(table="", schema="", tx_id=None)
    w.write(
        "eco2.message",
        0,
        pa.Table.from_pylist(
            [
                {
                    "op": "m",
                    "ts_ms": 1,
                    "source": src,
                    "message": {"prefix": "audit", "content": b"hi"},
                }
            ],
            schema=pa.schema(list(msg.physical_arrow_type())),
        ),
        msg,
        np.array([0]),
    )
    w.close()


def test_p19_heartbeat_transaction_and_message_topics_excluded(tmp_path, dbz):
    store = LocalStore(tmp_path)
    dbz.write(store, T, dbz.envelope(T, basic_fields(dbz)), c_rows(dbz, [1]), [0])
    _write_non_table_topics(store, dbz)
    listing = LakeReader(store).scan()
    assert listing.errors == []
    assert listing.topics == [T]
    assert listing.excluded_topics == {
        "__debezium-heartbeat.eco2",
        "eco2.transaction",
        "eco2.message",
    }
    # and an explicit exclusion list works for anything else
    listing = LakeReader(store, exclude_topics=[T]).scan()
    assert listing.topics == [] and T in listing.excluded_topics


@pytest.mark.parametrize("table", ["message", "transaction"])
def test_p19_real_tables_named_message_or_transaction_are_read(tmp_path, dbz, table):
    store = LocalStore(tmp_path)
    topic = f"eco2.public.{table}"
    rows = [dbz.record("c", after={"id": 1, "name": "hello"}, table=table, lsn=1)]
    dbz.write(store, topic, dbz.envelope(topic, basic_fields(dbz)), rows, [0])
    _write_non_table_topics(store, dbz)
    reader = LakeReader(store)
    assert topic in reader.scan().topics
    t = reader.read_changes(topic)
    assert t.column("name").to_pylist() == ["hello"]
    assert t.column("__table").to_pylist() == [f"public.{table}"]


# --------------------------------------------------------------------------------------------
# 20  truncate
# --------------------------------------------------------------------------------------------


def test_p20_truncate_is_a_keyless_t_row(tmp_path, dbz):
    schema = dbz.envelope(T, basic_fields(dbz))
    rows = c_rows(dbz, [1, 2]) + [dbz.record("t", lsn=500, tx_id=50)] + c_rows(dbz, [3], lsn0=600)
    store = LocalStore(tmp_path / "env")
    dbz.write(store, T, schema, rows, [0, 1, 2, 3])
    t = read(store)
    assert t.column("__op").to_pylist() == ["c", "c", "t", "c"]
    tr = t.slice(2, 1).to_pylist()[0]
    assert (tr["id"], tr["name"]) == (None, None)
    assert (tr["__lsn"], tr["__tx_id"], tr["__table"]) == (500, 50, "public.things")
    # the unwrap SMT always drops truncates: the offset stays a gap
    store = LocalStore(tmp_path / "unwrap")
    dbz.write(store, T, schema, rows, [0, 1, 2, 3], config=SinkConfig(flush_size=1, unwrap=UnwrapConfig()))
    t = read(store)
    assert t.column("__op").to_pylist() == ["c", "c", "c"]
    assert t.column("__file_start_offset").to_pylist() == [0, 1, 3]


# --------------------------------------------------------------------------------------------
# 23  source.snapshot is a string
# --------------------------------------------------------------------------------------------


def test_p23_snapshot_is_a_string(tmp_path, dbz):
    store = LocalStore(tmp_path)
    marks = [
        "first",
        "true",
        "first_in_data_collection",
        "last_in_data_collection",
        "last",
        "false",
        "incremental",
    ]
    rows = []
    for i, m in enumerate(marks):
        op = "c" if m == "false" else "r"
        if m == "incremental":  # incremental snapshot reads have no lsn / txId
            rows.append(dbz.record(op, after={"id": i, "name": m}, snapshot=m, lsn=None, tx_id=None))
        else:
            rows.append(dbz.record(op, after={"id": i, "name": m}, snapshot=m, lsn=100, tx_id=7))
    dbz.write(store, T, dbz.envelope(T, basic_fields(dbz)), rows, list(range(len(rows))))
    t = read(store)
    assert t.schema.field("__snapshot").type == pa.string()
    assert t.column("__snapshot").to_pylist() == marks
    assert t.column("__op").to_pylist() == ["r"] * 5 + ["c", "r"]
    assert t.column("__lsn").to_pylist() == [100] * 6 + [None]
    assert t.column("__tx_id").to_pylist() == [7] * 6 + [None]


# --------------------------------------------------------------------------------------------
# 25  ZonedTimestamp with 0..9 fractional digits
# --------------------------------------------------------------------------------------------


def test_p25_zoned_timestamp_fraction_widths(tmp_path, dbz):
    store = LocalStore(tmp_path)
    fields = [("id", I64), ("at", dbz.opt("string", "io.debezium.time.ZonedTimestamp"))]
    frac = "123456789"
    texts = ["2024-05-07T13:34:56Z"] + [f"2024-05-07T13:34:56.{frac[:n]}Z" for n in range(1, 10)]
    texts += ["1969-12-31T23:59:59.999999999Z", "1970-01-01T00:00:00.000000Z", None]
    rows = [dbz.record("c", after={"id": i, "at": s}, lsn=i) for i, s in enumerate(texts)]
    dbz.write(store, T, dbz.envelope(T, fields), rows, list(range(len(rows))))
    got = read(store).column("at").to_pylist()
    base = dt.datetime(2024, 5, 7, 13, 34, 56, tzinfo=UTC)
    us = [0, 100000, 120000, 123000, 123400, 123450, 123456, 123456, 123456, 123456]
    assert got[:10] == [base.replace(microsecond=u) for u in us]  # beyond µs: truncated, never rounded
    assert got[10] == dt.datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    assert got[11] == dt.datetime(1970, 1, 1, tzinfo=UTC)
    assert got[12] is None
