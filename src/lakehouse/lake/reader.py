"""Read what the S3 sink wrote and yield normalized change events.

Every object becomes Arrow record batches in one schema (see :data:`EVENT_COLUMNS`): the internal
columns below, then the decoded row image (``after`` for c/u/r, ``before`` for d, nulls for t).

==================== ====================== ===============================================
column               type                   meaning
==================== ====================== ===============================================
__table              string                 ``<schema>.<table>`` (``source`` or the topic)
__topic              string                 Kafka topic
__op                 string                 c, u, d, r, t (unwrap rows without ``__op``: d
                                            when ``__deleted`` is "true", else u)
__kafka_partition    int32                  from the object name
__file_start_offset  int64                  from the object name
__row_index          int32                  row inside the object
__source_object      string                 object key relative to the lake root
__lsn                int64                  ``source.lsn`` (null when unknown)
__tx_id              int64                  ``source.txId``
__snapshot           string                 ``source.snapshot`` as written (true, first,
                                            last, ..., false, incremental)
__commit_ts          timestamp[us, UTC]     ``source.ts_us`` (commit time when streaming)
==================== ====================== ===============================================

Events are ordered per key by ``(__kafka_partition, __file_start_offset, __row_index)``.
Columns merge across all objects of a topic: added columns are null in older events, widened
types are promoted, dropped columns stay (null later); an incompatible change raises
:class:`SchemaConflictError` naming topic, column and object. Key columns, when known, are listed
in the schema metadata ``lakehouse.key_columns``.

Formats: Parquet (schema from the ``parquet.avro.schema`` footer), Avro object containers (schema
from the ``avro.schema`` header; values brought to the same physical Arrow layout as Parquet's, so
both decode alike) and JSON lines (embedded schemas, a schema hint, or typed from the values).

Memory: one object is read at a time, in batches of ``batch_size`` rows.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lakehouse.lake import jsonlines
from lakehouse.lake.avrofile import AvroContainer, AvroFileError
from lakehouse.lake.connect import ConnectSchema, SchemaParseError, parse_avro_schema
from lakehouse.lake.layout import (
    IgnoredObject,
    LakeObjectError,
    ObjectKey,
    SinkLayout,
    is_non_table_topic,
    parse_object_key,
)
from lakehouse.lake.names import source_name, source_names
from lakehouse.lake.retry import reraise_transient
from lakehouse.lake.semantic import DecodeError, decode_array, logical_field
from lakehouse.lake.store import ObjectStore, open_store

INTERNAL_FIELDS: tuple[pa.Field, ...] = (
    pa.field("__table", pa.string()),
    pa.field("__topic", pa.string()),
    pa.field("__op", pa.string()),
    pa.field("__kafka_partition", pa.int32()),
    pa.field("__file_start_offset", pa.int64()),
    pa.field("__row_index", pa.int32()),
    pa.field("__source_object", pa.string()),
    pa.field("__lsn", pa.int64()),
    pa.field("__tx_id", pa.int64()),
    pa.field("__snapshot", pa.string()),
    pa.field("__commit_ts", pa.timestamp("us", tz="UTC")),
)
INTERNAL_NAMES = tuple(f.name for f in INTERNAL_FIELDS)
VALID_OPS = {"c", "u", "d", "r", "t"}
POSITION = ("__kafka_partition", "__file_start_offset", "__row_index")

# unwrap add.fields columns we understand (spec §6.2), by what they mean
_UNWRAP_META = {
    "op": ("__op",),
    "deleted": ("__deleted",),
    "lsn": ("__lsn", "__source_lsn"),
    "tx_id": ("__txId", "__source_txId"),
    "snapshot": ("__snapshot", "__source_snapshot"),
    "ts_us": ("__source_ts_us",),
    "ts_ms": ("__source_ts_ms",),
    "table": ("__table", "__source_table"),
    "schema": ("__schema", "__source_schema"),
}


class SchemaConflictError(Exception):
    def __init__(self, topic: str, column: str, key: str, old: pa.DataType, new: pa.DataType):
        super().__init__(
            f"{key}: column {column!r} of topic {topic!r} changed type incompatibly from {old} to {new}"
        )
        self.topic, self.column, self.key, self.old, self.new = topic, column, key, old, new


@dataclass
class LakeObject:
    """A value file: its parsed key, size, and (after planning) its row schema."""

    ref: ObjectKey
    size: int
    shape: str = ""  # envelope | unwrap
    row_fields: list[pa.Field] = field(default_factory=list)
    rows: int | None = None
    modified: float | None = None  # epoch seconds the object landed

    @property
    def key(self) -> str:
        return self.ref.key


@dataclass
class LakeListing:
    """Everything below the topics dir, sorted into value files, ignored and broken objects."""

    objects: dict[str, list[LakeObject]]
    ignored: list[IgnoredObject]
    errors: list[LakeObjectError]
    excluded_topics: set[str]
    layout: SinkLayout = field(default_factory=SinkLayout)

    def errors_for(self, topic: str) -> list[LakeObjectError]:
        return [e for e in self.errors if _topic_of(e.key, self.layout) == topic]

    @property
    def topics(self) -> list[str]:
        return sorted(self.objects)


def _topic_of(key: str, layout: SinkLayout) -> str | None:
    rest = key.removeprefix(layout.topic_prefix())
    parts = rest.split(layout.directory_delim)
    return parts[0] if len(parts) > 1 else None


@dataclass
class TopicPlan:
    topic: str
    objects: list[LakeObject]
    schema: pa.Schema  # normalized output schema (internal + merged row columns)
    key_columns: tuple[str, ...] = ()


class LakeNotFoundError(ValueError):
    """The lake path holds nothing the sink wrote (a wrong path, or a sink that never ran)."""


class LakeReader:
    """Reads one lake (local folder or S3)."""

    def __init__(
        self,
        store: ObjectStore | str,
        layout: SinkLayout = SinkLayout(),
        exclude_topics: Iterable[str] = (),
        schema_hints: dict[str, ConnectSchema] | None = None,
    ):
        """``schema_hints``: topic -> value schema, for JSON lines written without schemas
        (JsonConverter ``schemas.enable=false``), where decimals are base64 and temporal types
        bare numbers or strings. Without a hint such files are typed from the JSON values."""
        self.store = open_store(store) if isinstance(store, str) else store
        self.layout = layout
        self.exclude_topics = set(exclude_topics)
        self.schema_hints = dict(schema_hints or {})
        self._footer_cache: dict[str, tuple[str, list[pa.Field], int]] = {}

    # -- listing -------------------------------------------------------------------------------

    def scan(self, topic: str | None = None) -> LakeListing:
        objects: dict[str, list[LakeObject]] = {}
        ignored: list[IgnoredObject] = []
        errors: list[LakeObjectError] = []
        excluded: set[str] = set()
        for info in self.store.list(self.layout.topic_prefix(topic)):
            try:
                parsed = parse_object_key(info.key, self.layout)
            except LakeObjectError as exc:
                errors.append(exc)
                continue
            if isinstance(parsed, IgnoredObject):
                ignored.append(parsed)
                continue
            if parsed.topic != topic and (
                is_non_table_topic(parsed.topic) or parsed.topic in self.exclude_topics
            ):
                excluded.add(parsed.topic)
                continue
            if info.size == 0:
                errors.append(
                    LakeObjectError(info.key, "zero-byte object (the sink never writes empty files)")
                )
                continue
            objects.setdefault(parsed.topic, []).append(LakeObject(parsed, info.size, modified=info.modified))
        for objs in objects.values():
            objs.sort(key=lambda o: o.ref)
        return LakeListing(objects, ignored, errors, excluded, self.layout)

    def require_objects(self, listing: LakeListing) -> None:
        """Raise :class:`LakeNotFoundError` when ``listing`` is empty because the lake holds
        nothing at all under its topics folder: a wrong path must not look like an idle pipeline."""
        if listing.objects or listing.ignored or listing.errors or listing.excluded_topics:
            return
        prefix = self.layout.topic_prefix(None)
        if next(iter(self.store.list(prefix)), None) is not None:
            return  # other topics have objects: this one is just not written yet
        root = self.store.root_uri
        local = Path(root) if "://" not in root else None
        if local is not None and not local.exists():
            why = "does not exist"
        elif local is not None and not local.is_dir():
            why = "is a file, not a folder"
        else:
            why = f"holds no objects under {prefix or 'its root'}"
        raise LakeNotFoundError(
            f"lake {root} {why}: check the path (the S3 sink writes "
            f"<lake>/{prefix}<topic>/...), or wait until the sink has written"
        )

    # -- primary keys from key companion files ---------------------------------------------

    def key_columns(self, topic: str, listing: LakeListing | None = None) -> tuple[str, ...] | None:
        """Primary-key columns as recorded by ``store.kafka.keys`` companions, or None if the topic
        has none. The value files never mark key columns (pitfall 6)."""
        listing = listing or self.scan(topic)
        companions = [i.key for i in listing.ignored if i.topic == topic and i.kind == "keys"]
        if not companions:
            return None
        # the newest key schema wins: highest start offset (parsed, not lexicographic)
        newest = max(companions, key=lambda k: int(k.rsplit(self.layout.file_delim, 1)[1].split(".")[0]))
        keys = read_key_columns(self.store, newest)
        # Debezium puts the real name of a column it had to rename for Avro only into the value
        # schema (lakehouse.lake.names); key schemas hold the adjusted name: map through the value
        # object the companion belongs to (else the newest one)
        objects = listing.objects.get(topic) or []
        if not objects:
            return keys
        _, kpart, start = newest.rsplit(self.layout.file_delim, 2)
        at = (int(kpart), int(start.split(".")[0]))
        obj = next((o for o in objects if (o.ref.kafka_partition, o.ref.start_offset) == at), objects[-1])
        try:
            names = source_names(self._row_schema(obj)) if obj.ref.format in ("parquet", "avro") else {}
        except LakeObjectError:
            names = {}  # a broken value object is reported where it is read
        return tuple(names.get(k, k) for k in keys)

    # -- planning ------------------------------------------------------------------------------

    def plan(
        self, topic: str, objects: list[LakeObject] | None = None, key_columns: Iterable[str] = ()
    ) -> TopicPlan:
        """Read every object's schema (Parquet footers, Avro headers, JSON lines) and merge them."""
        if objects is None:
            listing = self.scan(topic)
            errs = listing.errors_for(topic)
            if errs:
                raise errs[0]
            objects = listing.objects.get(topic, [])
        merged: dict[str, pa.Field] = {}
        origin: dict[str, str] = {}
        for obj in objects:
            self.describe(obj)
            for f in obj.row_fields:
                if f.name in INTERNAL_NAMES:
                    raise LakeObjectError(
                        obj.key, f"source column {f.name!r} collides with an internal column"
                    )
                if f.name not in merged:
                    merged[f.name], origin[f.name] = f, obj.key
                    continue
                widened = widen(merged[f.name].type, f.type)
                if widened is None:
                    raise SchemaConflictError(topic, f.name, obj.key, merged[f.name].type, f.type)
                # the newest file's metadata wins (e.g. enum allowed values grow)
                merged[f.name] = f.with_type(widened)
        keys = tuple(key_columns)
        meta = {"lakehouse.topic": topic}
        if keys:
            meta["lakehouse.key_columns"] = json.dumps(list(keys))
        schema = pa.schema(list(INTERNAL_FIELDS) + list(merged.values()), metadata=meta)
        return TopicPlan(topic, objects, schema, keys)

    def describe(self, obj: LakeObject) -> None:
        """Fill in the object's shape, row fields and row count (footer, header or lines; cached)."""
        cached = self._footer_cache.get(obj.key)
        if cached is None:
            if obj.ref.format == "parquet":
                shape, fields, rows = self._describe_parquet(obj)
            elif obj.ref.format == "avro":
                shape, fields, rows = self._describe_avro(obj)
            else:
                shape, fields, rows = self._describe_json(obj)
            cached = self._footer_cache[obj.key] = (shape, fields, rows)
        obj.shape, obj.row_fields, obj.rows = cached

    def _row_schema(self, obj: LakeObject) -> ConnectSchema:
        """The row image's Connect schema of a Parquet or Avro object."""
        if obj.ref.format == "avro":
            with self._open_avro(obj) as avro:
                return _shape_of(obj, self._avro_value_schema(obj, avro))[1]
        return _shape_of(obj, self._value_schema(obj, self._open_parquet(obj)))[1]

    def _open_parquet(self, obj: LakeObject) -> pq.ParquetFile:
        try:
            return pq.ParquetFile(self.store.open_input(obj.key))
        except (pa.ArrowInvalid, OSError) as exc:
            reraise_transient(exc)  # storage trouble is retried, not blamed on the object
            raise LakeObjectError(obj.key, f"not a readable Parquet file ({exc})") from exc

    def _value_schema(self, obj: LakeObject, pf: pq.ParquetFile) -> ConnectSchema:
        meta = pf.metadata.metadata or {}
        raw = meta.get(b"parquet.avro.schema")
        if raw is None:
            raise LakeObjectError(
                obj.key, "Parquet footer has no parquet.avro.schema: not written by the S3 sink"
            )
        try:
            return parse_avro_schema(raw.decode("utf-8"))
        except (SchemaParseError, ValueError) as exc:
            raise LakeObjectError(obj.key, f"unreadable parquet.avro.schema: {exc}") from exc

    def _describe_parquet(self, obj: LakeObject) -> tuple[str, list[pa.Field], int]:
        pf = self._open_parquet(obj)
        value = self._value_schema(obj, pf)
        shape, row_schema = _shape_of(obj, value)
        return shape, _row_fields(row_schema, shape), pf.metadata.num_rows

    def _open_avro(self, obj: LakeObject) -> AvroContainer:
        try:
            # buffered: fastavro reads headers and block lengths in small pieces
            fo = io.BufferedReader(self.store.open_input(obj.key), 1 << 20)
        except OSError as exc:
            reraise_transient(exc)  # storage trouble is retried, not blamed on the object
            raise LakeObjectError(obj.key, f"cannot open the Avro object: {exc}") from exc
        try:
            return AvroContainer(fo)
        except AvroFileError as exc:
            fo.close()
            raise LakeObjectError(obj.key, str(exc)) from exc
        except OSError as exc:
            fo.close()
            reraise_transient(exc)
            raise LakeObjectError(obj.key, f"not a readable Avro object container file ({exc})") from exc

    def _avro_value_schema(self, obj: LakeObject, avro: AvroContainer) -> ConnectSchema:
        try:
            return parse_avro_schema(avro.header.schema_text)
        except (SchemaParseError, ValueError, KeyError, TypeError) as exc:
            raise LakeObjectError(obj.key, f"unreadable avro.schema in the Avro header: {exc}") from exc

    def _describe_avro(self, obj: LakeObject) -> tuple[str, list[pa.Field], int]:
        with self._open_avro(obj) as avro:
            shape, row_schema = _shape_of(obj, self._avro_value_schema(obj, avro))
            try:
                rows = avro.count_rows()  # every block: a truncated object fails here, before any read
            except (AvroFileError, OSError) as exc:
                reraise_transient(exc)  # storage trouble is retried, not blamed on the object
                raise LakeObjectError(obj.key, f"Avro data unreadable: {exc}") from exc
        if rows == 0:
            raise LakeObjectError(obj.key, "Avro object holds no records (the sink never writes empty files)")
        return shape, _row_fields(row_schema, shape), rows

    def _describe_json(self, obj: LakeObject) -> tuple[str, list[pa.Field], int]:
        fields: dict[str, pa.Field] = {}
        shape = ""
        rows = 0
        for value_schema, table, _start in self._json_runs(obj):
            rows += len(table)
            if value_schema is not None:
                shape, row_schema = _shape_of(obj, value_schema)
                run_fields = _row_fields(row_schema, shape)
            else:
                shape = _schemaless_shape(obj, table)
                run_fields = _schemaless_row_fields(table, shape)
            for f in run_fields:
                if f.name in fields:
                    w = widen(fields[f.name].type, f.type)
                    if w is None:
                        raise SchemaConflictError(obj.ref.topic, f.name, obj.key, fields[f.name].type, f.type)
                    fields[f.name] = f.with_type(w)
                else:
                    fields[f.name] = f
        return shape, list(fields.values()), rows

    def _json_runs(self, obj: LakeObject) -> Iterator[tuple[ConnectSchema | None, pa.Table, int]]:
        try:
            data = self.store.get_bytes(obj.key)
            lines = jsonlines.read_lines(data, gzipped=obj.ref.compression == ".gz")
            if not lines:
                raise LakeObjectError(obj.key, "JSON object holds no lines")
            if jsonlines.has_embedded_schema(lines[0]):
                for schema, start, payloads in jsonlines.iter_embedded_runs(lines):
                    yield schema, jsonlines.payloads_to_arrow(payloads, schema), start
            elif obj.ref.topic in self.schema_hints:
                hint = self.schema_hints[obj.ref.topic]
                payloads = [json.loads(ln) for ln in lines]
                unknown = sorted({k for p in payloads for k in p} - set(hint.field_names()))
                if unknown:
                    raise LakeObjectError(
                        obj.key,
                        f"fields {unknown} are not in the schema hint for {obj.ref.topic!r}; update the hint",
                    )
                yield hint, jsonlines.payloads_to_arrow(payloads, hint), 0
            else:
                yield None, jsonlines.read_schemaless(lines), 0
        except LakeObjectError:
            raise
        except (ValueError, OSError, pa.ArrowException, EOFError) as exc:
            reraise_transient(exc)  # storage trouble is retried, not blamed on the object
            raise LakeObjectError(obj.key, f"not valid JSON Lines: {exc}") from exc

    # -- reading -------------------------------------------------------------------------------

    def iter_changes(self, plan: TopicPlan, batch_size: int = 65_536) -> Iterator[pa.RecordBatch]:
        """Yield normalized change events of every planned object, in listing order."""
        for obj in plan.objects:
            yield from self.iter_object(obj, plan.schema, batch_size)

    def iter_object(
        self, obj: LakeObject, schema: pa.Schema, batch_size: int = 65_536
    ) -> Iterator[pa.RecordBatch]:
        self.describe(obj)
        if obj.ref.format == "parquet":
            pf = self._open_parquet(obj)
            value = self._value_schema(obj, pf)
            shape, row_schema = _shape_of(obj, value)
            row_index = 0
            try:
                batches = pf.iter_batches(batch_size=batch_size)
                for batch in batches:
                    yield self._normalize(
                        obj, shape, row_schema, pa.Table.from_batches([batch]), row_index, schema
                    )
                    row_index += batch.num_rows
            except (pa.ArrowInvalid, OSError) as exc:
                reraise_transient(exc)  # storage trouble is retried, not blamed on the object
                raise LakeObjectError(obj.key, f"Parquet data unreadable at row {row_index}: {exc}") from exc
        elif obj.ref.format == "avro":
            with self._open_avro(obj) as avro:
                value = self._avro_value_schema(obj, avro)
                shape, row_schema = _shape_of(obj, value)
                row_index = 0
                try:
                    for table in avro.iter_tables(value, batch_size):
                        yield self._normalize(obj, shape, row_schema, table, row_index, schema)
                        row_index += table.num_rows
                except (AvroFileError, OSError) as exc:
                    reraise_transient(exc)  # storage trouble is retried, not blamed on the object
                    raise LakeObjectError(
                        obj.key, f"Avro data unreadable (batch from row {row_index}): {exc}"
                    ) from exc
        else:
            for value_schema, table, start in self._json_runs(obj):
                if value_schema is None:
                    shape = _schemaless_shape(obj, table)
                    yield self._normalize_schemaless(obj, shape, table, start, schema)
                else:
                    shape, row_schema = _shape_of(obj, value_schema)
                    yield self._normalize(obj, shape, row_schema, table, start, schema)

    def read_values(self, obj: LakeObject) -> pa.Table:
        """An object's value records as the sink wrote them (any topic, e.g. the transaction
        topic's BEGIN/END events), in the physical layout of its Connect schema."""
        if obj.ref.format == "parquet":
            pf = self._open_parquet(obj)
            try:
                return pf.read()
            except (pa.ArrowInvalid, OSError) as exc:
                reraise_transient(exc)
                raise LakeObjectError(obj.key, f"Parquet data unreadable: {exc}") from exc
        if obj.ref.format == "avro":
            with self._open_avro(obj) as avro:
                value = self._avro_value_schema(obj, avro)
                try:
                    parts = list(avro.iter_tables(value))
                except (AvroFileError, OSError) as exc:
                    reraise_transient(exc)
                    raise LakeObjectError(obj.key, f"Avro data unreadable: {exc}") from exc
            return pa.concat_tables(parts) if parts else pa.table({})
        parts = [table for _schema, table, _start in self._json_runs(obj)]
        return pa.concat_tables(parts, promote_options="permissive") if parts else pa.table({})

    def read_changes(self, topic: str, key_columns: Iterable[str] = ()) -> pa.Table:
        plan = self.plan(topic, key_columns=key_columns)
        return pa.Table.from_batches(list(self.iter_changes(plan)), schema=plan.schema)

    # -- normalization -------------------------------------------------------------------------

    def _normalize(
        self,
        obj: LakeObject,
        shape: str,
        row_schema: ConnectSchema,
        table: pa.Table,
        row_index: int,
        out_schema: pa.Schema,
    ) -> pa.RecordBatch:
        n = len(table)
        cols: dict[str, pa.Array] = {}
        wanted = set(out_schema.names)  # a narrow read (keys, commit times) decodes only its columns
        if shape == "envelope":
            op = table.column("op").combine_chunks()
            _check_ops(obj, op, row_index)
            is_delete = pc.equal(op, "d")
            before = table.column("before").combine_chunks()
            after = table.column("after").combine_chunks()
            b_children, a_children = before.flatten(), after.flatten()
            for i, f in enumerate(row_schema.fields):
                name = source_name(f)  # the column's real name where Debezium adjusted it
                if name in wanted:
                    raw = pc.if_else(is_delete, b_children[i], a_children[i])
                    cols[name] = _decode(obj, name, raw, f.schema, row_index)
            cols.update(_source_internal_columns(table.column("source").combine_chunks()))
        else:
            meta = _unwrap_meta_columns(table)
            op = _unwrap_op(obj, meta, n, row_index)
            for f in row_schema.fields:
                name = source_name(f)
                if name in wanted:
                    cols[name] = _decode(obj, name, table.column(f.name), f.schema, row_index)
            cols.update(_unwrap_internal_columns(meta))
        cols["__op"] = op
        return self._assemble(obj, cols, n, row_index, out_schema)

    def _normalize_schemaless(
        self, obj: LakeObject, shape: str, table: pa.Table, row_index: int, out_schema: pa.Schema
    ) -> pa.RecordBatch:
        n = len(table)
        cols: dict[str, pa.Array] = {}
        if shape == "envelope":
            op = table.column("op").combine_chunks()
            _check_ops(obj, op, row_index)
            is_delete = pc.equal(op, "d")
            image = _merge_struct_images(table, is_delete)
            cols.update(image)
            if "source" in table.column_names:
                cols.update(_source_internal_columns(table.column("source").combine_chunks()))
        else:
            meta = _unwrap_meta_columns(table)
            op = _unwrap_op(obj, meta, n, row_index)
            for name in table.column_names:
                if not name.startswith("__"):
                    cols[name] = table.column(name).combine_chunks()
            cols.update(_unwrap_internal_columns(meta))
        cols["__op"] = op
        return self._assemble(obj, cols, n, row_index, out_schema)

    def _assemble(
        self, obj: LakeObject, cols: dict[str, pa.Array | None], n: int, row_index: int, out_schema: pa.Schema
    ) -> pa.RecordBatch:
        topic = obj.ref.topic
        cols.setdefault("__table", None)
        if cols["__table"] is None:
            cols["__table"] = _repeat(_table_from_topic(topic), n, pa.string())
        cols["__topic"] = _repeat(topic, n, pa.string())
        cols["__kafka_partition"] = _repeat(obj.ref.kafka_partition, n, pa.int32())
        cols["__file_start_offset"] = _repeat(obj.ref.start_offset, n, pa.int64())
        cols["__row_index"] = pa.array(np.arange(row_index, row_index + n, dtype=np.int32))
        cols["__source_object"] = _repeat(obj.key, n, pa.string())
        arrays = []
        for f in out_schema:
            arr = cols.get(f.name)
            if arr is None:
                arrays.append(pa.nulls(n, f.type))
                continue
            if isinstance(arr, pa.ChunkedArray):
                arr = arr.combine_chunks()
            if arr.type != f.type:
                try:
                    arr = arr.cast(f.type)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                    raise LakeObjectError(
                        obj.key, f"column {f.name!r} cannot be read as {f.type}: {exc}"
                    ) from exc
            arrays.append(arr)
        return pa.RecordBatch.from_arrays(arrays, schema=out_schema)


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def read_key_columns(store: ObjectStore, key: str) -> tuple[str, ...]:
    """Key field names of one ``.keys`` companion (Parquet ``RecordKey.key``, Avro container, JSON)."""
    try:
        if key.endswith(".parquet"):
            schema = pq.ParquetFile(store.open_input(key)).schema_arrow
            inner = schema.field("key").type if "key" in schema.names else None
            if inner is None or not pa.types.is_struct(inner):
                raise LakeObjectError(key, "keys file has no 'key' struct (RecordKey)")
            return tuple(f.name for f in inner)
        if key.endswith(".avro"):
            avro = avro_container_schema(store.get_bytes(key))
            if not isinstance(avro, dict) or avro.get("type") != "record":
                raise LakeObjectError(key, "Avro keys file does not hold a record key")
            return tuple(f["name"] for f in avro["fields"])
        first = jsonlines.read_lines(store.get_bytes(key), gzipped=key.endswith(".gz"))[0]
        doc = json.loads(first)
        if isinstance(doc, dict) and set(doc) == {"schema", "payload"}:
            doc = doc["payload"]
        if not isinstance(doc, dict):
            raise LakeObjectError(key, "JSON keys file does not hold key objects")
        return tuple(doc)
    except (pa.ArrowInvalid, OSError, ValueError, IndexError, KeyError) as exc:
        reraise_transient(exc)  # storage trouble is retried, not blamed on the object
        raise LakeObjectError(key, f"unreadable keys file: {exc}") from exc


