"""Write lake objects exactly as the Kafka Connect S3 sink would (spec lake-format.md §1–§4, §6).

Used by the generator, by the fixtures that turn real Debezium captures into lake files, and by
``lakehouse capture``. One :class:`SinkWriter` plays the sink's ``TopicPartitionWriter`` for every
(topic, Kafka partition): records are buffered in Kafka order and committed as objects when
``flush.size`` records are buffered or the value schema changes (``schema.compatibility=NONE``);
one object per encoded partition, named after its first record's offset; offsets of records that
never reach a value file (tombstones, dropped truncates) stay as gaps.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import math
from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lakehouse.lake.avrofile import map_leaves, raw_arrow_type, write_container
from lakehouse.lake.connect import DECIMAL, ConnectSchema, avro_schema_json, struct
from lakehouse.lake.layout import (
    PARQUET_CODEC_EXTENSIONS,
    PYARROW_CODECS,
    Partitioner,
    SinkLayout,
    build_object_key,
)
from lakehouse.lake.store import ObjectStore

ENVELOPE_FIELDS = ("before", "after", "source", "transaction", "op", "ts_ms", "ts_us", "ts_ns")


@dataclass(frozen=True)
class UnwrapConfig:
    """Debezium's ExtractNewRecordState SMT as configured on the sink (spec §6)."""

    delete_handling: str = "rewrite"  # rewrite | drop
    add_fields: tuple[str, ...] = ("op", "lsn", "source.ts_ms", "txId", "snapshot")
    prefix: str = "__"


@dataclass(frozen=True)
class SinkConfig:
    format: str = "parquet"  # parquet | json | avro
    parquet_codec: str = "snappy"
    avro_codec: str = "null"  # AvroFormat's avro.codec: null | deflate | snappy | bzip2 | xz | zstandard
    json_gzip: bool = False
    json_embed_schema: bool = False  # upstream JsonConverter schemas on, sink converter schemas off
    flush_size: int = 1000
    partitioner: Partitioner = field(default_factory=Partitioner)
    layout: SinkLayout = field(default_factory=SinkLayout)
    unwrap: UnwrapConfig | None = None  # None = the Debezium envelope as is
    store_keys: bool = False  # store.kafka.keys=true with keys.format.class=ParquetFormat
    store_headers: bool = False  # store.kafka.headers=true with headers.format.class=ParquetFormat

    @property
    def extension(self) -> str:
        if self.format == "parquet":
            return PARQUET_CODEC_EXTENSIONS[self.parquet_codec]
        if self.format == "avro":
            return ".avro"  # the codec is in the container header, never in the name
        return ".json.gz" if self.json_gzip else ".json"


@dataclass
class _Pending:
    schema: ConnectSchema
    fingerprint: str
    key_schema: ConnectSchema | None
    avro_json: str | None  # the exact footer text, when the caller has AvroData's own output
    tables: list[pa.Table]
    keys: list[pa.Table]
    headers: list[list]
    offsets: list[np.ndarray]
    timestamps: list[np.ndarray]

    @property
    def count(self) -> int:
        return sum(len(t) for t in self.tables)


