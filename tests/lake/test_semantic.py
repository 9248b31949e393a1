"""Decoding Debezium semantic types (spec lake-format.md §4.4) with exact expected values."""

from __future__ import annotations

import base64
import datetime as dt
import json
from decimal import Decimal

import pyarrow as pa
import pytest
from support.sample_lake import CONNECT_DIR

from lakehouse.lake.connect import DECIMAL, ConnectSchema, parse_avro_schema, struct
from lakehouse.lake.semantic import (
    TOAST_PLACEHOLDER,
    DecodeError,
    decode_array,
    is_toast_placeholder,
    logical_field,
    logical_type,
    parse_zoned_timestamp,
)

UTC = dt.UTC
EPOCH = dt.datetime(1970, 1, 1)


def sem(type_: str, name: str | None = None, **params: str) -> ConnectSchema:
    return ConnectSchema(type_, name=name, optional=True, parameters=tuple(sorted(params.items())))


def dec(scale: int, precision: int | None = None) -> ConnectSchema:
    params = {"scale": str(scale)}
    if precision is not None:
        params["connect.decimal.precision"] = str(precision)
    return sem("bytes", DECIMAL, **params)


def vsd_schema() -> ConnectSchema:
    return struct(
        "io.debezium.data.VariableScaleDecimal",
        [("scale", ConnectSchema("int32")), ("value", ConnectSchema("bytes"))],
        optional=True,
    )


