"""Primary keys from `store.kafka.keys` companion files (the value files never mark them, pitfall 6)."""

from __future__ import annotations

import io
import json

import pytest
from support.sample_lake import load_events, write_sample_lake

from lakehouse.lake.layout import LakeObjectError
from lakehouse.lake.reader import LakeReader, avro_container_schema
from lakehouse.lake.sink import SinkConfig
from lakehouse.lake.store import LocalStore


def _avro_container(schema: dict) -> bytes:
    """A minimal Avro object container header as Avro's DataFileWriter writes it."""

    def long(n: int) -> bytes:
        n = (n << 1) ^ (n >> 63)
        out = bytearray()
        while True:
            b = n & 0x7F
            n >>= 7
            if n:
                out.append(b | 0x80)
            else:
                out.append(b)
                return bytes(out)

    def blob(b: bytes) -> bytes:
        return long(len(b)) + b

    meta = {b"avro.schema": json.dumps(schema).encode(), b"avro.codec": b"null"}
    body = io.BytesIO()
    body.write(b"Obj\x01")
    body.write(long(len(meta)))
    for k, v in meta.items():
        body.write(blob(k) + blob(v))
    body.write(long(0))
    body.write(b"\x00" * 16)  # sync marker
    return body.getvalue()


def test_key_columns_from_parquet_companions(tmp_path):
    store = LocalStore(tmp_path)
    # truncates have null keys, which the sink refuses with store.kafka.keys=true (pitfall 21)
    events = [e for e in load_events() if not (e.value and e.value["op"] == "t")]
    write_sample_lake(store, SinkConfig(flush_size=3, store_keys=True), events)
    reader = LakeReader(store)
    assert reader.key_columns("eco2.scan.llm_call_log") == ("id",)
    # and the companions are never read as data
    assert reader.read_changes("eco2.scan.llm_call_log").num_rows == 7


def test_key_columns_none_without_companions(tmp_path):
    write_sample_lake(LocalStore(tmp_path))
    assert LakeReader(str(tmp_path)).key_columns("eco2.auth.users") is None


def test_key_columns_from_avro_companion(tmp_path):
    store = LocalStore(tmp_path)
    write_sample_lake(store)
    key_schema = {
        "type": "record",
        "name": "Key",
        "namespace": "eco2.scan.feedback",
        "fields": [{"name": "scan_id", "type": "string"}, {"name": "user_id", "type": "long"}],
    }
    store.put_bytes(
        "topics/eco2.auth.users/partition=0/eco2.auth.users+0+0000000000.keys.avro",
        _avro_container(key_schema),
    )
    assert avro_container_schema(_avro_container(key_schema)) == key_schema
    assert LakeReader(store).key_columns("eco2.auth.users") == ("scan_id", "user_id")


def test_broken_keys_companion_names_the_object(tmp_path):
    store = LocalStore(tmp_path)
    write_sample_lake(store)
    bad = "topics/eco2.auth.users/partition=0/eco2.auth.users+0+0000000000.keys.avro"
    store.put_bytes(bad, b"not avro")
    with pytest.raises(LakeObjectError) as err:
        LakeReader(store).key_columns("eco2.auth.users")
    assert err.value.key == bad


def test_keys_companion_layout_matches_the_sink(tmp_path):
    """`message RecordKey { required group key { required ... } }` with the Avro footer."""
    import pyarrow.parquet as pq

    store = LocalStore(tmp_path)
    events = [e for e in load_events() if not (e.value and e.value["op"] == "t")]
    writer = write_sample_lake(store, SinkConfig(flush_size=3, store_keys=True), events)
    companion = next(k for k in store.list("topics/eco2.auth.users/") if ".keys." in k.key)
    pf = pq.ParquetFile(store.open_input(companion.key))
    schema = pf.schema_arrow
    assert schema.names == ["key"] and not schema.field("key").nullable
    assert not schema.field("key").type.field("id").nullable
    footer = json.loads(pf.metadata.metadata[b"parquet.avro.schema"])
    assert footer["name"] == "RecordKey" and footer["fields"][0]["name"] == "key"
    assert writer.objects_written  # value files were written beside it