class SinkWriter:
    """Buffers records per (topic, Kafka partition) and commits objects like the S3 sink."""

    def __init__(self, store: ObjectStore, config: SinkConfig = SinkConfig()):
        self.store = store
        self.config = config
        self._pending: dict[tuple[str, int], _Pending] = {}
        self.objects_written: list[str] = []
        self.rows_written = 0

    def write(
        self,
        topic: str,
        kafka_partition: int,
        records: pa.Table,
        value_schema: ConnectSchema,
        offsets: np.ndarray,
        *,
        keys: pa.Table | None = None,
        key_schema: ConnectSchema | None = None,
        timestamps_ms: np.ndarray | None = None,
        headers: list[list[tuple[str, str | None]]] | None = None,
        avro_json: str | None = None,
    ) -> None:
        """Append envelope records (physical Arrow layout of ``value_schema``) in Kafka order.

        ``offsets`` are the Kafka offsets of these records; ``timestamps_ms`` feed time-based
        partitioners (the Record timestamp extractor); ``headers`` are each record's Kafka headers
        as (key, string value) pairs; ``avro_json`` is AvroData's schema text for the footer
        (default: :meth:`ConnectSchema.to_avro`, which matches it)."""
        if len(records) != len(offsets):
            raise ValueError("one offset per record")
        if timestamps_ms is None:
            timestamps_ms = np.zeros(len(records), dtype=np.int64)
        if self.config.unwrap is not None:
            records, value_schema, keep = unwrap_envelope(records, value_schema, self.config.unwrap)
            offsets, timestamps_ms = offsets[keep], timestamps_ms[keep]
            if keys is not None:
                keys = keys.filter(pa.array(keep))
            if headers is not None:
                headers = [h for h, k in zip(headers, keep) if k]
            avro_json = None
        if len(records) == 0:
            return
        if self.config.store_keys and (keys is None or key_schema is None):
            raise ValueError("store_keys needs the Kafka keys and their schema")
        if self.config.store_headers and headers is None:
            raise ValueError("store_headers needs the Kafka headers")
        fp = value_schema.fingerprint()
        slot = (topic, kafka_partition)
        pend = self._pending.get(slot)
        if pend is not None and pend.fingerprint != fp:  # schema change rotates (NONE compatibility)
            if pend.count:
                self._commit(topic, kafka_partition, pend, pend.count)
            pend = None
        if pend is None:
            pend = self._pending[slot] = _Pending(value_schema, fp, key_schema, avro_json, [], [], [], [], [])
        pend.tables.append(records)
        pend.keys.append(keys if keys is not None else pa.table({}))
        pend.headers.extend(headers if headers is not None else [])
        pend.offsets.append(np.asarray(offsets, dtype=np.int64))
        pend.timestamps.append(np.asarray(timestamps_ms, dtype=np.int64))
        while pend.count >= self.config.flush_size:
            self._commit(topic, kafka_partition, pend, self.config.flush_size)

    def has_pending(self) -> bool:
        return any(p.count for p in self._pending.values())

    def pending_rows(self) -> int:
        return sum(p.count for p in self._pending.values())

    def close(self) -> None:
        """Commit every open file (as ``rotate.schedule.interval.ms`` or a clean stop would)."""
        for (topic, part), pend in list(self._pending.items()):
            if pend.count:
                self._commit(topic, part, pend, pend.count)
        self._pending.clear()

    # -----------------------------------------------------------------------------------------

    def _commit(self, topic: str, kafka_partition: int, pend: _Pending, n: int) -> None:
        # zero-copy slicing of the chunked buffer; only the committed head is made contiguous,
        # so a caller handing over one large table does not pay a copy per commit
        table = pa.concat_tables(pend.tables)
        keys = pa.concat_tables(pend.keys) if self.config.store_keys else None
        offsets = np.concatenate(pend.offsets)
        stamps = np.concatenate(pend.timestamps)
        head, tail = table.slice(0, n).combine_chunks(), table.slice(n)
        rest = {
            "tables": [tail] if len(tail) else [],
            "keys": ([keys.slice(n)] if keys is not None else [pa.table({})]) if len(tail) else [],
            "headers": pend.headers[n:],
            "offsets": [offsets[n:]] if len(tail) else [],
            "timestamps": [stamps[n:]] if len(tail) else [],
        }
        keys = keys.slice(0, n) if keys is not None else None
        head_headers = pend.headers[:n]
        offsets, stamps = offsets[:n], stamps[:n]

        encoded = self._encoded_partitions(head, pend.schema, kafka_partition, stamps)
        # one object per encoded partition, each named after its own first offset
        order: dict[str, list[int]] = {}
        for i, enc in enumerate(encoded):
            order.setdefault(enc, []).append(i)
        for enc, rows in order.items():
            idx = pa.array(rows, type=pa.int64())
            part_table = head.take(idx) if len(rows) != len(head) else head
            start = int(offsets[rows[0]])
            key = build_object_key(
                self.config.layout, topic, enc, kafka_partition, start, self.config.extension
            )
            self.store.put_bytes(key, self._encode(part_table, pend.schema, pend.avro_json, key))
            self.objects_written.append(key)
            self.rows_written += len(part_table)
            if keys is not None:
                part_keys = keys.take(idx) if len(rows) != len(head) else keys
                kkey = build_object_key(
                    self.config.layout,
                    topic,
                    enc,
                    kafka_partition,
                    start,
                    PARQUET_CODEC_EXTENSIONS["snappy"],
                    view=".keys",
                )
                self.store.put_bytes(kkey, encode_keys_parquet(part_keys, pend.key_schema))  # type: ignore[arg-type]
            if self.config.store_headers:
                hkey = build_object_key(
                    self.config.layout,
                    topic,
                    enc,
                    kafka_partition,
                    start,
                    PARQUET_CODEC_EXTENSIONS["snappy"],
                    view=".headers",
                )
                self.store.put_bytes(hkey, encode_headers_parquet([head_headers[i] for i in rows]))
        # only now, with every object written, do the rows leave the buffer: a failed write keeps
        # them for the next attempt (which writes the same keys again)
        for name, value in rest.items():
            setattr(pend, name, value)

    def _encoded_partitions(
        self, table: pa.Table, schema: ConnectSchema, kafka_partition: int, stamps: np.ndarray
    ) -> list[str]:
        p = self.config.partitioner
        schema_name = schema.name
        if p.kind == "default":
            return [p.encode(kafka_partition, schema_name=schema_name)] * len(table)
        if p.kind == "field":
            cols = {f: table.column(f).to_pylist() for f in p.fields}
            return [
                p.encode(
                    kafka_partition, field_values={f: cols[f][i] for f in p.fields}, schema_name=schema_name
                )
                for i in range(len(table))
            ]
        # bucket boundaries fall on multiples of gcd(duration, 1 min) in UTC (zone offsets are
        # whole minutes), so records in the same such slice share a directory
        slice_ms = math.gcd(p.duration_ms, 60_000)
        cache: dict[int, str] = {}
        out = []
        for ts in stamps.tolist():
            bucket = ts // slice_ms
            if bucket not in cache:
                cache[bucket] = p.encode(kafka_partition, timestamp_ms=ts, schema_name=schema_name)
            out.append(cache[bucket])
        return out

    def _encode(
        self, table: pa.Table, schema: ConnectSchema, avro_json: str | None = None, key: str = ""
    ) -> bytes:
        if self.config.format == "parquet":
            return encode_parquet(table, schema, self.config.parquet_codec, avro_json)
        if self.config.format == "avro":
            # Avro picks a random sync marker per file; one derived from the key keeps lakes reproducible
            return encode_avro(
                table,
                schema,
                self.config.avro_codec,
                avro_json,
                sync_marker=hashlib.md5(key.encode("utf-8")).digest(),
            )
        data = encode_json_lines(table, schema, embed_schema=self.config.json_embed_schema)
        return gzip.compress(data, mtime=0) if self.config.json_gzip else data


