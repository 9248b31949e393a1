"""Connect schemas: the Avro text we write is exactly what Confluent's AvroData writes."""

from __future__ import annotations

import json

import pytest
from support.sample_lake import CONNECT_DIR

from lakehouse.lake.connect import avro_schema_json, parse_avro_schema, parse_connect_json_schema


def _real_avro_schemas() -> list[tuple[str, dict]]:
    out = []
    for path in sorted(CONNECT_DIR.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            for k in ("avro_value_schema", "avro_key_schema"):
                if rec.get(k):
                    out.append((f"{path.stem}:{rec[k + '_id']}", rec[k]))
    return out


@pytest.mark.parametrize("name,avro", _real_avro_schemas(), ids=lambda v: v if isinstance(v, str) else "")
def test_avro_text_round_trips_byte_for_byte(name, avro):
    text = json.dumps(avro, separators=(",", ":"), ensure_ascii=False)
    assert avro_schema_json(parse_avro_schema(text)) == text  # key order included (parameters!)


def test_connect_json_schema_round_trip():
    doc = {
        "type": "struct",
        "fields": [
            {
                "type": "bytes",
                "optional": True,
                "name": "org.apache.kafka.connect.data.Decimal",
                "version": 1,
                "parameters": {"scale": "4", "connect.decimal.precision": "5"},
                "field": "confidence",
            },
            {
                "type": "array",
                "items": {"type": "string", "optional": True},
                "optional": True,
                "field": "tags",
            },
        ],
        "optional": False,
        "name": "x.y.z.Value",
    }
    schema = parse_connect_json_schema(doc)
    assert list(schema.field("confidence").schema.params) == ["scale", "connect.decimal.precision"]
    assert schema.to_connect_json()["fields"][0]["parameters"] == doc["fields"][0]["parameters"]