def avro_container_schema(data: bytes) -> dict:
    """The writer schema from an Avro object container header (``avro.schema`` metadata).
    Raises ValueError (:class:`AvroFileError`) when ``data`` is not an Avro container file."""
    with AvroContainer(io.BytesIO(data)) as avro:
        return json.loads(avro.header.schema_text)


def _shape_of(obj: LakeObject, value: ConnectSchema) -> tuple[str, ConnectSchema]:
    """Envelope (§4.5) or unwrap (§6); returns the shape and the row-image schema."""
    if value.type != "struct":
        raise LakeObjectError(
            obj.key, f"value schema is {value.type}, not a struct: not a Debezium topic file"
        )
    names = set(value.field_names())
    if {"before", "after", "source", "op"} <= names:
        after = value.field("after").schema  # type: ignore[union-attr]
        if after.type != "struct":
            raise LakeObjectError(obj.key, "envelope 'after' is not a struct")
        return "envelope", after
    if (value.name or "").endswith(".Envelope"):
        raise LakeObjectError(obj.key, "envelope schema without before/after/source/op")
    if not names - {n for n in names if n.startswith("__")}:
        raise LakeObjectError(obj.key, "no row columns")
    if not ({"__op", "__deleted"} & names) and not (value.name or "").endswith(".Value"):
        raise LakeObjectError(
            obj.key,
            "neither a Debezium envelope (before/after/source/op) nor an unwrapped row "
            "(<topic>.Value with __op or __deleted): not a Debezium topic file",
        )
    row = [f for f in value.fields if not f.name.startswith("__")]
    return "unwrap", ConnectSchema("struct", name=value.name, fields=tuple(row))