def encode_parquet(
    table: pa.Table, schema: ConnectSchema, codec: str = "snappy", avro_json: str | None = None
) -> bytes:
    """Parquet as parquet-avro writes it: the Avro schema in the footer, one row group."""
    target = pa.schema(list(schema.physical_arrow_type()))
    table = table.select(target.names).cast(target)
    buf = io.BytesIO()
    # no ARROW:schema (parquet-avro does not write one); only the footer keys the sink writes
    with pq.ParquetWriter(
        buf,
        target,
        compression=PYARROW_CODECS.get(codec, codec),
        use_dictionary=True,
        data_page_size=64 * 1024,
        store_schema=False,
    ) as writer:
        writer.write_table(table, row_group_size=max(len(table), 1))
        writer.add_key_value_metadata(
            {"parquet.avro.schema": avro_json or avro_schema_json(schema), "writer.model.name": "avro"}
        )
    return buf.getvalue()


def encode_keys_parquet(keys: pa.Table, key_schema: ConnectSchema) -> bytes:
    """``store.kafka.keys`` with ParquetFormat: ``message RecordKey { required group key {...} }``
    (the sink envelopes the key in a Connect struct ``RecordKey``, spec §3.3)."""
    record_key = struct("RecordKey", [("key", key_schema)])
    key_struct = pa.StructArray.from_arrays(
        [keys.column(i).combine_chunks() for i in range(keys.num_columns)], names=keys.column_names
    )
    return encode_parquet(pa.table({"key": key_struct}), record_key, "snappy")


