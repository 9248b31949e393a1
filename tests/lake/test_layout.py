"""Object keys (spec lake-format.md §1): parsing every documented form, building them back, and
the partitioners' encoded directories."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lakehouse.lake.layout import (
    PARQUET_CODEC_EXTENSIONS,
    IgnoredObject,
    LakeObjectError,
    ObjectKey,
    Partitioner,
    SinkLayout,
    build_object_key,
    is_non_table_topic,
    joda_format,
    parse_object_key,
)

C = "dbserver1.public.customers"


def ms(*args) -> int:
    return int(dt.datetime(*args, tzinfo=dt.UTC).timestamp() * 1000)


# --------------------------------------------------------------------------------------------
# §1.5 example keys
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key, kpart, start, encoded",
    [
        (f"topics/{C}/partition=0/{C}+0+0000000000.snappy.parquet", 0, 0, "partition=0"),
        (f"topics/{C}/partition=0/{C}+0+0000001000.snappy.parquet", 0, 1000, "partition=0"),
        (f"topics/{C}/partition=3/{C}+3+0000004711.snappy.parquet", 3, 4711, "partition=3"),
        (
            f"topics/{C}/year=2024/month=05/day=07/hour=13/{C}+2+0000018230.snappy.parquet",
            2,
            18230,
            "year=2024/month=05/day=07/hour=13",
        ),
    ],
)
def test_spec_example_value_keys(key, kpart, start, encoded):
    p = parse_object_key(key)
    assert isinstance(p, ObjectKey)
    assert (p.topic, p.kafka_partition, p.start_offset, p.key) == (C, kpart, start, key)
    assert p.encoded_partition == encoded
    assert (p.format, p.compression) == ("parquet", ".snappy")
    assert isinstance(p.start_offset, int) and isinstance(p.kafka_partition, int)


def test_spec_example_hourly_partition_values():
    p = parse_object_key(f"topics/{C}/year=2024/month=05/day=07/hour=13/{C}+2+0000018230.snappy.parquet")
    assert p.partition_values == {"year": "2024", "month": "05", "day": "07", "hour": "13"}
    p = parse_object_key(f"topics/{C}/schema_name={C}.Envelope/partition=4/{C}+4+0000000001.parquet")
    assert p.partition_values == {"schema_name": f"{C}.Envelope", "partition": "4"}
    assert p.kafka_partition == 4


@pytest.mark.parametrize(
    "key, reason",
    [
        (f"topics/{C}/partition=0/{C}+0+0000000000.keys.avro", "keys companion file"),
        (f"topics/{C}/partition=0/{C}+0+0000000000.headers.avro", "headers companion file"),
        (f"topics/{C}/partition=0/{C}+0+0000000000.keys.snappy.parquet", "keys companion file"),
        (
            f"topics/{C}/partition=0/{C}+0+0000000000.headers.snappy.parquet",
            "headers companion file",
        ),
        (f"topics/{C}/partition=0/{C}+0+0000000000.headers.json", "headers companion file"),
        (f"topics/{C}/partition=0/{C}+0+0000000000.keys.json.gz", "keys companion file"),
        (
            f"topics/{C}/year=2024/month=05/day=07/hour=13/{C}+2+0000018230.keys.zstd.parquet",
            "keys companion file",
        ),
        (f"topics/{C}/tombstone/{C}+0+0000000042.keys.avro", "keys companion file"),
    ],
)
def test_companion_files_are_ignored(key, reason):
    p = parse_object_key(key)
    assert isinstance(p, IgnoredObject)
    assert (p.key, p.topic, p.reason) == (key, C, reason)


def test_tombstone_directory_is_ignored():
    key = f"topics/{C}/tombstone/{C}+0+0000000042.snappy.parquet"
    p = parse_object_key(key)
    assert isinstance(p, IgnoredObject) and p.topic == C and "tombstone" in p.reason
    # a configured tombstone.encoded.partition
    layout = SinkLayout(tombstone_partition="nulls")
    p = parse_object_key(f"topics/{C}/nulls/{C}+0+0000000042.snappy.parquet", layout)
    assert isinstance(p, IgnoredObject) and "tombstone" in p.reason
    # "tombstone" is only special as the encoded partition, not inside a field value
    p = parse_object_key(f"topics/{C}/kind=tombstone/{C}+0+0000000042.snappy.parquet")
    assert isinstance(p, ObjectKey) and p.partition_values == {"kind": "tombstone"}


# --------------------------------------------------------------------------------------------
# §1.3 codec extensions
# --------------------------------------------------------------------------------------------

SPEC_CODECS = {
    "snappy": ".snappy.parquet",
    "none": ".parquet",
    "gzip": ".gz.parquet",
    "zstd": ".zstd.parquet",
    "lzo": ".lzo.parquet",
    "brotli": ".br.parquet",
    "lz4": ".lz4hadoop.parquet",
    "lz4_raw": ".lz4raw.parquet",
}


def test_codec_extension_table_matches_spec():
    assert PARQUET_CODEC_EXTENSIONS == SPEC_CODECS


@pytest.mark.parametrize("codec, ext", sorted(SPEC_CODECS.items()) + [("lz4-old", ".lz4.parquet")])
def test_every_codec_extension_parses(codec, ext):
    key = f"topics/{C}/partition=1/{C}+1+0000000077{ext}"
    p = parse_object_key(key)
    assert isinstance(p, ObjectKey)
    assert (p.format, p.kafka_partition, p.start_offset) == ("parquet", 1, 77)
    assert p.compression == (ext[: -len(".parquet")] or ".none")


@pytest.mark.parametrize("ext, compression", [(".json", ""), (".json.gz", ".gz")])
def test_json_extensions(ext, compression):
    p = parse_object_key(f"topics/{C}/partition=0/{C}+0+0000000005{ext}")
    assert isinstance(p, ObjectKey) and (p.format, p.compression, p.start_offset) == (
        "json",
        compression,
        5,
    )


def test_avro_value_files():
    """AvroFormat names every object ``.avro``: the codec (avro.codec) is only in the header."""
    p = parse_object_key(f"topics/{C}/partition=3/{C}+3+0000000042.avro")
    assert isinstance(p, ObjectKey) and (p.format, p.compression, p.kafka_partition, p.start_offset) == (
        "avro",
        "",
        3,
        42,
    )


# --------------------------------------------------------------------------------------------
# offsets, padding, topics dir
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "digits, value",
    [
        ("0000000000", 0),
        ("0000001000", 1000),
        ("9999999999", 9_999_999_999),
        ("10000000000", 10_000_000_000),
        ("123456789012345", 123_456_789_012_345),
        ("7", 7),
        ("00000000000000000042", 42),
    ],
)
def test_offsets_parse_as_integers(digits, value):
    p = parse_object_key(f"topics/{C}/partition=12/{C}+12+{digits}.snappy.parquet")
    assert p.start_offset == value and p.kafka_partition == 12


def test_object_keys_sort_numerically_not_lexicographically():
    offsets = [10_000_000_000, 9_999_999_999, 2, 100]
    keys = [build_object_key(SinkLayout(), C, "partition=0", 0, o, ".snappy.parquet") for o in offsets]
    assert max(keys).endswith("+9999999999.snappy.parquet")  # the lexicographic trap
    parsed = sorted(parse_object_key(k) for k in keys)
    assert [p.start_offset for p in parsed] == [2, 100, 9_999_999_999, 10_000_000_000]
    # partitions sort before offsets: offsets are not comparable across partitions
    p0 = parse_object_key(build_object_key(SinkLayout(), C, "partition=0", 0, 500, ".parquet"))
    p1 = parse_object_key(build_object_key(SinkLayout(), C, "partition=1", 1, 3, ".parquet"))
    p10 = parse_object_key(build_object_key(SinkLayout(), C, "partition=10", 10, 1, ".parquet"))
    assert sorted([p10, p1, p0]) == [p0, p1, p10]


@pytest.mark.parametrize(
    "width, offset, name",
    [
        (10, 42, f"{C}+0+0000000042.snappy.parquet"),
        (10, 12_345_678_901, f"{C}+0+12345678901.snappy.parquet"),  # minimum width only
        (20, 42, f"{C}+0+00000000000000000042.snappy.parquet"),
        (1, 42, f"{C}+0+42.snappy.parquet"),
    ],
)
def test_zero_pad_width(width, offset, name):
    layout = SinkLayout(zero_pad_width=width)
    key = build_object_key(layout, C, "partition=0", 0, offset, ".snappy.parquet")
    assert key == f"topics/{C}/partition=0/{name}"
    assert parse_object_key(key, layout).start_offset == offset


def test_blank_topics_dir():
    layout = SinkLayout(topics_dir="")
    key = build_object_key(layout, C, "partition=0", 0, 5, ".snappy.parquet")
    assert key == f"{C}/partition=0/{C}+0+0000000005.snappy.parquet"
    p = parse_object_key(key, layout)
    assert (p.topic, p.start_offset, p.encoded_partition) == (C, 5, "partition=0")
    assert layout.topic_prefix() == "" and layout.topic_prefix(C) == f"{C}/"


def test_nested_topics_dir():
    layout = SinkLayout(topics_dir="data/cdc/topics")
    key = build_object_key(layout, C, "year=2024/month=05", 1, 9, ".zstd.parquet")
    assert key == f"data/cdc/topics/{C}/year=2024/month=05/{C}+1+0000000009.zstd.parquet"
    p = parse_object_key(key, layout)
    assert (p.topic, p.kafka_partition, p.start_offset, p.encoded_partition) == (
        C,
        1,
        9,
        "year=2024/month=05",
    )
    assert layout.topic_prefix(C) == f"data/cdc/topics/{C}/"
    with pytest.raises(LakeObjectError) as ei:
        parse_object_key(key)  # default layout: not under "topics/"
    assert ei.value.key == key and "not under the topics dir" in ei.value.reason


@pytest.mark.parametrize(
    "key, reason",
    [
        (f"topics/{C}+0+0000000000.snappy.parquet", "no topic directory"),
        (f"topics/{C}/partition=0/{C}-0-0000000000.snappy.parquet", "file name is not"),
        (f"topics/{C}/partition=0/{C}+0+0000000000.snappy.parq", "file name is not"),
        (f"topics/{C}/partition=0/{C}+0+0000000000.SNAPPY.PARQUET", "file name is not"),
        (
            f"topics/{C}/partition=0/other.topic+0+0000000000.snappy.parquet",
            "differs from its directory",
        ),
        (f"topics/{C}/partition=0/{C}+0+0000000000.bin", "not supported"),
        (f"topics/{C}/{C}+0+0000000000.snappy.parquet", "no encoded partition"),
        (f"topics/{C}/partition=0/.hidden", "hidden"),
        (f"topics/{C}/partition=0/_$folder$", "folder-marker"),
        (f"elsewhere/{C}/partition=0/{C}+0+0000000000.snappy.parquet", "not under the topics dir"),
    ],
)
def test_keys_that_are_not_sink_objects_raise(key, reason):
    with pytest.raises(LakeObjectError) as ei:
        parse_object_key(key)
    assert ei.value.key == key
    assert reason in ei.value.reason
    assert str(ei.value) == f"{key}: {ei.value.reason}"


# --------------------------------------------------------------------------------------------
# build / parse round trip
# --------------------------------------------------------------------------------------------

topic_names = st.from_regex(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,60}", fullmatch=True)
encoded_partitions = st.one_of(
    st.integers(0, 500).map(lambda p: f"partition={p}"),
    st.just("year=2024/month=05/day=07/hour=13"),
    st.lists(st.from_regex(r"[a-z_]{1,8}=[A-Za-z0-9._-]{1,12}", fullmatch=True), min_size=1, max_size=3).map(
        "/".join
    ),
)


@settings(max_examples=300, deadline=None)
@given(
    topic=topic_names,
    enc=encoded_partitions,
    kpart=st.integers(0, 100_000),
    offset=st.integers(0, 10**18),
    ext=st.sampled_from(sorted(set(SPEC_CODECS.values())) + [".json", ".json.gz", ".avro"]),
    width=st.integers(1, 20),
    topics_dir=st.sampled_from(["topics", "", "a/b/c", "raw-lake"]),
)
def test_build_parse_round_trip(topic, enc, kpart, offset, ext, width, topics_dir):
    layout = SinkLayout(topics_dir=topics_dir, zero_pad_width=width)
    key = build_object_key(layout, topic, enc, kpart, offset, ext)
    p = parse_object_key(key, layout)
    if enc.split("/")[0] == "tombstone":
        assert isinstance(p, IgnoredObject)
        return
    assert isinstance(p, ObjectKey)
    assert (p.topic, p.kafka_partition, p.start_offset, p.encoded_partition, p.key) == (
        topic,
        kpart,
        offset,
        enc,
        key,
    )
    assert p.format == ("json" if ext.startswith(".json") else "avro" if ext == ".avro" else "parquet")
    # the companion built from the same stem is recognised as such
    companion = build_object_key(layout, topic, enc, kpart, offset, ".avro", view=".keys")
    assert isinstance(parse_object_key(companion, layout), IgnoredObject)


def test_round_trip_with_custom_file_delim():
    layout = SinkLayout(file_delim="#")
    key = build_object_key(layout, C, "partition=2", 2, 31, ".snappy.parquet")
    assert key == f"topics/{C}/partition=2/{C}#2#0000000031.snappy.parquet"
    p = parse_object_key(key, layout)
    assert (p.topic, p.kafka_partition, p.start_offset) == (C, 2, 31)


# --------------------------------------------------------------------------------------------
# partitioners (§1.4)
# --------------------------------------------------------------------------------------------


def test_default_partitioner():
    assert Partitioner().encode(0) == "partition=0"
    assert Partitioner.named("default").encode(17, timestamp_ms=ms(2024, 5, 7)) == "partition=17"


@pytest.mark.parametrize(
    "tz, ts, expected",
    [
        (
            "UTC",
            ms(2024, 5, 7, 13, 45, 12),
            "year=2024/month=05/day=07/hour=13",
        ),  # the §1.5 example
        ("UTC", ms(2024, 5, 7, 13, 0, 0), "year=2024/month=05/day=07/hour=13"),
        ("UTC", ms(2024, 5, 7, 13, 59, 59) + 999, "year=2024/month=05/day=07/hour=13"),
        ("Asia/Seoul", ms(2024, 5, 7, 13, 45), "year=2024/month=05/day=07/hour=22"),
        (
            "Asia/Seoul",
            ms(2024, 5, 7, 15, 30),
            "year=2024/month=05/day=08/hour=00",
        ),  # next local day
        ("Asia/Kolkata", ms(2024, 5, 7, 13, 45), "year=2024/month=05/day=07/hour=19"),  # +05:30
        ("UTC", ms(1969, 12, 31, 23, 30), "year=1969/month=12/day=31/hour=23"),
    ],
)
def test_hourly_partitioner(tz, ts, expected):
    assert Partitioner.named("hourly", timezone_name=tz).encode(0, timestamp_ms=ts) == expected


@pytest.mark.parametrize(
    "tz, ts, expected",
    [
        ("UTC", ms(2024, 5, 7, 16, 0), "year=2024/month=05/day=07"),
        ("Asia/Seoul", ms(2024, 5, 7, 16, 0), "year=2024/month=05/day=08"),  # 01:00 KST
        ("Asia/Seoul", ms(2024, 5, 7, 14, 59), "year=2024/month=05/day=07"),  # 23:59 KST
        ("UTC", ms(2024, 12, 31, 23, 59), "year=2024/month=12/day=31"),
        (
            "America/New_York",
            ms(2024, 11, 3, 12, 0),
            "year=2024/month=11/day=03",
        ),  # DST end day, 07:00 EST
        ("America/New_York", ms(2024, 7, 1, 3, 0), "year=2024/month=06/day=30"),  # 23:00 EDT
    ],
)
def test_daily_partitioner(tz, ts, expected):
    assert Partitioner.named("daily", timezone_name=tz).encode(3, timestamp_ms=ts) == expected


def test_daily_partitioner_on_dst_start_day():
    # 2024-03-10 12:00Z = 08:00 EDT on March 10 (DST began at 02:00 local that day)
    p = Partitioner.named("daily", timezone_name="America/New_York")
    assert p.encode(0, timestamp_ms=ms(2024, 3, 10, 12, 0)) == "year=2024/month=03/day=10"


def test_time_based_partitioner_with_custom_path_format():
    p = Partitioner.named("time", path_format="'dt'=YYYY-MM-dd/'hr'=HH/'min'=mm/", duration_ms=600_000)
    assert (
        p.encode(0, timestamp_ms=ms(2026, 11, 23, 0, 38, 5)) == "dt=2026-11-23/hr=00/min=30"
    )  # trailing / stripped
    assert p.encode(0, timestamp_ms=ms(2026, 11, 23, 0, 40, 0)) == "dt=2026-11-23/hr=00/min=40"
    p = Partitioner.named("time")  # defaults: 'dt'=YYYY-MM-dd/'hr'=HH, one hour
    assert p.encode(0, timestamp_ms=ms(2026, 11, 23, 7, 59)) == "dt=2026-11-23/hr=07"
    with pytest.raises(ValueError):
        p.encode(0)  # a time-based partitioner needs a timestamp


def test_field_partitioner():
    p = Partitioner.named("field", fields=("model",))
    assert p.encode(0, field_values={"model": "gpt-4o"}) == "model=gpt-4o"
    assert p.encode(0, field_values={"model": None}) == "model=null"
    assert p.encode(0, field_values={}) == "model=null"
    p2 = Partitioner.named("field", fields=("region", "active", "shard"))
    assert (
        p2.encode(5, field_values={"region": "kr", "active": True, "shard": 42})
        == "region=kr/active=true/shard=42"
    )
    assert (
        p2.encode(5, field_values={"region": "kr", "active": False, "shard": -1})
        == "region=kr/active=false/shard=-1"
    )
    key = build_object_key(SinkLayout(), C, "region=kr/active=true/shard=42", 5, 3, ".snappy.parquet")
    assert parse_object_key(key).partition_values == {
        "region": "kr",
        "active": "true",
        "shard": "42",
    }


def test_schema_name_affix():
    name = f"{C}.Envelope"
    assert Partitioner(schema_affix="prefix").encode(0, schema_name=name) == f"schema_name={name}/partition=0"
    assert Partitioner(schema_affix="suffix").encode(0, schema_name=name) == f"partition=0/schema_name={name}"
    hourly = Partitioner.named("hourly", schema_affix="prefix")
    assert (
        hourly.encode(0, timestamp_ms=ms(2024, 5, 7, 13, 1), schema_name=name)
        == f"schema_name={name}/year=2024/month=05/day=07/hour=13"
    )
    assert Partitioner(schema_affix="none").encode(0, schema_name=name) == "partition=0"
    key = build_object_key(SinkLayout(), C, f"schema_name={name}/partition=0", 0, 0, ".snappy.parquet")
    p = parse_object_key(key)
    assert p.topic == C and p.encoded_partition == f"schema_name={name}/partition=0"


def test_unknown_partitioner_name():
    with pytest.raises(ValueError):
        Partitioner.named("weekly")


def test_joda_format_tokens():
    d = dt.datetime(2024, 5, 7, 3, 4, 9)
    assert joda_format(d, "'year'=YYYY/'month'=MM/'day'=dd/'hour'=HH") == "year=2024/month=05/day=07/hour=03"
    assert joda_format(d, "yyyyMMdd'T'HHmmss") == "20240507T030409"


@pytest.mark.parametrize(
    "topic, excluded",
    [
        ("__debezium-heartbeat.eco2", True),
        ("eco2.transaction", True),
        ("eco2.message", True),
        ("eco2.scan.scan_results", False),
        ("eco2.public.transactions", False),
        ("eco2.public.messages", False),
    ],
)
def test_non_table_topics(topic, excluded):
    assert is_non_table_topic(topic) is excluded


def test_sub_minute_time_buckets_get_their_own_directories(tmp_path):
    """Per-second buckets: the sink writer must not reuse one directory for a whole minute."""
    import numpy as np
    import pyarrow as pa

    from lakehouse.lake.connect import ConnectSchema, struct
    from lakehouse.lake.reader import LakeReader
    from lakehouse.lake.sink import SinkConfig, SinkWriter
    from lakehouse.lake.store import LocalStore

    value = struct(
        "t.s.x.Value", [("id", ConnectSchema("int64")), ("__op", ConnectSchema("string", optional=True))]
    )
    part = Partitioner.named("time", path_format="'ts'=YYYYMMddHHmmss", duration_ms=1000)
    writer = SinkWriter(LocalStore(tmp_path), SinkConfig(flush_size=10, partitioner=part))
    rows = pa.table({"id": pa.array([1, 2, 3], pa.int64()), "__op": pa.array(["c", "c", "c"])})
    writer.write("t.s.x", 0, rows, value, np.array([0, 1, 2]), timestamps_ms=np.array([1_000, 2_000, 59_000]))
    writer.close()
    dirs = sorted(k.split("/")[2] for k in writer.objects_written)
    assert dirs == ["ts=19700101000001", "ts=19700101000002", "ts=19700101000059"]
    assert LakeReader(LocalStore(tmp_path)).read_changes("t.s.x").column("id").to_pylist() == [1, 2, 3]
