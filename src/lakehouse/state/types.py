"""Logical (decoded) Arrow types <-> what a Delta table can hold.

Delta Lake has no time-of-day, duration or 256-bit decimal types. Such columns are stored as
int64 (same unit) or exact decimal text; the logical schema travels in the table's commit
metadata so readers get the decoded types back (:func:`to_logical`).
"""

from __future__ import annotations

import base64

import pyarrow as pa


def storage_type(t: pa.DataType) -> pa.DataType:
    if pa.types.is_time(t) or pa.types.is_duration(t):
        return pa.int64()
    if pa.types.is_timestamp(t) and t.unit == "ns":
        return pa.int64()  # Delta timestamps are µs; keep nanoseconds exact
    if pa.types.is_decimal(t) and t.precision > 38:
        return pa.string()
    if pa.types.is_large_string(t):
        return pa.string()
    if pa.types.is_large_binary(t):
        return pa.binary()
    if pa.types.is_map(t):
        return pa.map_(storage_type(t.key_type), storage_type(t.item_type))
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return pa.list_(storage_type(t.value_type))
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, storage_type(f.type), f.nullable) for f in t])
    if pa.types.is_dictionary(t):
        return storage_type(t.value_type)
    return t


def storage_schema(schema: pa.Schema) -> pa.Schema:
    return pa.schema([pa.field(f.name, storage_type(f.type)) for f in schema])


def to_storage(table: pa.Table) -> pa.Table:
    target = storage_schema(table.schema)
    return (
        table
        if target.equals(table.schema)
        else pa.Table.from_arrays([_cast(c, f.type) for c, f in zip(table.columns, target)], schema=target)
    )


def to_logical(table: pa.Table, logical: pa.Schema) -> pa.Table:
    """Columns named in ``logical`` get their logical type back; others pass through."""
    arrays, fields = [], []
    for name, col in zip(table.column_names, table.columns):
        idx = logical.get_field_index(name)
        f = logical.field(idx) if idx >= 0 else pa.field(name, col.type)
        arrays.append(col if col.type == f.type else _cast(col, f.type))
        fields.append(f)
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _cast(col, to: pa.DataType):
    if col.type == to:
        return col
    frm = col.type
    if pa.types.is_time32(to) and pa.types.is_int64(frm):
        return col.cast(pa.int32()).cast(to)
    if pa.types.is_time32(frm) and pa.types.is_int64(to):
        return col.cast(pa.int32()).cast(pa.int64())
    return col.cast(to)


def encode_schema(schema: pa.Schema) -> str:
    return base64.b64encode(schema.serialize().to_pybytes()).decode("ascii")


def decode_schema(text: str) -> pa.Schema:
    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(text)))
