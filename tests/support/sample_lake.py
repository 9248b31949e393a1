"""Turn the real Debezium 3.6.3 captures in ../shared/samples/debezium/connect/ into lake objects,
the way the S3 sink would write them (spec lake-format.md §1–§4): one Kafka partition per topic,
Kafka offsets in arrival order, tombstones consuming an offset but never reaching a value file,
the real AvroData schema of each event in the Parquet footer, rotation on schema change."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lakehouse.lake.connect import ConnectSchema, parse_avro_schema
from lakehouse.lake.jsonlines import payloads_to_arrow
from lakehouse.lake.sink import SinkConfig, SinkWriter
from lakehouse.lake.store import ObjectStore

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "samples" / "debezium"
CONNECT_DIR = SAMPLES / "connect"


@dataclass
class SampleEvent:
    topic: str
    offset: int
    key: dict | None
    value: dict | None  # None = tombstone
    value_schema: ConnectSchema | None
    key_schema: ConnectSchema | None
    headers: dict


def load_events(connect_dir: Path = CONNECT_DIR) -> list[SampleEvent]:
    events: list[SampleEvent] = []
    for path in sorted(connect_dir.glob("*.jsonl")):
        value_schemas: dict[str, ConnectSchema] = {}
        key_schemas: dict[str, ConnectSchema] = {}
        offset = 0
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            if rec.get("avro_value_schema"):
                value_schemas[rec["avro_value_schema_id"]] = parse_avro_schema(rec["avro_value_schema"])
            if rec.get("avro_key_schema"):
                key_schemas[rec["avro_key_schema_id"]] = parse_avro_schema(rec["avro_key_schema"])
            vs = value_schemas.get(rec.get("avro_value_schema_id")) if rec["value"] is not None else None
            ks = key_schemas.get(rec.get("avro_key_schema_id"))
            events.append(
                SampleEvent(rec["topic"], offset, rec["key"], rec["value"], vs, ks, rec.get("headers") or {})
            )
            offset += 1
    return events


def write_sample_lake(
    store: ObjectStore, config: SinkConfig = SinkConfig(flush_size=3), events: list[SampleEvent] | None = None
) -> SinkWriter:
    """Write every sample event through the sink emulation, one record at a time (so schema
    changes rotate exactly where they happened)."""
    writer = SinkWriter(store, config)
    for ev in events if events is not None else load_events():
        if ev.value is None:
            continue  # tombstone: behavior.on.null.values=ignore leaves an offset gap
        table = payloads_to_arrow([ev.value], ev.value_schema)
        ts = np.array([ev.value["source"]["ts_ms"]], dtype=np.int64)
        keys = None
        if config.store_keys:
            if ev.key is None:
                raise ValueError(f"{ev.topic}@{ev.offset}: null key (truncate) with store.kafka.keys=true")
            keys = payloads_to_arrow([ev.key], ev.key_schema)
        writer.write(
            ev.topic,
            0,
            table,
            ev.value_schema,
            np.array([ev.offset], dtype=np.int64),
            keys=keys,
            key_schema=ev.key_schema,
            timestamps_ms=ts,
        )
    writer.close()
    return writer
