"""Avro lakes: what the S3 sink's AvroFormat writes reads exactly like the Parquet objects of the
same records.

* the reader on Avro objects (sink emulation) equals the Parquet reading of the same events: every
  Connect/Debezium type, envelope and unwrap, every ``avro.codec``, batches across blocks, schema
  evolution across objects, the real Debezium 3.6.3 samples;
* one generated workload written as Parquet, JSON and Avro compacts to identical states;
* a broken Avro object fails its own table only, with an error naming the object;
* a real capture (PostgreSQL + Debezium) into an Avro lake reads back like the Parquet capture of
  the same changes and like ``SELECT *`` (slow).
"""

from __future__ import annotations

import datetime as dt
import io
import json
from decimal import Decimal
from pathlib import Path

import fastavro
import numpy as np
import pyarrow as pa
import pytest
from support.sample_lake import load_events, write_sample_lake
from typer.testing import CliRunner

from lakehouse.cli import app
from lakehouse.config import TableConfig, TablesConfig, load_config
from lakehouse.generate import GeneratorOptions, generate_lake
from lakehouse.lake.avrofile import CODECS, AvroContainer, write_container
from lakehouse.lake.connect import ConnectSchema, avro_schema_json, parse_avro_schema, struct
from lakehouse.lake.layout import LakeObjectError, build_object_key
from lakehouse.lake.reader import LakeReader
from lakehouse.lake.semantic import TOAST_PLACEHOLDER
from lakehouse.lake.sink import SinkConfig, SinkWriter, UnwrapConfig, encode_parquet
from lakehouse.lake.store import LocalStore
from lakehouse.state.compact import CompactOptions, compact
from lakehouse.state.export import visible_rows
from lakehouse.state.table import StateTable

T = "eco2.public.things"
I64 = ConnectSchema("int64")
DEC = "org.apache.kafka.connect.data.Decimal"
UTC = dt.UTC
BIG = Decimal("123456789012345678901234567890123456.78")  # numeric(38,2): 38 digits
HUGE = Decimal("-99999999999999999999999999999999999999999.99")  # numeric without precision (p=64)
FAR_MS = 3 * 10**15  # a Connect Timestamp in the year ~97000: no Python datetime holds it
INFINITY_US = 9_223_372_036_825_200_000  # Debezium's +infinity timestamp


def avro_config(codec: str = "null", **kw) -> SinkConfig:
    return SinkConfig(format="avro", avro_codec=codec, **kw)


def comparable(t: pa.Table) -> pa.Table:
    return t.drop_columns(["__source_object"])  # the only column that names the file


def assert_reads_like_parquet(parquet: LocalStore, avro: LocalStore) -> dict[str, pa.Table]:
    """Every topic of the Avro lake reads exactly as the Parquet one (schema with its metadata,
    values, positions, row counts per object); returns the Avro readings."""
    rp, ra = LakeReader(parquet), LakeReader(avro)
    lp, la = rp.scan(), ra.scan()
    assert la.topics == lp.topics and la.topics
    assert not la.errors and not lp.errors
    out = {}
    for topic in lp.topics:
        pobjs, aobjs = lp.objects[topic], la.objects[topic]
        assert [o.key.rsplit(".", 2)[0] for o in pobjs] == [o.key.removesuffix(".avro") for o in aobjs]
        assert all(o.ref.format == "avro" for o in aobjs)
        want, got = rp.read_changes(topic), ra.read_changes(topic)
        assert got.schema.equals(want.schema, check_metadata=True), topic
        assert comparable(got).equals(comparable(want)), topic
        rp.plan(topic, pobjs), ra.plan(topic, aobjs)
        assert [o.rows for o in aobjs] == [o.rows for o in pobjs] and sum(
            o.rows for o in aobjs
        ) == got.num_rows
        out[topic] = got
    return out


def header(store: LocalStore, key: str):
    with AvroContainer(io.BytesIO(store.get_bytes(key))) as avro:
        return avro.header


# --------------------------------------------------------------------------------------------
# (a) every type, envelope and unwrap, every codec
# --------------------------------------------------------------------------------------------