def unscaled(n: int) -> bytes:
    return n.to_bytes(max(1, (n + (n < 0)).bit_length() // 8 + 1), "big", signed=True)


# --------------------------------------------------------------------------------------------
# temporal types
# --------------------------------------------------------------------------------------------


def test_date_days_since_epoch():
    out = decode_array(
        pa.array([0, 19850, -1, None, 2932896], pa.int32()), sem("int32", "io.debezium.time.Date")
    )
    assert out.type == pa.date32()
    assert out.to_pylist() == [
        dt.date(1970, 1, 1),
        dt.date(1970, 1, 1) + dt.timedelta(days=19850),
        dt.date(1969, 12, 31),
        None,
        dt.date(9999, 12, 31),
    ]
    assert out.to_pylist()[1] == dt.date(2024, 5, 7)


def test_time_millis():
    out = decode_array(
        pa.array([0, 45_296_789, 86_399_999, None], pa.int32()),
        sem("int32", "io.debezium.time.Time"),
    )
    assert out.type == pa.time32("ms")
    assert out.to_pylist() == [
        dt.time(0),
        dt.time(12, 34, 56, 789000),
        dt.time(23, 59, 59, 999000),
        None,
    ]


def test_micro_time():
    out = decode_array(
        pa.array([45_296_789_012, 86_399_999_999, 1], pa.int64()),
        sem("int64", "io.debezium.time.MicroTime"),
    )
    assert out.type == pa.time64("us")
    assert out.to_pylist() == [
        dt.time(12, 34, 56, 789012),
        dt.time(23, 59, 59, 999999),
        dt.time(0, 0, 0, 1),
    ]


def test_micro_timestamp_has_no_zone():
    vals = [1_715_088_896_123_456, -1, 0, None]
    out = decode_array(pa.array(vals, pa.int64()), sem("int64", "io.debezium.time.MicroTimestamp"))
    assert out.type == pa.timestamp("us") and out.type.tz is None
    assert out.to_pylist() == [
        dt.datetime(2024, 5, 7, 13, 34, 56, 123456),
        EPOCH - dt.timedelta(microseconds=1),
        EPOCH,
        None,
    ]
    # +infinity sentinel survives as its integer value
    inf = decode_array(
        pa.array([9_223_372_036_825_200_000], pa.int64()),
        sem("int64", "io.debezium.time.MicroTimestamp"),
    )
    assert inf.cast(pa.int64()).to_pylist() == [9_223_372_036_825_200_000]


def test_timestamp_millis_has_no_zone():
    out = decode_array(
        pa.array([1_715_088_896_123, -1000], pa.int64()), sem("int64", "io.debezium.time.Timestamp")
    )
    assert out.type == pa.timestamp("ms") and out.type.tz is None
    assert out.to_pylist() == [
        dt.datetime(2024, 5, 7, 13, 34, 56, 123000),
        dt.datetime(1969, 12, 31, 23, 59, 59),
    ]


def test_nano_types():
    ts = decode_array(
        pa.array([1_715_088_896_123_456_789], pa.int64()),
        sem("int64", "io.debezium.time.NanoTimestamp"),
    )
    assert ts.type == pa.timestamp("ns")
    assert ts.cast(pa.int64()).to_pylist() == [1_715_088_896_123_456_789]
    t = decode_array(pa.array([45_296_789_012_345], pa.int64()), sem("int64", "io.debezium.time.NanoTime"))
    assert t.type == pa.time64("ns") and t.cast(pa.int64()).to_pylist() == [45_296_789_012_345]


ZONED = [
    ("2024-05-07T13:34:56Z", 0),
    ("2024-05-07T13:34:56.1Z", 100000),
    ("2024-05-07T13:34:56.12Z", 120000),
    ("2024-05-07T13:34:56.123Z", 123000),
    ("2024-05-07T13:34:56.1234Z", 123400),
    ("2024-05-07T13:34:56.12345Z", 123450),
    ("2024-05-07T13:34:56.123456Z", 123456),
    ("2024-05-07T13:34:56.1234567Z", 123456),
    ("2024-05-07T13:34:56.12345678Z", 123456),
    ("2024-05-07T13:34:56.123456789Z", 123456),
    ("2024-05-07T13:34:56.999999999Z", 999999),
]


def test_zoned_timestamp_all_fraction_widths():
    texts = [t for t, _ in ZONED] + [None]
    out = decode_array(pa.array(texts, pa.string()), sem("string", "io.debezium.time.ZonedTimestamp"))
    assert out.type == pa.timestamp("us", tz="UTC")
    base = dt.datetime(2024, 5, 7, 13, 34, 56, tzinfo=UTC)
    assert out.to_pylist() == [base.replace(microsecond=us) for _, us in ZONED] + [None]


def test_zoned_timestamp_edge_values():
    out = parse_zoned_timestamp(
        pa.array(
            [
                "1970-01-01T00:00:00.000000Z",
                "1969-12-31T23:59:59.999999999Z",
                "0001-01-01T00:00:00Z",
                "9999-12-31T23:59:59.999999Z",
            ]
        )
    )
    assert out.to_pylist() == [
        dt.datetime(1970, 1, 1, tzinfo=UTC),
        dt.datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        dt.datetime(1, 1, 1, tzinfo=UTC),
        dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    ]


@pytest.mark.parametrize("bad", ["not a time", "2024-13-01T00:00:00Z", "2024-05-07T13:34:56"])
def test_zoned_timestamp_garbage_raises(bad):
    with pytest.raises(DecodeError) as ei:
        decode_array(
            pa.array(["2024-05-07T13:34:56Z", bad]),
            sem("string", "io.debezium.time.ZonedTimestamp"),
        )
    assert repr(bad) in str(ei.value)


def test_micro_duration():
    out = decode_array(
        pa.array([90_061_000_001, -1, 0, None], pa.int64()),
        sem("int64", "io.debezium.time.MicroDuration"),
    )
    assert out.type == pa.duration("us")
    assert out.to_pylist() == [
        dt.timedelta(days=1, hours=1, minutes=1, seconds=1, microseconds=1),
        dt.timedelta(microseconds=-1),
        dt.timedelta(0),
        None,
    ]


def test_connect_logical_types_pass_through():
    """time.precision.mode=connect: already logical in Parquet (DATE/TIME/TIMESTAMP annotations)."""
    d = pa.array([dt.date(2024, 5, 7)], pa.date32())
    assert decode_array(d, sem("int32", "org.apache.kafka.connect.data.Date")).equals(d)
    ts = pa.array([dt.datetime(2024, 5, 7, 1, 2, 3, 4000)], pa.timestamp("ms", tz="UTC"))
    out = decode_array(ts, sem("int64", "org.apache.kafka.connect.data.Timestamp"))
    assert out.type == pa.timestamp("ms", tz="UTC") and out.equals(ts)


# --------------------------------------------------------------------------------------------
# decimals
# --------------------------------------------------------------------------------------------

DEC_VALUES = [
    (b"\x23\xa4", Decimal("0.9124")),
    (b"\xff\x38", Decimal("-0.0200")),
    (b"\x00", Decimal("0.0000")),
    (b"\x27\x0f", Decimal("0.9999")),
    (b"\x80\x00", Decimal("-3.2768")),
    (None, None),
]


def test_decimal_from_bytes():
    out = decode_array(pa.array([b for b, _ in DEC_VALUES], pa.binary()), dec(4, 5))
    assert out.type == pa.decimal128(5, 4)
    assert out.to_pylist() == [v for _, v in DEC_VALUES]
    assert all(v.as_tuple().exponent == -4 for v in out.to_pylist() if v is not None)


def test_decimal_from_base64():
    texts = [None if b is None else base64.b64encode(b).decode() for b, _ in DEC_VALUES]
    assert texts[0] == "I6Q="  # as in the captured sample (scan_results.confidence)
    out = decode_array(pa.array(texts, pa.string()), dec(4, 5))
    assert out.type == pa.decimal128(5, 4)
    assert out.to_pylist() == [v for _, v in DEC_VALUES]


def test_decimal_from_json_numbers():
    out = decode_array(pa.array([1.5, 2.25, 3.0]), dec(2, 10))
    assert out.type == pa.decimal128(10, 2)
    assert out.to_pylist() == [Decimal("1.50"), Decimal("2.25"), Decimal("3.00")]


def test_decimal_already_decimal_is_kept():
    arr = pa.array([Decimal("0.9124"), None], pa.decimal128(5, 4))
    assert decode_array(arr, dec(4, 5)).equals(arr)


def test_decimal_without_precision_defaults_to_64():
    s = dec(2)
    assert logical_type(s) == pa.decimal256(64, 2)
    out = decode_array(pa.array([unscaled(-1234), unscaled(10**20)], pa.binary()), s)
    assert out.type == pa.decimal256(64, 2)
    assert out.to_pylist() == [Decimal("-12.34"), Decimal("1000000000000000000.00")]


def test_money_is_a_decimal():
    out = decode_array(pa.array([unscaled(123456)], pa.binary()), dec(2, 38))
    assert out.to_pylist() == [Decimal("1234.56")]


def test_decimal_bytes_beyond_28_digits_is_exact():
    value = Decimal("123456789012345678901234567890123456.78")  # numeric(38,2)
    raw = unscaled(12345678901234567890123456789012345678)
    out = decode_array(pa.array([raw], pa.binary()), dec(2, 38))
    assert out.to_pylist() == [value]
    out = decode_array(pa.array([base64.b64encode(raw).decode()], pa.string()), dec(2, 38))
    assert out.to_pylist() == [value]


VSD_CASES = [
    (2, 12345, "123.45"),
    (2, -12345, "-123.45"),
    (0, -42, "-42"),
    (0, 0, "0"),
    (3, 1, "0.001"),
    (4, 50000, "5.0000"),
    (10, 1, "1E-10"),
    (6, 123_456_789_012_345_678_901_234, "123456789012345678.901234"),
]


def test_variable_scale_decimal_from_bytes():
    arr = pa.array(
        [{"scale": s, "value": unscaled(u)} for s, u, _ in VSD_CASES] + [None],
        type=vsd_schema().physical_arrow_type(),
    )
    out = decode_array(arr, vsd_schema())
    assert out.type == pa.string()
    got = out.to_pylist()
    assert got[-1] is None
    assert [Decimal(v) for v in got[:-1]] == [Decimal(t) for _, _, t in VSD_CASES]
    for (_, _, text), g in zip(VSD_CASES[:6], got):
        assert g == text


def test_variable_scale_decimal_from_base64():
    t = pa.struct([pa.field("scale", pa.int32()), pa.field("value", pa.string())])
    arr = pa.array(
        [
            {"scale": 2, "value": base64.b64encode(unscaled(-12345)).decode()},
            {"scale": 0, "value": None},
            None,
        ],
        type=t,
    )
    assert decode_array(arr, vsd_schema()).to_pylist() == ["-123.45", None, None]


def test_variable_scale_decimal_beyond_28_digits():
    u = 1_234_567_890_123_456_789_012_345_678_901_234
    arr = pa.array([{"scale": 5, "value": unscaled(u)}], type=vsd_schema().physical_arrow_type())
    assert Decimal(decode_array(arr, vsd_schema()).to_pylist()[0]) == Decimal(
        "12345678901234567890123456789.01234"
    )


# --------------------------------------------------------------------------------------------
# integers, arrays, structs, tagged strings
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ctype, target, values",
    [
        ("int16", pa.int16(), [1, -32768, 32767, None]),
        ("int8", pa.int8(), [1, -128, 127, None]),
    ],
)
def test_small_ints_from_connect_type(ctype, target, values):
    out = decode_array(pa.array(values, pa.int32()), ConnectSchema(ctype, optional=True))
    assert out.type == target and out.to_pylist() == values


def test_small_ints_from_footer_connect_type():
    s = parse_avro_schema(
        {
            "type": "record",
            "name": "V",
            "fields": [
                {"name": "s", "type": {"type": "int", "connect.type": "int16"}},
                {
                    "name": "b",
                    "type": ["null", {"type": "int", "connect.type": "int8"}],
                    "default": None,
                },
            ],
        }
    )
    assert logical_type(s.field("s").schema) == pa.int16()
    assert logical_type(s.field("b").schema) == pa.int8()


def test_array_of_dates():
    s = ConnectSchema("array", optional=True, items=sem("int32", "io.debezium.time.Date"))
    arr = pa.array([[0, 1], None, [], [19850, None]], pa.list_(pa.field("element", pa.int32())))
    out = decode_array(arr, s)
    assert out.type == pa.list_(pa.field("element", pa.date32()))
    d0 = dt.date(1970, 1, 1)
    assert out.to_pylist() == [[d0, dt.date(1970, 1, 2)], None, [], [dt.date(2024, 5, 7), None]]
    # a sliced input (non-zero offset) decodes the same rows
    assert decode_array(arr.slice(2), s).to_pylist() == [[], [dt.date(2024, 5, 7), None]]
    assert decode_array(arr.slice(1, 2), s).to_pylist() == [None, []]


def test_array_of_zoned_timestamps_and_decimals():
    s = ConnectSchema("array", optional=True, items=sem("string", "io.debezium.time.ZonedTimestamp"))
    out = decode_array(pa.array([["2024-05-07T13:34:56.5Z"], None]), s)
    assert out.to_pylist() == [[dt.datetime(2024, 5, 7, 13, 34, 56, 500000, tzinfo=UTC)], None]
    s = ConnectSchema("array", optional=True, items=dec(2, 6))
    out = decode_array(pa.array([[unscaled(150), None]], pa.list_(pa.binary())), s)
    assert out.type.value_type == pa.decimal128(6, 2)
    assert out.to_pylist() == [[Decimal("1.50"), None]]


def test_struct_children_are_decoded_and_nulls_kept():
    s = struct(
        "x.Point",
        [
            ("d", sem("int32", "io.debezium.time.Date")),
            ("z", sem("string", "io.debezium.time.ZonedTimestamp")),
        ],
        optional=True,
    )
    arr = pa.array([{"d": 1, "z": "2024-05-07T13:34:56Z"}, None], type=s.physical_arrow_type())
    out = decode_array(arr, s)
    assert out.to_pylist() == [
        {"d": dt.date(1970, 1, 2), "z": dt.datetime(2024, 5, 7, 13, 34, 56, tzinfo=UTC)},
        None,
    ]
    assert out.type.field("d").metadata[b"debezium.name"] == b"io.debezium.time.Date"


@pytest.mark.parametrize(
    "name, params",
    [
        ("io.debezium.data.Json", {}),
        ("io.debezium.data.Uuid", {}),
        ("io.debezium.data.Enum", {"allowed": "small,medium,large"}),
        ("io.debezium.data.Xml", {}),
        ("io.debezium.time.ZonedTime", {}),
        ("io.debezium.time.Interval", {}),
    ],
)
def test_tagged_strings_are_kept_with_metadata(name, params):
    s = sem("string", name, **params)
    values = ['{"a": [1, "유리"]}', TOAST_PLACEHOLDER, None, "medium"]
    arr = pa.array(values, pa.string())
    out = decode_array(arr, s)
    assert out.type == pa.string() and out.to_pylist() == values  # never parsed, never nulled
    f = logical_field("col", s)
    assert f.type == pa.string()
    assert f.metadata[b"debezium.name"] == name.encode()
    if params:
        assert json.loads(f.metadata[b"debezium.parameters"]) == params
    else:
        assert b"debezium.parameters" not in f.metadata


def test_bits_and_bytes_stay_binary():
    s = sem("bytes", "io.debezium.data.Bits", length="10")
    arr = pa.array([b"\x01\x02", None], pa.binary())
    assert decode_array(arr, s).equals(arr)
    assert logical_field("b", s).metadata[b"debezium.name"] == b"io.debezium.data.Bits"
    assert logical_field("raw", ConnectSchema("bytes", optional=True)).metadata is None


def test_plain_types_untouched():
    for ctype, arr in [
        ("int64", pa.array([1, None], pa.int64())),
        ("string", pa.array(["a"])),
        ("float64", pa.array([1.5])),
        ("boolean", pa.array([True, None])),
    ]:
        assert decode_array(arr, ConnectSchema(ctype, optional=True)).equals(arr)


def test_types_from_real_sample_footer_schema():
    """The Avro schema AvroData produced for scan_results drives the decoding."""
    line = (CONNECT_DIR / "eco2.scan.scan_results.jsonl").read_text().splitlines()[0]
    env = parse_avro_schema(json.loads(line)["avro_value_schema"])
    after = env.field("after").schema
    types = {f.name: logical_type(f.schema) for f in after.fields}
    assert types["id"] == pa.int64()
    assert types["confidence"] == pa.decimal128(5, 4)
    assert types["created_at"] == pa.timestamp("us", tz="UTC")
    assert types["payload"] == pa.string()
    assert (
        logical_field("payload", after.field("payload").schema).metadata[b"debezium.name"]
        == b"io.debezium.data.Json"
    )
    src = {f.name: f.schema for f in env.field("source").schema.fields}
    assert src["snapshot"].name == "io.debezium.data.Enum" and src["snapshot"].default == "false"
    assert logical_type(src["snapshot"]) == pa.string()


# --------------------------------------------------------------------------------------------
# TOAST placeholder detection
# --------------------------------------------------------------------------------------------

P = TOAST_PLACEHOLDER
PB = P.encode()


@pytest.mark.parametrize(
    "arr, expected",
    [
        (pa.array([P, "x", None, P + " ", ""]), [True, False, False, False, False]),
        (pa.array([P, "x"], pa.large_string()), [True, False]),
        (pa.array([PB, b"x", None], pa.binary()), [True, False, False]),
        (
            pa.array([[P], ["x"], [P, P], None, []], pa.list_(pa.string())),
            [True, False, False, False, False],
        ),
        (
            pa.array([list(PB), [1, 2], None, list(PB)[:-1]], pa.list_(pa.int32())),
            [True, False, False, False],
        ),
        (pa.array([list(PB), [95]], pa.list_(pa.int64())), [True, False]),
        (pa.array([1, 2], pa.int64()), [False, False]),
        (pa.array([[1.0]], pa.list_(pa.float64())), [False]),
    ],
    ids=["string", "large_string", "bytes", "text[]", "int[]", "bigint[]", "int", "float[]"],
)
def test_is_toast_placeholder(arr, expected):
    out = is_toast_placeholder(arr)
    assert out.type == pa.bool_()
    assert out.to_pylist() == expected


@pytest.mark.parametrize("precision,scale,unscaled,text", [(2, 5, 12, "0.00012"), (5, -2, 123, "12300")])
def test_decimal_outside_arrow_range_is_exact_text_and_writes(tmp_path, precision, scale, unscaled, text):
    """numeric(2,5) / numeric(5,-2) (PostgreSQL 15): AvroData has no decimal logical type for
    them, so they are plain bytes; the reader gives exact text."""
    import numpy as np

    from lakehouse.lake.connect import DECIMAL, ConnectSchema, struct
    from lakehouse.lake.reader import LakeReader
    from lakehouse.lake.sink import SinkConfig, SinkWriter
    from lakehouse.lake.store import LocalStore

    dec = ConnectSchema(
        "bytes",
        name=DECIMAL,
        version=1,
        optional=True,
        parameters=(("scale", str(scale)), ("connect.decimal.precision", str(precision))),
    )
    assert "logicalType" not in dec.to_avro()
    value = struct(
        "t.s.x.Value",
        [("id", ConnectSchema("int64")), ("amount", dec), ("__op", ConnectSchema("string", optional=True))],
    )
    raw = unscaled.to_bytes(2, "big", signed=True)
    rows = pa.table(
        {"id": pa.array([1], pa.int64()), "amount": pa.array([raw], pa.binary()), "__op": pa.array(["c"])}
    )
    writer = SinkWriter(LocalStore(tmp_path), SinkConfig(flush_size=10))
    writer.write("t.s.x", 0, rows, value, np.array([0]))
    writer.close()
    got = LakeReader(LocalStore(tmp_path)).read_changes("t.s.x")
    assert got.schema.field("amount").type == pa.string()
    assert got.column("amount").to_pylist() == [text]
