"""Decode Debezium PostgreSQL semantic types (spec lake-format.md §4.4) into Arrow logical types.

The Parquet files carry no logical annotation for Debezium's types: an ``io.debezium.time.Date``
is a plain INT32, a ``ZonedTimestamp`` a plain string. The meaning is only in ``connect.name`` of
the footer schema, so decoding is driven by :class:`~lakehouse.lake.connect.ConnectSchema`.

Decoded columns carry Arrow field metadata ``debezium.name`` (and ``debezium.parameters``) so later
layers know that a string is JSON, an enum or a UUID.

| connect.name                         | physical        | decoded Arrow type            |
|--------------------------------------|-----------------|-------------------------------|
| io.debezium.time.Date                | int32 days      | date32                        |
| io.debezium.time.Time                | int32 ms        | time32[ms]                    |
| io.debezium.time.MicroTime           | int64 µs        | time64[us]                    |
| io.debezium.time.NanoTime            | int64 ns        | time64[ns]                    |
| io.debezium.time.Timestamp           | int64 ms        | timestamp[ms] (no zone)       |
| io.debezium.time.MicroTimestamp      | int64 µs        | timestamp[us] (no zone)       |
| io.debezium.time.NanoTimestamp       | int64 ns        | timestamp[ns] (no zone)       |
| io.debezium.time.ZonedTimestamp      | ISO string      | timestamp[us, UTC]            |
| io.debezium.time.MicroDuration       | int64 µs        | duration[us]                  |
| io.debezium.data.VariableScaleDecimal| {scale, value}  | string (exact decimal text)   |
| org.apache.kafka.connect.data.Decimal| bytes/decimal   | decimal128/256(p, s)          |
| connect.type int8 / int16            | int32           | int8 / int16                  |
| Json, Uuid, Enum, Xml, ZonedTime, Interval, Bits, bytes | as is | string / binary (tagged) |
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from lakehouse.lake.connect import DECIMAL, ConnectSchema
from lakehouse.lake.names import SOURCE_PARAMETER_PREFIX

DATE = "io.debezium.time.Date"
TIME = "io.debezium.time.Time"
MICRO_TIME = "io.debezium.time.MicroTime"
NANO_TIME = "io.debezium.time.NanoTime"
TIMESTAMP = "io.debezium.time.Timestamp"
MICRO_TIMESTAMP = "io.debezium.time.MicroTimestamp"
NANO_TIMESTAMP = "io.debezium.time.NanoTimestamp"
ZONED_TIMESTAMP = "io.debezium.time.ZonedTimestamp"
MICRO_DURATION = "io.debezium.time.MicroDuration"
VARIABLE_SCALE_DECIMAL = "io.debezium.data.VariableScaleDecimal"
TOAST_PLACEHOLDER = "__debezium_unavailable_value"


def _md5_name_uuid(name: bytes) -> bytes:
    raw = bytearray(hashlib.md5(name).digest())
    raw[6] = (raw[6] & 0x0F) | 0x30  # version 3
    raw[8] = (raw[8] & 0x3F) | 0x80  # IETF variant
    return bytes(raw)


# uuid[] columns carry Java's UUID.nameUUIDFromBytes(placeholder) (spec §5.5)
TOAST_PLACEHOLDER_UUID = str(uuid.UUID(bytes=_md5_name_uuid(TOAST_PLACEHOLDER.encode())))

_SIMPLE_CASTS: dict[str, pa.DataType] = {
    DATE: pa.date32(),
    TIME: pa.time32("ms"),
    MICRO_TIME: pa.time64("us"),
    NANO_TIME: pa.time64("ns"),
    TIMESTAMP: pa.timestamp("ms"),
    MICRO_TIMESTAMP: pa.timestamp("us"),
    NANO_TIMESTAMP: pa.timestamp("ns"),
    MICRO_DURATION: pa.duration("us"),
}


class DecodeError(ValueError):
    """A value that does not decode as its declared semantic type."""


def logical_type(schema: ConnectSchema) -> pa.DataType:
    """The Arrow type a column of this Connect schema decodes to."""
    name = schema.name
    if schema.type == "struct":
        if name == VARIABLE_SCALE_DECIMAL:
            return pa.string()
        return pa.struct([logical_field(f.name, f.schema) for f in schema.fields])
    if schema.type == "array":
        return pa.list_(logical_field("element", schema.items))  # type: ignore[arg-type]
    if schema.type == "map":
        return pa.map_(logical_type(schema.keys), logical_field("value", schema.values))  # type: ignore[arg-type]
    if name in _SIMPLE_CASTS:
        return _SIMPLE_CASTS[name]
    if name == ZONED_TIMESTAMP:
        return pa.timestamp("us", tz="UTC")
    if name == DECIMAL and pa.types.is_binary(schema.physical_arrow_type()):
        return pa.string()  # scale < 0 or > precision: no Arrow decimal fits, exact text instead
    if schema.type == "int8":
        return pa.int8()
    if schema.type == "int16":
        return pa.int16()
    return schema.physical_arrow_type()


DEFAULT_META = "lakehouse.default"  # the column's schema default, decoded (see column_default)
_TEMPORAL_NAMES = {
    DATE,
    TIME,
    MICRO_TIME,
    NANO_TIME,
    TIMESTAMP,
    MICRO_TIMESTAMP,
    NANO_TIMESTAMP,
    ZONED_TIMESTAMP,
    "io.debezium.time.ZonedTime",
    "org.apache.kafka.connect.data.Date",
    "org.apache.kafka.connect.data.Time",
    "org.apache.kafka.connect.data.Timestamp",
}


def logical_field(name: str, schema: ConnectSchema) -> pa.Field:
    meta: dict[str, str] = {}
    if schema.name:
        meta["debezium.name"] = schema.name
    # the column metadata ``column.propagate.source.type`` adds where the capture records a column's
    # real name (lakehouse.lake.names) is not part of the column's type
    params = {k: v for k, v in schema.parameters if not k.startswith(SOURCE_PARAMETER_PREFIX)}
    if params:
        meta["debezium.parameters"] = json.dumps(params, sort_keys=True)
    default = decode_default(schema)
    if default is not None:
        meta[DEFAULT_META] = encode_value(default)
    return pa.field(name, logical_type(schema), nullable=True, metadata=meta or None)


def decode_default(schema: ConnectSchema) -> pa.Array | None:
    """The column's schema default (Debezium copies the column's DEFAULT into the Connect schema)
    as a one-element array of the decoded type; None when there is none or it cannot be known.

    PostgreSQL's ``ADD COLUMN ... DEFAULT <constant>`` shows that value in every existing row without
    a change event, so it is the only place the lake has it. Debezium writes function defaults
    (``now()``, ``CURRENT_DATE``) as the epoch: those are volatile, their real values unknowable
    downstream, so a temporal default at the epoch counts as unknown (null)."""
    if schema.default is None or schema.type in ("struct", "array", "map"):
        return None
    physical = pa.binary() if schema.name == DECIMAL else schema.physical_arrow_type()
    try:
        value = decode_array(pa.array([schema.default], type=physical), schema)
    except (pa.ArrowException, ValueError, TypeError, DecodeError):
        return None
    if schema.name in _TEMPORAL_NAMES and value[0].is_valid and _epoch_zero(value):
        return None
    return value


def _epoch_zero(value: pa.Array) -> bool:
    t = value.type
    if pa.types.is_time(t) or pa.types.is_timestamp(t) or pa.types.is_date(t):
        width = pa.int32() if pa.types.is_date32(t) or pa.types.is_time32(t) else pa.int64()
        return value.cast(width)[0].as_py() == 0
    if pa.types.is_string(t):  # ZonedTime text
        return value[0].as_py().startswith("00:00:00")
    return False


def encode_value(value: pa.Array) -> str:
    """A one-element array as text (Arrow IPC, base64): keeps any type exactly."""
    sink = pa.BufferOutputStream()
    batch = pa.record_batch([value], names=["v"])
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return base64.b64encode(sink.getvalue().to_pybytes()).decode("ascii")


def decode_value(text: str) -> pa.Array:
    return pa.ipc.open_stream(base64.b64decode(text)).read_all().column("v").combine_chunks()


def field_default(f: pa.Field) -> pa.Array | None:
    """The default recorded on a field by :func:`logical_field` (None: null)."""
    raw = (f.metadata or {}).get(DEFAULT_META.encode())
    return None if raw is None else decode_value(raw.decode("ascii"))


def decode_array(arr: pa.Array, schema: ConnectSchema) -> pa.Array:
    """Decode one physical column into its logical Arrow type."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    target = logical_type(schema)
    name = schema.name
    if schema.type == "struct":
        if name == VARIABLE_SCALE_DECIMAL:
            return _decode_variable_scale_decimal(arr)
        children = arr.flatten()
        decoded = [decode_array(children[i], f.schema) for i, f in enumerate(schema.fields)]
        return pa.StructArray.from_arrays(decoded, fields=list(target), mask=arr.is_null())
    if schema.type == "array":
        if arr.type == target:
            return arr
        values = decode_array(arr.values if arr.offset == 0 else arr.flatten(), schema.items)  # type: ignore[arg-type]
        offsets = arr.offsets if arr.offset == 0 else pc.subtract(arr.offsets, arr.offsets[0])
        return pa.ListArray.from_arrays(offsets, values, type=target, mask=arr.is_null())
    if schema.type == "map":
        return arr
    if name in _SIMPLE_CASTS:
        return arr.cast(target)
    if name == ZONED_TIMESTAMP:
        return parse_zoned_timestamp(arr)
    if name == DECIMAL and pa.types.is_string(target):
        scale = int(schema.params.get("scale", "0"))
        return pa.array(
            [
                None
                if raw is None
                else format(
                    exact_decimal(
                        int.from_bytes(
                            base64.b64decode(raw) if isinstance(raw, str) else raw, "big", signed=True
                        ),
                        scale,
                    ),
                    "f",
                )
                for raw in arr.to_pylist()
            ],
            type=pa.string(),
        )
    if name == DECIMAL and not pa.types.is_decimal(arr.type):
        return _decode_decimal_bytes(arr, target)
    if arr.type != target:
        return arr.cast(target)
    return arr