def every_type_fields(dbz) -> list[tuple[str, ConnectSchema]]:
    o = dbz.opt
    return [
        ("id", I64),
        ("i8", o("int8")),
        ("i16", o("int16")),
        ("i32", o("int32")),
        ("f32", o("float32")),
        ("f64", o("float64")),
        ("flag", o("boolean")),
        ("txt", o("string")),
        ("blob", o("bytes")),
        ("doc", o("string", "io.debezium.data.Json", version=1)),
        ("uid", o("string", "io.debezium.data.Uuid", version=1)),
        ("kind", o("string", "io.debezium.data.Enum", {"allowed": "a,b,c"}, version=1)),
        ("xml", o("string", "io.debezium.data.Xml", version=1)),
        ("bits", o("bytes", "io.debezium.data.Bits", {"length": "8"}, version=1)),
        ("d", o("int32", "io.debezium.time.Date", version=1)),
        ("t", o("int32", "io.debezium.time.Time", version=1)),
        ("mt", o("int64", "io.debezium.time.MicroTime", version=1)),
        ("nt", o("int64", "io.debezium.time.NanoTime", version=1)),
        ("ts", o("int64", "io.debezium.time.Timestamp", version=1)),
        ("mts", o("int64", "io.debezium.time.MicroTimestamp", version=1)),
        ("nts", o("int64", "io.debezium.time.NanoTimestamp", version=1)),
        ("zts", o("string", "io.debezium.time.ZonedTimestamp", version=1)),
        ("zt", o("string", "io.debezium.time.ZonedTime", version=1)),
        ("dur", o("int64", "io.debezium.time.MicroDuration", version=1)),
        ("ival", o("string", "io.debezium.time.Interval", version=1)),
        ("cd", o("int32", "org.apache.kafka.connect.data.Date", version=1)),
        ("ct", o("int32", "org.apache.kafka.connect.data.Time", version=1)),
        ("cts", o("int64", "org.apache.kafka.connect.data.Timestamp", version=1)),
        ("price", o("bytes", DEC, {"scale": "4", "connect.decimal.precision": "5"}, version=1)),
        ("big", o("bytes", DEC, {"scale": "2", "connect.decimal.precision": "38"}, version=1)),
        ("anyprec", o("bytes", DEC, {"scale": "2"}, version=1)),  # no precision: AvroData says 64
        ("odd", o("bytes", DEC, {"scale": "5", "connect.decimal.precision": "2"}, version=1)),  # numeric(2,5)
        (
            "vsd",
            struct(
                "io.debezium.data.VariableScaleDecimal",
                [("scale", ConnectSchema("int32")), ("value", ConnectSchema("bytes"))],
                optional=True,
            ),
        ),
        ("tags", o("array", items=o("string"))),
        ("nums", o("array", items=o("int32"))),
        ("days", o("array", items=o("int32", "io.debezium.time.Date", version=1))),
        (
            "amounts",
            o("array", items=o("bytes", DEC, {"scale": "2", "connect.decimal.precision": "10"}, version=1)),
        ),
        ("attrs", o("map", keys=ConnectSchema("string"), values=o("string"))),
        (
            "point",
            struct(
                "io.debezium.data.geometry.Point",
                [
                    ("x", ConnectSchema("float64")),
                    ("y", ConnectSchema("float64")),
                    ("wkb", o("bytes")),
                    ("srid", o("int32")),
                ],
                optional=True,
                version=1,
            ),
        ),
    ]


