"""Avro object container files, as the S3 sink's AvroFormat writes them (read and written with fastavro).

``io.confluent.connect.s3.format.avro.AvroFormat`` writes each object as one Avro container file
(``<topic>+<partition>+<startOffset>.avro``): a header whose ``avro.schema`` metadata is the schema
Confluent's AvroData made from the Connect value schema (the same JSON, ``connect.*`` properties
included, that ParquetFormat keeps in the ``parquet.avro.schema`` footer) and whose ``avro.codec`` is
the sink's ``avro.codec`` (``null`` by default; ``deflate``, ``snappy``, ``bzip2``, ``xz``,
``zstandard``), then blocks of records, each followed by the file's 16-byte sync marker.

Records are turned into the *physical* Arrow layout pyarrow gives for the Parquet objects of the
same schema (:meth:`ConnectSchema.physical_arrow_type`), so semantic decoding (Debezium types) is
shared with the Parquet path. fastavro's own logical-type conversion is not used: records are
decoded with the header schema stripped of ``logicalType``, so Connect Date/Time/Timestamp arrive as
the stored integers and decimals as the stored unscaled bytes, exact and whatever their range, and
are converted here. Memory: one block is decompressed at a time, records are handed out in batches.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import IO, Any

import fastavro
import pyarrow as pa
import pyarrow.compute as pc
from fastavro.schema import SchemaParseException

from lakehouse.lake.connect import ConnectSchema

MAGIC = b"Obj\x01"
CODECS = ("null", "deflate", "snappy", "bzip2", "xz", "zstandard")
SYNC_INTERVAL = 64_000  # bytes per block: Avro DataFileWriter's default (the sink does not change it)
# the container header, as the Avro specification defines it
_HEADER_SCHEMA = fastavro.parse_schema(
    {
        "type": "record",
        "name": "org.apache.avro.file.Header",
        "fields": [
            {"name": "magic", "type": {"type": "fixed", "name": "Magic", "size": 4}},
            {"name": "meta", "type": {"type": "map", "values": "bytes"}},
            {"name": "sync", "type": {"type": "fixed", "name": "Sync", "size": 16}},
        ],
    }
)
# what fastavro raises on input that is not valid Avro (beyond ValueError and its subclasses)
_DECODE_ERRORS = (ValueError, EOFError, KeyError, IndexError, TypeError, OverflowError, SchemaParseException)
# decompressing a corrupt block: each codec library has its own exception types (zlib.error,
# lzma.LZMAError, cramjam's and zstd's errors, OSError from bz2), none of them shared
_BLOCK_ERRORS = (Exception,)


class AvroFileError(ValueError):
    """Not a readable Avro object container file, or data that does not fit its schema."""


@dataclass(frozen=True)
class AvroHeader:
    schema_text: str  # avro.schema, verbatim
    codec: str  # avro.codec ("null" when absent)
    metadata: dict[str, str]


class AvroContainer:
    """One container file open for reading, from a binary file object (seekable: fastavro asks
    for positions; wrap remote inputs in ``io.BufferedReader`` so blocks are read in large pieces)."""

    def __init__(self, fo: IO[bytes]):
        self._fo = fo
        try:
            self._blocks = fastavro.block_reader(_Bounded(fo))  # type: ignore[arg-type]
            meta = dict(self._blocks.metadata)
        except _DECODE_ERRORS as exc:
            raise AvroFileError(f"not an Avro object container file ({_reason(exc)})") from exc
        codec = meta.get("avro.codec", "null")
        if codec not in CODECS:
            raise AvroFileError(f"unsupported avro.codec {codec!r} (expected one of {', '.join(CODECS)})")
        self.header = AvroHeader(meta["avro.schema"], codec, meta)
        self._raw_schema: dict | None = None
        self._position = 0  # blocks read so far

    def __enter__(self) -> AvroContainer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._fo.close()

    def _iter_blocks(self) -> Iterator[tuple[int, io.BytesIO]]:
        """(records, decompressed bytes) per block; every sync marker and length is checked."""
        it = iter(self._blocks)
        while True:
            try:
                block = next(it)
            except StopIteration:
                return
            except _BLOCK_ERRORS as exc:
                raise AvroFileError(
                    f"block {self._position + 1} is unreadable (truncated or corrupt object?): {_reason(exc)}"
                ) from exc
            self._position += 1
            data = block.bytes_  # type: ignore[attr-defined]
            yield block.num_records, data if isinstance(data, io.BytesIO) else io.BytesIO(data)

    def count_rows(self) -> int:
        """Records in the file (reads every block: that also checks the file's framing)."""
        return sum(n for n, _ in self._iter_blocks())

    def iter_records(self) -> Iterator[dict]:
        """Records as Python values of the stored (non-logical) Avro types."""
        if self._raw_schema is None:
            try:
                self._raw_schema = fastavro.parse_schema(  # type: ignore[assignment]
                    _strip_logical_types(json.loads(self.header.schema_text))
                )
            except _DECODE_ERRORS as exc:
                raise AvroFileError(f"avro.schema is not a valid Avro schema: {_reason(exc)}") from exc
        raw = self._raw_schema
        read = fastavro.schemaless_reader
        row = 0
        for count, data in self._iter_blocks():
            end = len(data.getbuffer())
            for i in range(count):
                try:
                    rec = read(data, raw, None)  # type: ignore[arg-type]
                except _DECODE_ERRORS as exc:
                    raise AvroFileError(
                        f"record {row} (record {i} of block {self._position}) does not decode: {_reason(exc)}"
                    ) from exc
                yield rec  # type: ignore[misc]
                row += 1
            if data.tell() != end:
                raise AvroFileError(
                    f"block {self._position} holds {end - data.tell()} bytes more than its "
                    f"{count} records (corrupt object?)"
                )

    def iter_tables(self, schema: ConnectSchema, batch_size: int = 65_536) -> Iterator[pa.Table]:
        """The records in batches, as Arrow tables in the physical layout of ``schema`` (a struct)."""
        raw_schema = pa.schema(
            [pa.field(f.name, raw_arrow_type(f.schema), f.schema.optional) for f in schema.fields]
        )
        rows: list[dict] = []
        for rec in self.iter_records():
            rows.append(rec)
            if len(rows) >= batch_size:
                yield _to_table(rows, raw_schema, schema)
                rows = []
        if rows:
            yield _to_table(rows, raw_schema, schema)


class _Bounded:
    """Reads never ask for more than is left: a corrupt length (a huge varint) then ends in a short
    read, which fastavro reports, instead of an attempt to allocate that much memory."""

    def __init__(self, fo: IO[bytes]):
        self._fo = fo
        here = fo.tell()
        self._size = fo.seek(0, io.SEEK_END)
        fo.seek(here)

    def read(self, n: int | None = -1) -> bytes:
        left = max(0, self._size - self._fo.tell())
        return self._fo.read(left if n is None or n < 0 or n > left else n)

    def tell(self) -> int:
        return self._fo.tell()

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._fo.seek(offset, whence)


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _strip_logical_types(node: Any) -> Any:
    """The schema without ``logicalType`` (defaults and ``connect.*`` values are data: kept as they are)."""
    if isinstance(node, list):
        return [_strip_logical_types(n) for n in node]
    if isinstance(node, dict):
        return {
            k: (v if k in ("default", "connect.default", "connect.parameters") else _strip_logical_types(v))
            for k, v in node.items()
            if k != "logicalType"
        }
    return node


# --------------------------------------------------------------------------------------------
# stored Avro values <-> the physical Arrow layout (what parquet-avro files read back as)
# --------------------------------------------------------------------------------------------


def raw_arrow_type(schema: ConnectSchema) -> pa.DataType:
    """The Arrow type of the values as stored in Avro (logical types not applied): like
    :meth:`ConnectSchema.physical_arrow_type`, but decimals are bytes and dates, times and
    timestamps their integers."""
    if schema.type == "struct":
        return pa.struct(
            [pa.field(f.name, raw_arrow_type(f.schema), f.schema.optional) for f in schema.fields]
        )
    if schema.type == "array":
        return pa.list_(pa.field("element", raw_arrow_type(schema.items), schema.items.optional))  # type: ignore[arg-type, union-attr]
    if schema.type == "map":
        return pa.map_(
            raw_arrow_type(schema.keys),  # type: ignore[arg-type]
            pa.field("value", raw_arrow_type(schema.values), schema.values.optional),  # type: ignore[arg-type, union-attr]
        )
    physical = schema.physical_arrow_type()
    if pa.types.is_decimal(physical):
        return pa.binary()
    if pa.types.is_date32(physical) or pa.types.is_time32(physical):
        return pa.int32()
    if pa.types.is_timestamp(physical) or pa.types.is_time64(physical) or pa.types.is_date64(physical):
        return pa.int64()
    return physical


def map_leaves(
    arr: pa.Array | pa.ChunkedArray,
    schema: ConnectSchema,
    leaf: Callable[[pa.Array, ConnectSchema], pa.Array],
) -> pa.Array:
    """Rebuild a (nested) column with ``leaf`` applied to every primitive child; structs, lists
    and maps keep their shape and nulls (field nullability follows the schema)."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    mask = arr.is_null() if arr.null_count else None
    if schema.type == "struct":
        children = [map_leaves(c, f.schema, leaf) for c, f in zip(arr.flatten(), schema.fields)]
        fields = [pa.field(f.name, c.type, f.schema.optional) for f, c in zip(schema.fields, children)]
        return pa.StructArray.from_arrays(children, fields=fields, mask=mask)
    if schema.type in ("array", "map"):
        # the child values between the first and last offset (``flatten`` would also drop values
        # behind null entries and so no longer match the offsets)
        offsets = arr.offsets
        start, end = offsets[0].as_py(), offsets[len(offsets) - 1].as_py()
        if start:
            offsets = pc.subtract(offsets, offsets[0])
    if schema.type == "array":
        assert schema.items is not None  # an array schema has its element schema
        values = map_leaves(arr.values.slice(start, end - start), schema.items, leaf)
        return pa.ListArray.from_arrays(
            offsets, values, mask=mask, type=pa.list_(pa.field("element", values.type, schema.items.optional))
        )
    if schema.type == "map":
        keys = map_leaves(arr.keys.slice(start, end - start), schema.keys, leaf)  # type: ignore[arg-type]
        items = map_leaves(arr.items.slice(start, end - start), schema.values, leaf)  # type: ignore[arg-type]
        return pa.MapArray.from_arrays(
            offsets,
            keys,
            items,
            mask=mask,
            type=pa.map_(keys.type, pa.field("value", items.type, schema.values.optional)),  # type: ignore[union-attr]
        )
    return leaf(arr, schema)


def raw_to_physical(arr: pa.Array, schema: ConnectSchema) -> pa.Array:
    """One stored primitive column to its physical Arrow type (a ``map_leaves`` leaf)."""
    physical = schema.physical_arrow_type()
    if arr.type == physical:
        return arr
    if pa.types.is_decimal(physical):
        scale = physical.scale
        return pa.array(
            [
                None if b is None else Decimal(f"{int.from_bytes(b, 'big', signed=True)}E{-scale}")
                for b in arr.to_pylist()
            ],
            type=physical,
        )
    return arr.cast(physical)


def _to_table(rows: list[dict], raw_schema: pa.Schema, schema: ConnectSchema) -> pa.Table:
    try:
        raw = pa.Table.from_pylist(rows, schema=raw_schema)
        return pa.table(
            [map_leaves(raw.column(f.name), f.schema, raw_to_physical) for f in schema.fields],
            names=[f.name for f in schema.fields],
        )
    except (pa.ArrowException, ValueError, TypeError, OverflowError) as exc:
        raise AvroFileError(f"records do not fit their schema: {_reason(exc)}") from exc


# --------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------


def write_container(
    records: list[dict],
    schema_text: str,
    codec: str = "null",
    *,
    sync_marker: bytes,
    sync_interval: int = SYNC_INTERVAL,
) -> bytes:
    """An Avro container file of ``records`` (stored Avro values), with ``schema_text`` verbatim in
    the header as Avro's DataFileWriter writes ``Schema.toString()`` (fastavro would re-serialize
    it, so fastavro writes the blocks and the header is written here with the specification's
    header schema)."""
    if codec not in CODECS:
        raise ValueError(f"avro codec must be one of {', '.join(CODECS)}")
    if len(sync_marker) != 16:
        raise ValueError("the sync marker is 16 bytes")
    parsed = fastavro.parse_schema(json.loads(schema_text))
    head, full = io.BytesIO(), io.BytesIO()
    fastavro.writer(head, parsed, [], codec=codec, sync_marker=sync_marker)  # fastavro's header only
    fastavro.writer(full, parsed, records, codec=codec, sync_interval=sync_interval, sync_marker=sync_marker)
    body = full.getvalue()
    if not body.startswith(head.getvalue()):
        raise AssertionError("fastavro wrote different headers for the same schema")
    out = io.BytesIO()
    fastavro.schemaless_writer(
        out,
        _HEADER_SCHEMA,
        {
            "magic": MAGIC,
            "meta": {"avro.schema": schema_text.encode("utf-8"), "avro.codec": codec.encode("ascii")},
            "sync": sync_marker,
        },
    )
    out.write(body[len(head.getvalue()) :])
    return out.getvalue()
