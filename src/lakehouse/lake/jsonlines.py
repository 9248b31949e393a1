"""JSON Lines objects of the S3 sink's JsonFormat.

The sink's JsonFormat always writes with ``schemas.enable=false`` (each line is the value). When the
upstream converter embedded schemas (Debezium with JsonConverter ``schemas.enable=true`` and the sink
reading schemaless), each line is ``{"schema": ..., "payload": ...}`` instead, and consecutive lines
may carry different schemas (a schemaless sink never rotates on schema change).

Values follow Connect's JsonConverter: bytes and decimals as base64, Debezium temporal types as
numbers or ISO strings, structs as objects.
"""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pyarrow as pa

from lakehouse.lake.connect import DECIMAL, ConnectSchema, parse_connect_json_schema
from lakehouse.lake.semantic import exact_decimal


def _physical_value(value: Any, schema: ConnectSchema) -> Any:
    if value is None:
        return None
    t = schema.type
    if t == "struct":
        if not isinstance(value, dict):
            raise ValueError(f"expected an object for struct {schema.name or ''}, got {type(value).__name__}")
        return {f.name: _physical_value(value.get(f.name), f.schema) for f in schema.fields}
    if t == "array":
        return [_physical_value(v, schema.items) for v in value]
    if t == "map":
        return [(k, _physical_value(v, schema.values)) for k, v in value.items()]
    if schema.name == DECIMAL:
        scale = int(schema.params.get("scale", "0"))
        if isinstance(value, (int, float)):
            return Decimal(str(value))
        return exact_decimal(int.from_bytes(base64.b64decode(value), "big", signed=True), scale)
    if t == "bytes":
        return base64.b64decode(value) if isinstance(value, str) else bytes(value)
    if schema.name in ("org.apache.kafka.connect.data.Timestamp",):
        import datetime as dt

        return dt.datetime.fromtimestamp(value / 1000, dt.UTC)
    if schema.name == "org.apache.kafka.connect.data.Date":
        import datetime as dt

        return dt.date(1970, 1, 1) + dt.timedelta(days=value)
    if schema.name == "org.apache.kafka.connect.data.Time":
        import datetime as dt

        return (dt.datetime(1970, 1, 1) + dt.timedelta(milliseconds=value)).time()
    return value


def payloads_to_arrow(payloads: list[dict], schema: ConnectSchema) -> pa.Table:
    """JsonConverter payloads -> the Arrow layout pyarrow would read from the sink's Parquet."""
    arrow_type = schema.physical_arrow_type()
    rows = [_physical_value(p, schema) for p in payloads]
    arr = pa.array(rows, type=arrow_type)
    return pa.Table.from_struct_array(arr)


def read_lines(data: bytes, gzipped: bool) -> list[bytes]:
    if gzipped:
        data = gzip.decompress(data)
    return [ln for ln in data.split(b"\n") if ln.strip()]


def has_embedded_schema(first_line: bytes) -> bool:
    doc = json.loads(first_line)
    return isinstance(doc, dict) and set(doc) == {"schema", "payload"}


def iter_embedded_runs(lines: list[bytes]) -> Iterator[tuple[ConnectSchema, int, list[dict]]]:
    """Group consecutive lines that share a schema: yields (schema, first line index, payloads)."""
    current_text: str | None = None
    current: ConnectSchema | None = None
    start = 0
    payloads: list[dict] = []
    for i, line in enumerate(lines):
        doc = json.loads(line)
        if not isinstance(doc, dict) or set(doc) != {"schema", "payload"}:
            raise ValueError(f"line {i + 1} has no embedded schema while earlier lines do")
        text = json.dumps(doc["schema"], sort_keys=True)
        if text != current_text:
            if current is not None:
                yield current, start, payloads
            current_text, current, start, payloads = text, parse_connect_json_schema(doc["schema"]), i, []
        payloads.append(doc["payload"])
    if current is not None:
        yield current, start, payloads


def read_schemaless(lines: list[bytes]) -> pa.Table:
    """Schemaless lines: types inferred from the JSON values (ints, floats, strings, objects).

    Python's JSON parser keeps ISO timestamps as strings (Arrow's JSON reader would guess some of
    them as timestamps, differently per file)."""
    rows = [json.loads(ln) for ln in lines]
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ValueError(f"line {i + 1} is a JSON {type(row).__name__}, not an object")
    return pa.Table.from_struct_array(pa.array(rows))