def _unscaled(n: int) -> bytes:
    return n.to_bytes(max(1, (n + (n < 0)).bit_length() // 8 + 1), "big", signed=True)


FULL = {
    "id": 1,
    "i8": -128,
    "i16": 32767,
    "i32": -(2**31),
    "f32": 1.5,
    "f64": -1e300,
    "flag": True,
    "txt": "분리수거 근거 ✓",
    "blob": b"\x00\xff\x10",
    "doc": '{"a": [1, 2]}',
    "uid": "9b2f1c1e-4f0a-4c3e-9d7e-1f2a3b4c5d6e",
    "kind": "b",
    "xml": "<a>1</a>",
    "bits": b"\x05",
    "d": 19850,
    "t": 45_296_789,
    "mt": 45_296_789_012,
    "nt": 45_296_789_012_345,
    "ts": 1_715_088_896_123,
    "mts": 1_715_088_896_123_456,
    "nts": 1_715_088_896_123_456_789,
    "zts": "2024-05-07T13:34:56.123456789Z",
    "zt": "13:34:56.123Z",
    "dur": 90_061_000_001,
    "ival": "P1Y2M3DT4H5M6.78S",
    "cd": dt.date(2024, 5, 7),
    "ct": dt.time(12, 34, 56, 789000),
    "cts": dt.datetime(2024, 5, 7, 13, 34, 56, 123000, tzinfo=UTC),
    "price": Decimal("9.9999"),
    "big": BIG,
    "anyprec": HUGE,
    "odd": (12).to_bytes(2, "big"),
    "vsd": {"scale": 3, "value": _unscaled(12345)},
    "tags": ["a", None, "c"],
    "nums": [1, None, -3],
    "days": [0, -1, None],
    "amounts": [Decimal("1.50"), None, Decimal("-99999999.99")],
    "attrs": [("k", "v"), ("n", None)],
    "point": {"x": 1.5, "y": -2.25, "wkb": b"\x01\x01", "srid": None},
}
EDGES = {  # extreme but valid stored values
    "id": 3,
    "d": -719162,
    "mts": INFINITY_US,
    "cts": FAR_MS,
    "cd": dt.date(1, 1, 1),
    "ts": -62_135_596_800_000,
    "price": Decimal("-9.9999"),
    "big": -BIG,
    "anyprec": Decimal("0.01"),
    "vsd": {"scale": 0, "value": _unscaled(-(10**40) - 1)},
    "tags": [],
    "attrs": [],
    "amounts": [],
}
TOASTED = {
    "id": 1,
    "txt": TOAST_PLACEHOLDER,
    "blob": TOAST_PLACEHOLDER.encode(),
    "tags": [TOAST_PLACEHOLDER],
    "doc": TOAST_PLACEHOLDER,
    "price": Decimal("0.1234"),
}


def every_type_rows(dbz) -> list[dict]:
    return [
        dbz.record("r", after=FULL, lsn=1, snapshot="first"),
        dbz.record("c", after={"id": 2}, lsn=2),  # every optional column null
        dbz.record("c", after=EDGES, lsn=3),
        dbz.record("u", after=TOASTED, before=None, lsn=4),
        dbz.record("d", before={"id": 3}, lsn=5),  # REPLICA IDENTITY DEFAULT: key only
        dbz.record("t", lsn=6),
        dbz.record("c", after=dict(FULL, id=4), lsn=7),
    ]


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("shape", ["envelope", "unwrap"])
def test_every_type_reads_like_parquet(tmp_path, dbz, shape, codec):
    unwrap = UnwrapConfig() if shape == "unwrap" else None
    schema = dbz.envelope(T, every_type_fields(dbz))
    rows = every_type_rows(dbz)
    offsets = list(range(0, 2 * len(rows), 2))  # gaps, as tombstones leave them
    pq_store, av_store = LocalStore(tmp_path / "parquet"), LocalStore(tmp_path / "avro")
    dbz.write(pq_store, T, schema, rows, offsets, config=SinkConfig(flush_size=4, unwrap=unwrap))
    w = dbz.write(av_store, T, schema, rows, offsets, config=avro_config(codec, flush_size=4, unwrap=unwrap))
    assert [k.rsplit("/", 1)[1] for k in w.objects_written] == [
        f"{T}+0+0000000000.avro",
        f"{T}+0+0000000008.avro",
    ]

    got = assert_reads_like_parquet(pq_store, av_store)[T]
    # and what both read is right (not merely the same)
    s = got.schema
    expected_types = {
        "i8": pa.int8(),
        "i16": pa.int16(),
        "f32": pa.float32(),
        "blob": pa.binary(),
        "d": pa.date32(),
        "t": pa.time32("ms"),
        "mt": pa.time64("us"),
        "nt": pa.time64("ns"),
        "ts": pa.timestamp("ms"),
        "mts": pa.timestamp("us"),
        "nts": pa.timestamp("ns"),
        "zts": pa.timestamp("us", tz="UTC"),
        "dur": pa.duration("us"),
        "cd": pa.date32(),
        "ct": pa.time32("ms"),
        "cts": pa.timestamp("ms", tz="UTC"),
        "price": pa.decimal128(5, 4),
        "big": pa.decimal128(38, 2),
        "anyprec": pa.decimal256(64, 2),
        "odd": pa.string(),
        "vsd": pa.string(),
        "days": pa.list_(pa.field("element", pa.date32())),
    }
    assert {c: s.field(c).type for c in expected_types} == expected_types
    assert s.field("kind").metadata[b"debezium.name"] == b"io.debezium.data.Enum"
    rows_by_id = {}
    for i, r in enumerate(got.select(["id", "__op"]).to_pylist()):
        rows_by_id.setdefault(r["id"], []).append(i)
    first = got.slice(rows_by_id[1][0], 1)
    one = first.drop_columns(["mts", "cts", "d", "ts", "nts", "nt"]).to_pylist()[0]
    assert one["__op"] == "r" and one["__snapshot"] == "first"
    assert (one["i8"], one["i16"], one["i32"], one["f64"], one["flag"]) == (
        -128,
        32767,
        -(2**31),
        -1e300,
        True,
    )
    assert one["txt"] == "분리수거 근거 ✓" and one["blob"] == b"\x00\xff\x10"
    assert (one["price"], one["big"], one["anyprec"], one["odd"], one["vsd"]) == (
        Decimal("9.9999"),
        BIG,
        HUGE,
        "0.00012",
        "12.345",
    )
    assert one["zts"] == dt.datetime(2024, 5, 7, 13, 34, 56, 123456, tzinfo=UTC)
    assert one["cd"] == dt.date(2024, 5, 7) and one["ct"] == dt.time(12, 34, 56, 789000)
    assert one["tags"] == ["a", None, "c"] and one["days"] == [
        dt.date(1970, 1, 1),
        dt.date(1969, 12, 31),
        None,
    ]
    assert one["amounts"] == [Decimal("1.50"), None, Decimal("-99999999.99")]
    assert one["attrs"] == [("k", "v"), ("n", None)]
    assert one["point"] == {"x": 1.5, "y": -2.25, "wkb": b"\x01\x01", "srid": None}
    assert first.column("nts").cast(pa.int64()).to_pylist() == [1_715_088_896_123_456_789]
    edge = got.slice(rows_by_id[3][0], 1)
    assert edge.column("mts").cast(pa.int64()).to_pylist() == [INFINITY_US]
    assert edge.column("cts").cast(pa.int64()).to_pylist() == [FAR_MS]
    assert edge.column("d").cast(pa.int32()).to_pylist() == [-719162]
    assert edge.column("vsd").to_pylist() == [str(-(10**40) - 1)]
    assert edge.column("big").to_pylist() == [-BIG]
    nulls = got.slice(rows_by_id[2][0], 1).to_pylist()[0]
    assert all(v is None for k, v in nulls.items() if not k.startswith("__") and k != "id")
    toasted = got.slice(rows_by_id[1][1], 1).to_pylist()[0]
    assert (toasted["__op"], toasted["txt"], toasted["tags"]) == ("u", TOAST_PLACEHOLDER, [TOAST_PLACEHOLDER])
    ops = got.column("__op").to_pylist()
    # unwrap: the SMT drops the truncate and adds op (add.fields), so deletes stay d
    assert ops == (
        ["r", "c", "c", "u", "d", "t", "c"] if shape == "envelope" else ["r", "c", "c", "u", "d", "c"]
    )


def test_header_is_what_avroformat_writes(tmp_path, dbz):
    """avro.schema is AvroData's text verbatim (the Parquet footer's), avro.codec the sink's; any
    Avro reader reads the objects (fastavro with its logical types here)."""
    schema = dbz.envelope(T, every_type_fields(dbz))
    pq_store, av_store = LocalStore(tmp_path / "p"), LocalStore(tmp_path / "a")
    # without the year-97000 timestamp: fastavro's logical types stop at Python's datetime range
    rows = [r for r in every_type_rows(dbz) if (r["after"] or {}).get("id") != EDGES["id"]]
    dbz.write(pq_store, T, schema, rows, list(range(len(rows))))
    w = dbz.write(av_store, T, schema, rows, list(range(len(rows))), config=avro_config("deflate"))
    (key,) = w.objects_written
    import pyarrow.parquet as pq

    (pkey,) = [o.key for o in pq_store.list("topics/")]
    footer = pq.ParquetFile(pq_store.path(pkey)).metadata.metadata[b"parquet.avro.schema"].decode()
    h = header(av_store, key)
    assert h.schema_text == footer == avro_schema_json(schema)
    assert h.codec == "deflate"
    with open(av_store.path(key), "rb") as f:
        records = list(fastavro.reader(f))
    assert len(records) == len(rows)
    assert records[0]["after"]["price"] == Decimal("9.9999")  # bytes + logicalType decimal
    assert records[0]["after"]["cd"] == dt.date(2024, 5, 7)
    assert records[0]["op"] == "r" and records[3]["after"] is None and records[3]["before"]["id"] == 3


def test_batches_cross_blocks_and_objects_hold_many_blocks(tmp_path, dbz):
    """Records are handed out in batches (memory stays bounded), whatever the block boundaries."""
    store = LocalStore(tmp_path)
    schema = dbz.envelope(T, [("id", I64), ("txt", dbz.opt("string"))])
    n = 3000
    rows = pa.Table.from_pylist(
        [dbz.record("c", after={"id": i, "txt": f"{i:05d}" * 20}, lsn=i) for i in range(n)],
        schema=pa.schema(list(schema.physical_arrow_type())),
    )
    w = SinkWriter(store, avro_config("snappy", flush_size=n))
    w.write(T, 0, rows, schema, np.arange(n, dtype=np.int64))
    w.close()
    (key,) = w.objects_written
    with open(store.path(key), "rb") as f:
        blocks = [b.num_records for b in fastavro.block_reader(f)]
    assert len(blocks) > 3 and sum(blocks) == n  # 64 KB blocks, as Avro's DataFileWriter cuts them
    reader = LakeReader(store)
    plan = reader.plan(T)
    assert [o.rows for o in plan.objects] == [n]
    batches = list(reader.iter_changes(plan, batch_size=700))
    assert [b.num_rows for b in batches] == [700, 700, 700, 700, 200]
    t = pa.Table.from_batches(batches)
    assert t.column("id").to_pylist() == list(range(n)) and t.column("__row_index").to_pylist() == list(
        range(n)
    )
    assert t.equals(reader.read_changes(T))


def test_schema_evolution_across_objects(tmp_path, dbz):
    """Each value-schema change rotates the object; columns merge across objects as for Parquet:
    a column added (null in older events), an int and a decimal widened."""
    o = dbz.opt
    v1 = [
        ("id", I64),
        ("name", o("string")),
        ("latency", o("int32")),
        ("amount", o("bytes", DEC, {"scale": "2", "connect.decimal.precision": "5"}, version=1)),
    ]
    v2 = v1 + [("cached", o("int32"))]
    v3 = [
        ("id", I64),
        ("name", o("string")),
        ("latency", o("int64")),
        ("amount", o("bytes", DEC, {"scale": "3", "connect.decimal.precision": "10"}, version=1)),
        ("cached", o("int32")),
    ]
    batches = [
        (
            v1,
            [
                {"id": 1, "name": "a", "latency": 5, "amount": Decimal("123.45")},
                {"id": 2, "name": "b", "latency": 6, "amount": None},
            ],
        ),
        (v2, [{"id": 1, "name": "a", "latency": 7, "amount": Decimal("1.00"), "cached": 3}]),
        (
            v3,
            [
                {"id": 3, "name": "c", "latency": 2**40, "amount": Decimal("1234567.891"), "cached": None},
                {"id": 2, "name": "b2", "latency": 8, "amount": Decimal("-0.001"), "cached": 9},
            ],
        ),
    ]
    stores = {}
    for fmt, cfg in (("parquet", SinkConfig()), ("avro", avro_config("zstandard"))):
        store = stores[fmt] = LocalStore(tmp_path / fmt)
        w = SinkWriter(store, cfg)
        offset = 0
        for fields, after in batches:
            env = dbz.envelope(T, fields)
            recs = [dbz.record("u", after=a, lsn=100 + offset + i) for i, a in enumerate(after)]
            dbz.write(store, T, env, recs, list(range(offset, offset + len(recs))), writer=w, close=False)
            offset += len(recs)
        w.close()
        assert len(w.objects_written) == 3
    got = assert_reads_like_parquet(stores["parquet"], stores["avro"])[T]
    assert got.schema.field("latency").type == pa.int64()
    assert got.schema.field("amount").type == pa.decimal128(10, 3)
    assert got.schema.field("cached").type == pa.int32()
    assert got.column("cached").to_pylist() == [None, None, 3, None, 9]
    assert got.column("latency").to_pylist() == [5, 6, 7, 2**40, 8]
    assert got.column("amount").to_pylist() == [
        Decimal("123.450"),
        None,
        Decimal("1.000"),
        Decimal("1234567.891"),
        Decimal("-0.001"),
    ]
    headers = [
        json.loads(header(stores["avro"], o.key).schema_text)
        for o in LakeReader(stores["avro"]).scan().objects[T]
    ]
    assert ["cached" in json.dumps(h) for h in headers] == [False, True, True]


def test_real_debezium_samples(tmp_path, sample_events):
    """The real Debezium 3.6.3 events (real AvroData schemas, schema changes, TOAST, truncates)."""
    pq_store, av_store = LocalStore(tmp_path / "p"), LocalStore(tmp_path / "a")
    write_sample_lake(pq_store, SinkConfig(flush_size=3), sample_events)
    w = write_sample_lake(av_store, avro_config("snappy", flush_size=3), sample_events)
    assert_reads_like_parquet(pq_store, av_store)
    real = set()
    for path in sorted(
        (Path(__file__).resolve().parents[3] / "shared/samples/debezium/connect").glob("*.jsonl")
    ):
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            if rec.get("avro_value_schema"):
                real.add(json.dumps(rec["avro_value_schema"], separators=(",", ":"), ensure_ascii=False))
    texts = {header(av_store, k).schema_text for k in w.objects_written}
    assert texts and texts <= real  # AvroData's own text, byte for byte


def test_key_companions_in_an_avro_lake(tmp_path):
    """Key companions (store.kafka.keys) are read alike next to Avro value objects; an AvroFormat
    ``.keys.avro`` companion (the sink's default keys.format.class) gives its key columns too."""
    store = LocalStore(tmp_path)
    events = [e for e in load_events() if not (e.value and e.value["op"] == "t")]
    write_sample_lake(store, avro_config(flush_size=3, store_keys=True), events)
    reader = LakeReader(store)
    assert reader.key_columns("eco2.scan.llm_call_log") == ("id",)
    assert reader.read_changes("eco2.scan.llm_call_log").num_rows == 7
    key_schema = {
        "type": "record",
        "name": "Key",
        "namespace": "eco2.auth.users",
        "fields": [{"name": "id", "type": "long"}, {"name": "tenant", "type": "string"}],
    }
    data = write_container(
        [{"id": 1, "tenant": "x"}], json.dumps(key_schema), "deflate", sync_marker=b"k" * 16
    )
    for o in list(store.list("topics/eco2.auth.users/")):
        if ".keys." in o.key:
            store.delete(o.key)
    store.put_bytes("topics/eco2.auth.users/partition=0/eco2.auth.users+0+0000000000.keys.avro", data)
    assert LakeReader(store).key_columns("eco2.auth.users") == ("id", "tenant")


# --------------------------------------------------------------------------------------------
# (b) one workload as Parquet, JSON and Avro: identical compacted states
# --------------------------------------------------------------------------------------------

WORKLOADS = {
    "envelope-everything": dict(
        events=6_000,
        seed=11,
        flush_size=400,
        partitions=2,
        replays=True,
        pk_changes=True,
        truncates=True,
        schema_change=True,
    ),
    "unwrap-hourly": dict(
        events=4_000,
        seed=12,
        flush_size=300,
        shape="unwrap",
        partitioner="hourly",
        replays=True,
        schema_change=True,
    ),
}
FORMATS = {
    "parquet": dict(format="parquet"),
    "json": dict(format="json", json_schemas=True),
    "avro": dict(format="avro", avro_codec="deflate"),
}


def plain_config() -> TablesConfig:
    return TablesConfig(
        tables=tuple(TableConfig(topic=t.topic, primary_key=t.primary_key) for t in load_config().tables)
    )


@pytest.mark.parametrize("workload", list(WORKLOADS))
def test_same_workload_in_three_formats_compacts_to_the_same_state(tmp_path, monkeypatch, workload):
    monkeypatch.setenv("LAKEHOUSE_PSEUDONYM_KEY", "test-pseudonym-key")
    config = plain_config()
    states: dict[str, dict[str, pa.Table]] = {}
    results = {}
    for fmt, opts in FORMATS.items():
        lake, state = tmp_path / fmt / "lake", tmp_path / fmt / "state"
        generate_lake(str(lake), GeneratorOptions(**WORKLOADS[workload], **opts))
        values = [p for p in lake.rglob("*") if p.is_file() and ".keys." not in p.name]
        assert values and all(
            p.name.endswith({"parquet": ".parquet", "json": ".json", "avro": ".avro"}[fmt]) for p in values
        )
        res = compact(str(lake), str(state), config, options=CompactOptions(batch_events=1_500))
        assert all(r.status == "applied" for r in res), [(r.table, r.error) for r in res]
        results[fmt] = {
            r.table: (r.events, r.duplicates, r.inserts, r.updates, r.deletes, r.rows, r.tombstones)
            for r in res
        }
        states[fmt] = {}
        for entry in config.tables:
            rows = visible_rows(str(state), entry.table)
            states[fmt][entry.table] = rows.sort_by([(c, "ascending") for c in entry.primary_key])
    assert sum(t.num_rows for t in states["parquet"].values()) > 1_000
    for fmt in ("json", "avro"):
        assert results[fmt] == results["parquet"], fmt
        for table, want in states["parquet"].items():
            got = states[fmt][table]
            assert got.schema.equals(want.schema), (fmt, table)
            assert got.equals(want), (fmt, table)


def test_generate_cli_writes_an_avro_lake(tmp_path):
    lake = tmp_path / "lake"
    result = CliRunner().invoke(
        app,
        [
            "generate",
            "--lake",
            str(lake),
            "--events",
            "1500",
            "--flush-size",
            "200",
            "--format",
            "avro",
            "--avro-codec",
            "snappy",
            "--schema-change",
        ],
    )
    assert result.exit_code == 0, result.output
    store = LocalStore(lake)
    keys = [o.key for o in store.list("topics/")]
    assert keys and all(k.endswith(".avro") for k in keys)
    assert {header(store, k).codec for k in keys} == {"snappy"}
    reader = LakeReader(store)
    listing = reader.scan()
    assert not listing.errors and len(listing.topics) == 6
    assert sum(reader.read_changes(t).num_rows for t in listing.topics) > 1000


# --------------------------------------------------------------------------------------------
# (c) broken Avro objects fail their table only, naming the object
# --------------------------------------------------------------------------------------------

GOOD = "eco2.scan.results"
BAD = "eco2.scan.feedback"
FIELDS = [("id", I64), ("label", ConnectSchema("string", optional=True))]


def _rows(dbz, ids):
    return [dbz.record("c", after={"id": i, "label": f"label {i} " * 8}, lsn=100 + i) for i in ids]


def _avro_object(dbz, topic: str, n: int, codec: str = "null") -> bytes:
    schema = dbz.envelope(topic, FIELDS)
    table = dbz.table(schema, _rows(dbz, range(n)))
    from lakehouse.lake.sink import encode_avro

    return encode_avro(table, schema, codec, sync_marker=b"s" * 16)


def _header_len(dbz, topic: str, codec: str = "null") -> int:
    return len(
        write_container([], avro_schema_json(dbz.envelope(topic, FIELDS)), codec, sync_marker=b"s" * 16)
    )


def _varint(n: int) -> bytes:
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        if n < 0x80:
            return bytes(out + bytes([n]))
        out.append((n & 0x7F) | 0x80)
        n >>= 7


def _with_block_count(dbz, data: bytes, delta: int) -> bytes:
    """The same object with its first block's record count changed (null codec)."""
    start = end = _header_len(dbz, BAD)
    while data[end] & 0x80:
        end += 1
    shift, raw = 0, 0
    for b in data[start : end + 1]:
        raw |= (b & 0x7F) << shift
        shift += 7
    count = (raw >> 1) ^ -(raw & 1)
    return data[:start] + _varint(count + delta) + data[end + 1 :]


def broken_objects(dbz) -> dict[str, tuple[bytes, tuple[str, ...]]]:
    many = _avro_object(dbz, BAD, 3000)
    deflated = _avro_object(dbz, BAD, 3000, "deflate")
    hl = _header_len(dbz, BAD, "deflate")
    corrupt = bytearray(deflated)
    corrupt[hl + 40 : hl + 60] = b"\xff" * 20
    foreign = json.dumps(
        {
            "type": "record",
            "name": "Order",
            "namespace": "shop",
            "fields": [{"name": "order_id", "type": "long"}, {"name": "amount", "type": "double"}],
        }
    )
    union = json.dumps(
        {
            "type": "record",
            "name": "Envelope",
            "namespace": BAD,
            "fields": [
                {"name": "before", "type": ["null", "long", "string"]},
                {"name": "after", "type": ["null", "long"]},
                {"name": "source", "type": "string"},
                {"name": "op", "type": "string"},
            ],
        }
    )
    parquet = encode_parquet(dbz.table(dbz.envelope(BAD, FIELDS), _rows(dbz, [1])), dbz.envelope(BAD, FIELDS))
    return {
        "truncated": (many[: len(many) // 2], ("block", "truncated")),
        "truncated-sync-marker": (many[:-5], ("block",)),
        "garbage": (bytes(range(256)) * 8, ("not an Avro object container file",)),
        "parquet-named-avro": (parquet, ("not an Avro object container file",)),
        "zero-rows": (
            write_container([], avro_schema_json(dbz.envelope(BAD, FIELDS)), sync_marker=b"z" * 16),
            ("no records",),
        ),
        "non-debezium-schema": (
            write_container([{"order_id": 1, "amount": 2.5}], foreign, sync_marker=b"f" * 16),
            ("not a Debezium topic file",),
        ),
        "unsupported-union": (
            write_container(
                [{"before": 1, "after": None, "source": "s", "op": "c"}], union, sync_marker=b"u" * 16
            ),
            ("avro.schema", "union"),
        ),
        "corrupt-deflate-block": (bytes(corrupt), ("block", "unreadable")),
        "huge-block-length": (
            many[: _header_len(dbz, BAD)] + _varint(5) + _varint(2**62) + b"xx",
            ("block",),
        ),
        "record-count-too-high": (
            _with_block_count(dbz, _avro_object(dbz, BAD, 50), +1),
            ("does not decode",),
        ),
        "record-count-too-low": (_with_block_count(dbz, _avro_object(dbz, BAD, 50), -1), ("bytes more",)),
    }


@pytest.fixture
def bad_lake(tmp_path, dbz):
    store = LocalStore(tmp_path / "lake")
    cfg = avro_config(flush_size=1000)
    dbz.write(store, GOOD, dbz.envelope(GOOD, FIELDS), _rows(dbz, [1, 2, 3]), [0, 1, 2], config=cfg)
    dbz.write(store, BAD, dbz.envelope(BAD, FIELDS), _rows(dbz, [7, 8]), [0, 1], config=cfg)
    return store


def bad_config() -> TablesConfig:
    return TablesConfig(
        tables=(TableConfig(topic=GOOD, primary_key=("id",)), TableConfig(topic=BAD, primary_key=("id",)))
    )


@pytest.mark.parametrize(
    "case",
    [
        "truncated",
        "truncated-sync-marker",
        "garbage",
        "parquet-named-avro",
        "zero-rows",
        "non-debezium-schema",
        "unsupported-union",
        "corrupt-deflate-block",
        "huge-block-length",
        "record-count-too-high",
        "record-count-too-low",
    ],
)
def test_broken_avro_object_fails_its_table_only(bad_lake, dbz, tmp_path, case):
    data, words = broken_objects(dbz)[case]
    key = build_object_key(SinkConfig().layout, BAD, "partition=0", 0, 50, ".avro")
    bad_lake.put_bytes(key, data)
    # the reader names the object and the reason
    with pytest.raises(LakeObjectError) as err:
        LakeReader(bad_lake).read_changes(BAD)
    assert err.value.key == key
    assert all(w in err.value.reason for w in words), err.value.reason
    assert LakeReader(bad_lake).read_changes(GOOD).column("id").to_pylist() == [1, 2, 3]
    # compaction: that table fails with the object in its error, nothing of it is committed
    state = tmp_path / "state"
    results = {r.table: r for r in compact(str(bad_lake.root), str(state), bad_config())}
    assert results["scan.feedback"].failed and key in results["scan.feedback"].error
    assert not StateTable(str(state), "scan.feedback").exists()
    assert results["scan.results"].status == "applied" and results["scan.results"].rows == 3
    # once the object is moved aside, the table compacts
    bad_lake.delete(key)
    again = {r.table: r for r in compact(str(bad_lake.root), str(state), bad_config())}
    assert again["scan.feedback"].status == "applied" and again["scan.feedback"].rows == 2


def test_broken_object_after_a_good_one_commits_nothing_of_its_table(bad_lake, dbz, tmp_path):
    """A corrupt object is found while planning (every block is checked), before the batch with
    the healthy objects before it is committed."""
    state = tmp_path / "state"
    data, _ = broken_objects(dbz)["truncated"]
    key = build_object_key(SinkConfig().layout, BAD, "partition=0", 0, 50, ".avro")
    bad_lake.put_bytes(key, data)
    results = {
        r.table: r
        for r in compact(str(bad_lake.root), str(state), bad_config(), options=CompactOptions(batch_events=1))
    }
    assert results["scan.feedback"].failed and key in results["scan.feedback"].error
    assert not StateTable(str(state), "scan.feedback").exists()


# --------------------------------------------------------------------------------------------
# (d) a real capture into an Avro lake (PostgreSQL 15 + Debezium 3.6.3)
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_capture_into_an_avro_lake_matches_parquet_and_postgres(eco2_db, tmp_path):
    import psycopg
    from support.capture_process import Capture, wait_for
    from support.capture_steps import STREAM_STEPS, TABLES, lake_matches_pg, seed

    seed(eco2_db)
    lakes = {"parquet": tmp_path / "parquet", "avro": tmp_path / "avro"}
    caps = {
        fmt: Capture(
            eco2_db,
            lake,
            tmp_path / f"state-{fmt}",
            "--flush-size",
            "25",
            "--format",
            fmt,
            "--avro-codec",
            "deflate",
            "--name",
            f"t_{fmt}",
        ).start()
        for fmt, lake in lakes.items()
    }
    try:
        for fmt, lake in lakes.items():
            wait_for(
                lambda lake=lake: lake_matches_pg(lake, eco2_db),
                caps[fmt],
                timeout=180,
                what=f"the {fmt} snapshot",
            )
        with psycopg.connect(eco2_db, autocommit=True) as conn:
            for step in STREAM_STEPS:
                conn.execute(step)
        for fmt, lake in lakes.items():
            wait_for(
                lambda lake=lake: lake_matches_pg(lake, eco2_db), caps[fmt], what=f"{fmt} streamed changes"
            )
        stats = {fmt: cap.stop() for fmt, cap in caps.items()}
    finally:
        for cap in caps.values():
            if cap.proc is not None and cap.proc.poll() is None:
                cap.proc.kill()
    for lake in lakes.values():
        assert lake_matches_pg(lake, eco2_db) is True  # = SELECT *
    assert stats["avro"]["events"] == stats["parquet"]["events"] > 0

    store = LocalStore(lakes["avro"])
    values = [o.key for o in store.list("topics/") if ".keys." not in o.key and ".headers." not in o.key]
    assert values and all(k.endswith(".avro") and "/partition=0/" in k for k in values)
    for key in values:  # AvroData's schema text, as the engine produced it, in every header
        h = header(store, key)
        assert h.codec == "deflate" and avro_schema_json(parse_avro_schema(h.schema_text)) == h.schema_text
    rows = {k: AvroContainer(io.BytesIO(store.get_bytes(k))).count_rows() for k in values}
    assert max(rows.values()) == 25  # flush.size

    # the same changes, event by event, as the Parquet capture of them (positions aside: rotation
    # is on a wall-clock schedule; snapshot LSNs and times are each engine's own)
    rp, ra = LakeReader(str(lakes["parquet"])), LakeReader(str(lakes["avro"]))
    assert ra.scan().topics == rp.scan().topics
    for topic in TABLES:
        want, got = rp.read_changes(topic), ra.read_changes(topic)
        assert got.schema.equals(want.schema, check_metadata=True), topic
        streamed = [c for c in want.column_names if not c.startswith("__")] + ["__op"]
        assert got.select(streamed).equals(want.select(streamed)), topic
        assert got.column("__kafka_partition").to_pylist() == want.column("__kafka_partition").to_pylist()