def _row_fields(row_schema: ConnectSchema, shape: str) -> list[pa.Field]:
    return [logical_field(source_name(f), f.schema) for f in row_schema.fields]


def _schemaless_shape(obj: LakeObject, table: pa.Table) -> str:
    names = set(table.column_names)
    if {"op", "after"} <= names or {"op", "before"} <= names:
        return "envelope"
    if names:
        return "unwrap"
    raise LakeObjectError(obj.key, "JSON lines are neither Debezium envelopes nor unwrapped rows")


def _schemaless_row_fields(table: pa.Table, shape: str) -> list[pa.Field]:
    if shape == "unwrap":
        return [pa.field(n, table.schema.field(n).type) for n in table.column_names if not n.startswith("__")]
    fields: dict[str, pa.Field] = {}
    for side in ("after", "before"):
        if side in table.column_names and pa.types.is_struct(table.schema.field(side).type):
            for child in table.schema.field(side).type:
                if child.name not in fields:
                    fields[child.name] = pa.field(child.name, child.type)
                elif (w := widen(fields[child.name].type, child.type)) is not None:
                    fields[child.name] = fields[child.name].with_type(w)
    return list(fields.values())


def _merge_struct_images(table: pa.Table, is_delete: pa.Array) -> dict[str, pa.Array]:
    out: dict[str, pa.Array] = {}
    sides = {}
    for side in ("before", "after"):
        if side in table.column_names and pa.types.is_struct(table.schema.field(side).type):
            arr = table.column(side).combine_chunks()
            sides[side] = {arr.type.field(i).name: c for i, c in enumerate(arr.flatten())}
    names: list[str] = []
    for side in ("after", "before"):
        for nm in sides.get(side, {}):
            if nm not in names:
                names.append(nm)
    n = len(table)
    for nm in names:
        a = sides.get("after", {}).get(nm)
        b = sides.get("before", {}).get(nm)
        if a is None:
            a = pa.nulls(n, b.type)  # type: ignore[union-attr]
        if b is None:
            b = pa.nulls(n, a.type)
        if a.type != b.type:
            t = widen(a.type, b.type) or pa.string()
            a, b = a.cast(t), b.cast(t)
        out[nm] = pc.if_else(is_delete, b, a)
    return out


