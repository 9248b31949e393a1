"""Fast checks of the capture's naming and offsets helpers (no PostgreSQL, no JVM).

The real Debezium 3.6.3 behaviour they mirror is checked end to end in ``tests/test_capture.py``
(``test_odd_names_are_captured_under_their_real_names``: every field name Debezium wrote equals
:func:`avro_field_name` of the real name recorded beside it).
"""

from __future__ import annotations

import pytest

from lakehouse.capture.offsets import (
    CaptureIdentity,
    lsn_text,
    offset_position,
    parse_lsn,
    read_offset,
    read_offsets_file,
)
from lakehouse.capture.preflight import CaptureSetupError, _check_names
from lakehouse.lake.connect import ConnectSchema, parse_avro_schema, struct
from lakehouse.lake.names import (
    SOURCE_COLUMN_NAME,
    avro_field_name,
    debezium_topic,
    java_regex_literal,
    odd_columns_regex,
    source_name,
    source_names,
)
from lakehouse.lake.semantic import logical_field

# what Debezium 3.6.3 wrote in a real capture (field.name.adjustment.mode=avro; topic names)
DEBEZIUM_FIELD_NAMES = {
    'a"b': "a_b",
    "ü 名前": "____",
    "1st": "_1st",
    "😀": "__",
    "v-1": "v_1",
    "a,c": "a_c",
    "new col": "new_col",
    "select": "select",
    "user_id": "user_id",
    "_x": "_x",
}
DEBEZIUM_TOPICS = {
    ("we ird", "Key Words"): "eco2.we_ird.Key_Words",
    ("public", "ü 名前"): "eco2.public.____",
    ("public", "my-table"): "eco2.public.my-table",
    ("public", "2024"): "eco2.public.2024",
    ("public", "😀"): "eco2.public.__",
}

# Kafka's FileOffsetBackingStore files as Debezium wrote them (Java-serialized HashMap<byte[], byte[]>)
SNAPSHOT_OFFSETS = bytes.fromhex(
    "aced0005737200116a6176612e7574696c2e486173684d61700507dac1c31660d103000246000a6c6f6164466163746f72"
    "4900097468726573686f6c6478703f4000000000000c77080000001000000001757200025b42acf317f8060854e0020000"
    "7870000000285b226c616b65686f7573652d65636f325f6f6464222c7b22736572766572223a2265636f32227d5d757100"
    "7e0002000000367b226c736e223a32363338343638302c2274784964223a3733302c2274735f75736563223a3137393634"
    "35333839343436303232317d78"
)
STREAMING_OFFSETS = bytes.fromhex(
    "aced0005737200116a6176612e7574696c2e486173684d61700507dac1c31660d103000246000a6c6f6164466163746f72"
    "4900097468726573686f6c6478703f4000000000000c77080000001000000001757200025b42acf317f8060854e0020000"
    "78700000003b5b226c616b65686f7573652d74727574685f74727574685f315f6c6f63616c5f313431336361222c7b2273"
    "6572766572223a227472757468227d5d7571007e0002000000787b226c736e5f70726f63223a32383432323430382c226d"
    "65737361676554797065223a22434f4d4d4954222c226c736e5f636f6d6d6974223a32383432323430382c226c736e223a"
    "32383432323430382c2274784964223a313033312c2274735f75736563223a313739363435343633353334303230367d78"
)


@pytest.mark.parametrize(("real", "written"), sorted(DEBEZIUM_FIELD_NAMES.items()))
def test_avro_field_names_as_debezium_adjusts_them(real, written):
    assert avro_field_name(real) == written


@pytest.mark.parametrize(("table", "topic"), sorted(DEBEZIUM_TOPICS.items()))
def test_topic_names_as_debezium_sanitizes_them(table, topic):
    assert debezium_topic("eco2", *table) == topic