def parse_zoned_timestamp(arr: pa.Array) -> pa.Array:
    """ISO-8601 strings with 0–9 fractional digits (pitfall 25) to timestamp[us, UTC]."""
    if pa.types.is_timestamp(arr.type):
        return arr.cast(pa.timestamp("us", tz="UTC"))
    # Arrow parses variable fractions; more than 6 digits would lose data, so trim to µs first.
    trimmed = pc.replace_substring_regex(arr, r"(\.\d{6})\d+", r"\1")
    try:
        return trimmed.cast(pa.timestamp("us", tz="UTC"))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        bad = _first_unparseable(trimmed)
        raise DecodeError(f"ZonedTimestamp value {bad!r} is not ISO-8601: {exc}") from exc


def _first_unparseable(arr: pa.Array) -> Any:
    for v in arr.to_pylist():
        if v is None:
            continue
        try:
            pa.array([v]).cast(pa.timestamp("us", tz="UTC"))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return v
    return None


def _decode_variable_scale_decimal(arr: pa.Array) -> pa.Array:
    scales = arr.field("scale").to_pylist()
    values = arr.field("value").to_pylist()
    valid = arr.is_valid().to_pylist()
    out: list[str | None] = []
    for ok, scale, raw in zip(valid, scales, values):
        if not ok or raw is None:
            out.append(None)
            continue
        if isinstance(raw, str):  # JSON form: base64
            raw = base64.b64decode(raw)
        unscaled = int.from_bytes(raw, "big", signed=True)
        out.append(format(exact_decimal(unscaled, int(scale)), "f"))
    return pa.array(out, type=pa.string())