def _unwrap_meta_columns(table: pa.Table) -> dict[str, pa.Array]:
    out: dict[str, pa.Array] = {}
    names = set(table.column_names)
    for meaning, candidates in _UNWRAP_META.items():
        for c in candidates:
            if c in names:
                out[meaning] = table.column(c).combine_chunks()
                break
    return out


def _source_internal_columns(source: pa.StructArray) -> dict[str, pa.Array | None]:
    """Internal columns from the envelope's ``source`` block (spec §5.3)."""
    src = {source.type.field(i).name: source.field(i) for i in range(source.type.num_fields)}
    cols: dict[str, pa.Array | None] = {
        "__lsn": src.get("lsn"),
        "__tx_id": src.get("txId"),
        "__snapshot": src.get("snapshot"),
        "__commit_ts": _commit_ts(src),
    }
    if "schema" in src and "table" in src:
        cols["__table"] = pc.binary_join_element_wise(src["schema"], src["table"], ".")
    return cols


def _unwrap_op(obj: LakeObject, meta: dict[str, pa.Array], n: int, row_index: int) -> pa.Array:
    """``__op`` if the SMT added it; else d/u from ``__deleted`` (a string); else u (spec §6.3)."""
    if "op" in meta:
        _check_ops(obj, meta["op"], row_index)
        return meta["op"]
    if "deleted" in meta:
        return pc.if_else(pc.equal(meta["deleted"], "true"), "d", "u")
    return _repeat("u", n, pa.string())