HEADER_SCHEMA = struct(
    "RecordHeaders",
    [
        (
            "headers",
            ConnectSchema(
                "array",
                items=struct(
                    None,
                    [("key", ConnectSchema("string")), ("value", ConnectSchema("string", optional=True))],
                ),
            ),
        )
    ],
)


def encode_headers_parquet(headers: list[list[tuple[str, str | None]]]) -> bytes:
    """``store.kafka.headers`` with ParquetFormat: each record's headers as (key, string value)
    pairs, values converted with Connect's ``Values.convertToString`` (spec §3.3)."""
    rows = [[{"key": k, "value": v} for k, v in h] for h in headers]
    arr = pa.array(rows, type=HEADER_SCHEMA.field("headers").schema.physical_arrow_type())  # type: ignore[union-attr]
    return encode_parquet(pa.table({"headers": arr}), HEADER_SCHEMA, "snappy")


# --------------------------------------------------------------------------------------------
# Avro (S3 sink AvroFormat: AvroData + Avro's DataFileWriter)
# --------------------------------------------------------------------------------------------


def encode_avro(
    table: pa.Table,
    schema: ConnectSchema,
    codec: str = "null",
    avro_json: str | None = None,
    *,
    sync_marker: bytes = b"\x00" * 16,
) -> bytes:
    """An Avro object container file as AvroFormat writes it: AvroData's schema text (the one
    ParquetFormat puts in the footer) in the header, ``avro.codec`` = ``codec``, one Avro record per
    row. ``table`` is in the physical Arrow layout of ``schema``."""
    target = pa.schema(list(schema.physical_arrow_type()))
    table = table.select(target.names).cast(target)
    raw = pa.table(
        [map_leaves(table.column(f.name), f.schema, _physical_to_avro) for f in schema.fields],
        names=[f.name for f in schema.fields],
    )
    records = raw.to_pylist(maps_as_pydicts="strict")
    return write_container(records, avro_json or avro_schema_json(schema), codec, sync_marker=sync_marker)


def _physical_to_avro(arr: pa.Array, schema: ConnectSchema) -> pa.Array:
    """One primitive column as the values Avro stores (a ``map_leaves`` leaf): decimals as the
    unscaled big-endian bytes Java's ``BigInteger.toByteArray()`` gives, temporal types as integers."""
    raw = raw_arrow_type(schema)
    if arr.type == raw:
        return arr
    if pa.types.is_decimal(arr.type):
        scale = arr.type.scale
        return pa.array([None if v is None else decimal_to_bytes(v, scale) for v in arr.to_pylist()], raw)
    return arr.cast(raw)


# --------------------------------------------------------------------------------------------
# JSON (S3 sink JsonFormat: JsonConverter with schemas.enable=false)
# --------------------------------------------------------------------------------------------


def encode_json_lines(table: pa.Table, schema: ConnectSchema, *, embed_schema: bool) -> bytes:
    schema_json = schema.to_connect_json() if embed_schema else None
    out = io.StringIO()
    for row in table.to_pylist():
        payload = _json_value(row, schema)
        doc = {"schema": schema_json, "payload": payload} if embed_schema else payload
        out.write(json.dumps(doc, ensure_ascii=False, separators=(",", ":")))
        out.write("\n")
    return out.getvalue().encode("utf-8")