def _decode_decimal_bytes(arr: pa.Array, target: pa.DataType) -> pa.Array:
    """Connect Decimal as raw or base64 big-endian two's-complement bytes (JSON lines)."""
    scale = target.scale
    out: list[Decimal | None] = []
    for raw in arr.to_pylist():
        if raw is None:
            out.append(None)
            continue
        if isinstance(raw, (int, float)):  # JsonConverter decimal.format=NUMERIC
            out.append(Decimal(str(raw)))
            continue
        if isinstance(raw, str):
            raw = base64.b64decode(raw)
        out.append(exact_decimal(int.from_bytes(raw, "big", signed=True), scale))
    return pa.array(out, type=target)


def exact_decimal(unscaled: int, scale: int) -> Decimal:
    """unscaled × 10^-scale without rounding (Decimal arithmetic would round at 28 digits)."""
    return Decimal(f"{unscaled}E{-scale}")


def is_toast_placeholder(arr: pa.Array) -> pa.Array:
    """Boolean mask: which values are Debezium's unchanged-TOAST placeholder (spec §5.5):
    the string, its bytes, ``[placeholder]`` for text[], ``[nameUUIDFromBytes(placeholder)]`` for
    uuid[], the placeholder's byte values for int[]/bigint[], ``{placeholder: placeholder}`` for
    hstore in map mode."""
    t = arr.type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return pc.fill_null(pc.equal(arr, TOAST_PLACEHOLDER), False)
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return pc.fill_null(pc.equal(arr, pa.scalar(TOAST_PLACEHOLDER.encode(), t)), False)
    needles: list[list[Any]]
    if pa.types.is_map(t):
        needles = [[(TOAST_PLACEHOLDER, TOAST_PLACEHOLDER)]]
    elif pa.types.is_list(t) or pa.types.is_large_list(t):
        vt = t.value_type
        if pa.types.is_string(vt) or pa.types.is_large_string(vt):
            needles = [[TOAST_PLACEHOLDER], [TOAST_PLACEHOLDER_UUID]]
        elif pa.types.is_integer(vt):
            needles = [list(TOAST_PLACEHOLDER.encode())]
        else:
            return pa.array([False] * len(arr), pa.bool_())
    else:
        return pa.array([False] * len(arr), pa.bool_())
    return pa.array([v in needles for v in arr.to_pylist()], type=pa.bool_())