def _unwrap_internal_columns(meta: dict[str, pa.Array]) -> dict[str, pa.Array | None]:
    cols: dict[str, pa.Array | None] = {
        "__lsn": meta.get("lsn"),
        "__tx_id": meta.get("tx_id"),
        "__snapshot": meta.get("snapshot"),
    }
    if "ts_us" in meta:
        cols["__commit_ts"] = meta["ts_us"].cast(pa.int64()).cast(pa.timestamp("us", tz="UTC"))
    elif "ts_ms" in meta:
        cols["__commit_ts"] = pc.multiply(meta["ts_ms"].cast(pa.int64()), 1000).cast(
            pa.timestamp("us", tz="UTC")
        )
    if "schema" in meta and "table" in meta:
        cols["__table"] = pc.binary_join_element_wise(meta["schema"], meta["table"], ".")
    return cols


def _commit_ts(src: dict[str, pa.Array]) -> pa.Array | None:
    ts_us = src.get("ts_us")
    if ts_us is not None and ts_us.null_count < len(ts_us):
        ts = ts_us.cast(pa.int64())
        ts_ms = src.get("ts_ms")
        if ts_ms is not None and ts_us.null_count:
            ts = pc.coalesce(ts, pc.multiply(ts_ms.cast(pa.int64()), 1000))
        return ts.cast(pa.timestamp("us", tz="UTC"))
    ts_ms = src.get("ts_ms")
    if ts_ms is None:
        return None
    return pc.multiply(ts_ms.cast(pa.int64()), 1000).cast(pa.timestamp("us", tz="UTC"))