def _json_value(value: Any, schema: ConnectSchema) -> Any:
    if value is None:
        return None
    if schema.type == "struct":
        return {f.name: _json_value(value.get(f.name), f.schema) for f in schema.fields}
    if schema.type == "array":
        return [_json_value(v, schema.items) for v in value]  # type: ignore[arg-type]
    if schema.type == "map":
        return {k: _json_value(v, schema.values) for k, v in value}  # type: ignore[arg-type]
    if schema.name == DECIMAL:
        return base64.b64encode(decimal_to_bytes(value, int(schema.params.get("scale", "0")))).decode()
    if schema.type == "bytes":
        return base64.b64encode(value).decode()
    if hasattr(value, "isoformat"):  # Connect Date/Time/Timestamp -> epoch numbers
        return _connect_temporal_number(value, schema)
    return value


def _connect_temporal_number(value: Any, schema: ConnectSchema) -> int:
    import datetime as dt

    if isinstance(value, dt.datetime):
        return int(value.timestamp() * 1000)
    if isinstance(value, dt.date):
        return (value - dt.date(1970, 1, 1)).days
    return (value.hour * 3600 + value.minute * 60 + value.second) * 1000 + value.microsecond // 1000


def decimal_to_bytes(value: Decimal | int, scale: int) -> bytes:
    """Java ``BigInteger.toByteArray()`` of the unscaled value: minimal two's complement."""
    with localcontext() as ctx:
        ctx.prec = 200  # exact for any PostgreSQL numeric; the default 28 digits would round
        unscaled = int(Decimal(value).scaleb(scale))
    length = max(1, (unscaled + (unscaled < 0)).bit_length() // 8 + 1)
    return unscaled.to_bytes(length, "big", signed=True)


# --------------------------------------------------------------------------------------------
# ExtractNewRecordState ("unwrap")
# --------------------------------------------------------------------------------------------

_TOP_LEVEL_ADD = {"op", "ts_ms", "ts_us", "ts_ns"}


def unwrap_envelope(
    records: pa.Table, schema: ConnectSchema, cfg: UnwrapConfig
) -> tuple[pa.Table, ConnectSchema, np.ndarray]:
    """Apply the unwrap SMT: returns (rows, row schema, mask of envelope rows that survive)."""
    value_schema = schema.field("after").schema  # type: ignore[union-attr]
    ops = records.column("op").to_numpy(zero_copy_only=False)
    is_delete = ops == "d"
    keep = ops != "t"  # truncates are always dropped by the SMT
    if cfg.delete_handling == "drop":
        keep &= ~is_delete
    kept = records.filter(pa.array(keep))
    is_delete_kept = pa.array(is_delete[keep])
    before = kept.column("before").combine_chunks()
    after = kept.column("after").combine_chunks()
    columns: dict[str, pa.Array] = {}
    fields: list[tuple[str, ConnectSchema]] = []
    b_children, a_children = before.flatten(), after.flatten()
    for i, f in enumerate(value_schema.fields):
        columns[f.name] = pc.if_else(is_delete_kept, b_children[i], a_children[i])
        fields.append((f.name, f.schema))
    if cfg.delete_handling == "rewrite":
        columns[cfg.prefix + "deleted"] = pc.if_else(is_delete_kept, "true", "false")
        fields.append((cfg.prefix + "deleted", ConnectSchema("string", optional=True)))
    source_schema = schema.field("source").schema  # type: ignore[union-attr]
    source = kept.column("source").combine_chunks()
    for spec in cfg.add_fields:
        name, _, rename = spec.partition(":")
        if "." in name:
            struct_name, _, leaf = name.partition(".")
            col_name = cfg.prefix + (rename or f"{struct_name}_{leaf}")
        else:
            struct_name, leaf = ("" if name in _TOP_LEVEL_ADD else "source"), name
            col_name = cfg.prefix + (rename or leaf)
        if struct_name == "":
            arr = kept.column(leaf).combine_chunks()
            fschema = schema.field(leaf).schema  # type: ignore[union-attr]
        elif struct_name == "source":
            fs = source_schema.field(leaf)
            if fs is None:
                continue  # the SMT skips fields that do not exist
            arr = source.field(leaf)
            fschema = fs.schema
        else:
            continue
        from dataclasses import replace

        columns[col_name] = arr
        fields.append((col_name, replace(fschema, optional=True)))
    row_schema = struct(value_schema.name, fields)
    out = pa.table(columns)
    return out, row_schema, keep
