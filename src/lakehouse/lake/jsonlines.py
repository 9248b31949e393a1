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
import pyarrow.compute as pc

from lakehouse.lake.connect import DECIMAL, ConnectSchema, parse_connect_json_schema
from lakehouse.lake.semantic import exact_decimal

_NON_FINITE = {"NaN", "Infinity", "-Infinity"}


def _physical_value(value: Any, schema: ConnectSchema) -> Any:
    if value is None:
        return None
    t = schema.type
    if t == "struct":
        if not isinstance(value, dict):
            raise ValueError(f"expected an object for struct {schema.name or ''}, got {type(value).__name__}")
        return {f.name: _physical_value(value.get(f.name), f.schema) for f in schema.fields}
    if t == "array":
        return [_physical_value(v, schema.items) for v in value]  # type: ignore[arg-type]
    if t == "map":
        return [(k, _physical_value(v, schema.values)) for k, v in value.items()]  # type: ignore[arg-type]
    if schema.name == DECIMAL:
        scale = int(schema.params.get("scale", "0"))
        if isinstance(value, (int, float)):
            return Decimal(str(value))
        return exact_decimal(int.from_bytes(base64.b64decode(value), "big", signed=True), scale)
    if t == "bytes":
        return base64.b64decode(value) if isinstance(value, str) else bytes(value)
    if t in ("float32", "float64") and isinstance(value, str):
        # JsonConverter writes non-finite floats as the strings "NaN", "Infinity", "-Infinity"
        if value not in _NON_FINITE:
            raise ValueError(f"{value!r} is not a {t}")
        return float(value)
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


def json_arrow_type(schema: ConnectSchema) -> pa.DataType:
    """The Arrow type of a JsonConverter value as parsed from JSON text: like the physical type,
    except that bytes and decimals are base64 strings and Connect temporals are numbers."""
    t = schema.type
    if t == "struct":
        return pa.struct([pa.field(f.name, json_arrow_type(f.schema), True) for f in schema.fields])
    if t == "array":
        return pa.list_(pa.field("element", json_arrow_type(schema.items), True))  # type: ignore[arg-type]
    if t == "map":
        return pa.map_(pa.string(), pa.field("value", json_arrow_type(schema.values), True))  # type: ignore[arg-type]
    if schema.name == DECIMAL or t == "bytes":
        return pa.string()
    return {
        "int8": pa.int64(),
        "int16": pa.int64(),
        "int32": pa.int64(),
        "int64": pa.int64(),
        "float32": pa.float64(),
        "float64": pa.float64(),
        "boolean": pa.bool_(),
        "string": pa.string(),
    }[t]


def json_lines_to_arrow(lines: list[bytes], schema: ConnectSchema) -> pa.Table:
    """Many JsonConverter values (one JSON document each) -> the sink's physical Arrow layout.

    Parsing happens in Arrow's C++ JSON reader against an explicit schema; only base64 columns
    (bytes, decimals) are converted in Python, column by column. Falls back to the per-row path
    for text Arrow does not parse (Jackson writes NaN/Infinity as bare tokens)."""
    import pyarrow.json as pajson

    json_type = json_arrow_type(schema)
    if _has_map(schema):  # Arrow's JSON reader has no map type: per-row path
        return payloads_to_arrow([json.loads(ln) for ln in b"\n".join(lines).split(b"\n")], schema)
    try:
        table = pajson.read_json(
            pa.BufferReader(b"\n".join(lines)),
            read_options=pajson.ReadOptions(block_size=1 << 24),
            parse_options=pajson.ParseOptions(
                explicit_schema=pa.schema(list(json_type)), unexpected_field_behavior="error"
            ),
        )
    except pa.ArrowException:
        # one element may hold several newline-joined documents
        return payloads_to_arrow([json.loads(ln) for ln in b"\n".join(lines).split(b"\n")], schema)
    arr = pa.StructArray.from_arrays(
        [table.column(i).combine_chunks() for i in range(table.num_columns)], fields=list(json_type)
    )
    return pa.Table.from_struct_array(_fix_json_column(arr, schema))


def _has_map(schema: ConnectSchema) -> bool:
    if schema.type == "map":
        return True
    if schema.type == "array":
        return _has_map(schema.items)  # type: ignore[arg-type]
    return any(_has_map(f.schema) for f in schema.fields)


def _fix_json_column(arr: pa.Array, schema: ConnectSchema) -> pa.Array:
    target = schema.physical_arrow_type()
    if arr.type == target:
        return arr
    t = schema.type
    if t == "struct":
        children = []
        for i, f in enumerate(schema.fields):
            child = _fix_json_column(arr.field(i), f.schema)
            if not f.schema.optional and child.null_count:
                # required fields of a null struct (e.g. `before` of an insert) hold no value; Arrow
                # wants one, parquet-avro writes none (the group is null)
                child = _fill_nulls(child)
            children.append(child)
        return pa.StructArray.from_arrays(children, fields=list(target), mask=arr.is_null())
    if t == "array":
        values = _fix_json_column(arr.flatten(), schema.items)  # type: ignore[arg-type]
        offsets = pc.subtract(arr.offsets, arr.offsets[0]) if arr.offset else arr.offsets
        return pa.ListArray.from_arrays(offsets, values, type=target, mask=arr.is_null())
    if pa.types.is_binary(target) and schema.name == DECIMAL:  # legacy decimal (scale < 0 or > precision)
        return pa.array([None if v is None else base64.b64decode(v) for v in arr.to_pylist()], type=target)
    if schema.name == DECIMAL or t == "bytes" or t == "map" or schema.name in _CONNECT_TEMPORALS:
        return pa.array([_physical_value(v, schema) for v in arr.to_pylist()], type=target)
    return arr.cast(target)


def _fill_nulls(arr: pa.Array) -> pa.Array:
    t = arr.type
    if pa.types.is_struct(t):
        children = [
            _fill_nulls(arr.field(i)) if not t.field(i).nullable else arr.field(i)
            for i in range(t.num_fields)
        ]
        return pa.StructArray.from_arrays(children, fields=list(t))
    if pa.types.is_list(t):
        return pc.if_else(arr.is_null(), pa.scalar([], t), arr)
    if pa.types.is_string(t) or pa.types.is_binary(t):
        zero = pa.scalar("" if pa.types.is_string(t) else b"", t)
    elif pa.types.is_boolean(t):
        zero = pa.scalar(False)
    elif pa.types.is_decimal(t):
        zero = pa.scalar(Decimal(0), t)
    elif pa.types.is_temporal(t):  # Connect Date/Time/Timestamp: fill through the storage integer
        storage = pa.int32() if t.bit_width == 32 else pa.int64()
        return pc.fill_null(arr.cast(storage), pa.scalar(0, storage)).cast(t)
    else:
        zero = pa.scalar(0, pa.int64()).cast(t)
    return pc.fill_null(arr, zero)


_CONNECT_TEMPORALS = {
    "org.apache.kafka.connect.data.Date",
    "org.apache.kafka.connect.data.Time",
    "org.apache.kafka.connect.data.Timestamp",
}


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