def _check_ops(obj: LakeObject, op: pa.Array, row_index: int) -> None:
    bad = pc.invert(pc.fill_null(pc.is_in(op, value_set=pa.array(sorted(VALID_OPS))), False))
    if pc.any(bad).as_py():
        idx = pc.index(bad, True).as_py()
        raise LakeObjectError(
            obj.key,
            f"unknown op {op[idx].as_py()!r} at row {row_index + idx} (expected one of c, u, d, r, t)",
        )


def _decode(obj: LakeObject, column: str, arr, schema: ConnectSchema, row_index: int) -> pa.Array:
    try:
        return decode_array(arr, schema)
    except (DecodeError, pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as exc:
        raise LakeObjectError(
            obj.key,
            f"column {column!r} (rows from {row_index}) does not decode as "
            f"{schema.name or schema.type}: {exc}",
        ) from exc


def _repeat(value, n: int, type_: pa.DataType) -> pa.Array:
    return pa.array([value], type_).take(pa.array(np.zeros(n, dtype=np.int32)))


def _table_from_topic(topic: str) -> str:
    parts = topic.split(".")
    return ".".join(parts[-2:]) if len(parts) >= 2 else topic


# --------------------------------------------------------------------------------------------
# schema widening
# --------------------------------------------------------------------------------------------

_INT_ORDER = [pa.int8(), pa.int16(), pa.int32(), pa.int64()]


def widen(old: pa.DataType, new: pa.DataType) -> pa.DataType | None:
    """The type that holds both, if the change is a widening; None if incompatible."""
    if old == new:
        return old
    if pa.types.is_null(old):
        return new
    if pa.types.is_null(new):
        return old
    if pa.types.is_integer(old) and pa.types.is_integer(new) and old in _INT_ORDER and new in _INT_ORDER:
        return max(old, new, key=_INT_ORDER.index)
    if pa.types.is_floating(old) and pa.types.is_floating(new):
        return pa.float64()
    if pa.types.is_decimal(old) and pa.types.is_decimal(new):
        scale = max(old.scale, new.scale)
        integer_digits = max(old.precision - old.scale, new.precision - new.scale)
        precision = integer_digits + scale
        if precision <= 38:
            return pa.decimal128(precision, scale)
        return pa.decimal256(min(precision, 76), scale) if precision <= 76 else None
    if pa.types.is_timestamp(old) and pa.types.is_timestamp(new) and old.tz == new.tz:
        units = ["s", "ms", "us", "ns"]
        return pa.timestamp(max(old.unit, new.unit, key=units.index), tz=old.tz)
    if pa.types.is_time(old) and pa.types.is_time(new):
        units = ["s", "ms", "us", "ns"]
        unit = max(old.unit, new.unit, key=units.index)
        return pa.time64(unit) if unit in ("us", "ns") else pa.time32(unit)
    if (
        pa.types.is_string(old)
        and pa.types.is_large_string(new)
        or pa.types.is_large_string(old)
        and pa.types.is_string(new)
    ):
        return pa.large_string()
    if pa.types.is_list(old) and pa.types.is_list(new):
        inner = widen(old.value_type, new.value_type)
        return None if inner is None else pa.list_(pa.field("element", inner))
    if pa.types.is_struct(old) and pa.types.is_struct(new):
        fields = {f.name: f for f in old}
        for f in new:
            if f.name in fields:
                inner = widen(fields[f.name].type, f.type)
                if inner is None:
                    return None
                fields[f.name] = fields[f.name].with_type(inner)
            else:
                fields[f.name] = f
        return pa.struct(list(fields.values()))
    return None