def test_regex_literals_hold_no_comma_and_no_syntax():
    text = java_regex_literal('we ird,"x".ü*')
    assert "," not in text and "." not in text and "*" not in text
    assert text == "we\\x{20}ird\\x{2c}\\x{22}x\\x{22}\\x{2e}\\x{fc}\\x{2a}"
    assert odd_columns_regex("s", "t.u") == "(?-i)s\\.t\\x{2e}u\\.(?:[0-9].*|.*[^A-Za-z0-9_].*)"


def test_source_names_come_from_the_schema_parameter():
    odd = ConnectSchema(
        "string",
        optional=True,
        parameters=(("__debezium.source.column.type", "TEXT"), (SOURCE_COLUMN_NAME, 'a"b')),
    )
    row = struct("eco2.public.t.Value", [("id", ConnectSchema("int32")), ("a_b", odd)])
    assert [source_name(f) for f in row.fields] == ["id", 'a"b']
    assert source_names(row) == {"a_b": 'a"b'}
    # the parameters survive the Avro footer round trip, and stay out of the decoded field's metadata
    again = parse_avro_schema(row.to_avro())
    assert source_names(again) == {"a_b": 'a"b'}
    assert logical_field('a"b', odd).metadata is None


def test_offsets_files_as_debezium_writes_them(tmp_path):
    path = tmp_path / "x.offsets"
    path.write_bytes(SNAPSHOT_OFFSETS)
    assert read_offsets_file(path) == [
        (
            ["lakehouse-eco2_odd", {"server": "eco2"}],
            {"lsn": 26384680, "txId": 730, "ts_usec": 1796453894460221},
        )
    ]
    assert read_offset(path, "lakehouse-eco2_odd", "eco2")["lsn"] == 26384680
    assert read_offset(path, "lakehouse-eco2_odd", "other") is None
    path.write_bytes(STREAMING_OFFSETS)
    offset = read_offset(path, "lakehouse-truth_truth_1_local_1413ca", "truth")
    assert offset["lsn_proc"] == offset["lsn_commit"] == 28422408
    assert offset_position(offset) == 28422408 and lsn_text(28422408) == "0/1B1B108"
    assert parse_lsn("0/1B1B108") == 28422408 and parse_lsn("1/0") == 1 << 32
    assert read_offsets_file(tmp_path / "missing.offsets") == []
    path.write_bytes(STREAMING_OFFSETS[:120])  # cut short (a power loss): no position, no guess
    assert read_offset(path, "lakehouse-truth_truth_1_local_1413ca", "truth") is None


def test_identity_digest_depends_on_lake_cluster_and_database():
    base = CaptureIdentity("/lake", "7715710200401841661", 16384, "scan")
    assert base.digest == CaptureIdentity("/lake", "7715710200401841661", 16384, "scan").digest
    others = [
        CaptureIdentity("/other", "7715710200401841661", 16384, "scan"),
        CaptureIdentity("/lake", "7715710200401841662", 16384, "scan"),
        CaptureIdentity("/lake", "7715710200401841661", 16385, "scan"),
    ]
    assert len({base.digest, *(o.digest for o in others)}) == 4


def test_names_debezium_would_merge_are_refused():
    with pytest.raises(
        CaptureSetupError, match=r"tables 'public\.ü x', 'public\.ä x' .* topic 'eco2\.public\.__x'"
    ):
        _check_names(
            "db",
            "eco2",
            [("public.ü x", ("public", "ü x"), ("id",)), ("public.ä x", ("public", "ä x"), ("id",))],
        )
    with pytest.raises(CaptureSetupError, match=r"columns 'a b', 'a_b' of table 'public\.t' .* field 'a_b'"):
        _check_names("db", "eco2", [("public.t", ("public", "t"), ("id", "a b", "a_b"))])
    _check_names(
        "db",
        "eco2",
        [
            ("public.t", ("public", "t"), ("id", "a b", "ab")),
            ("we ird.Key Words", ("we ird", "Key Words"), ("select",)),
        ],
    )
