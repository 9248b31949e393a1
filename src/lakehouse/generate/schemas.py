"""Kafka Connect schemas of the six Eco2 tables, as Debezium 3.6.3 (PostgreSQL, defaults) builds them.

Mapping (spec lake-format.md §4.4, checked against the real captures in
``shared/samples/debezium/connect``):

* ``bigserial`` → INT64 with ``connect.default`` 0 (the exported ``nextval()`` default);
  ``bigint`` → INT64; ``integer`` → INT32; ``double precision`` → FLOAT64; ``boolean``; ``text`` → STRING
* ``uuid`` → STRING ``io.debezium.data.Uuid`` (version 1)
* ``timestamptz`` → STRING ``io.debezium.time.ZonedTimestamp`` (version 1); ``NOT NULL DEFAULT now()``
  columns carry the exported default ``"1970-01-01T00:00:00.000000Z"``
* ``numeric(5,4)`` → ``org.apache.kafka.connect.data.Decimal`` bytes, parameters scale=4,
  connect.decimal.precision=5
* nullable columns are optional, ``NOT NULL`` ones required; key columns are required.

The envelope is ``<topic>.Envelope`` (connect.version 2) with the PostgreSQL ``Source`` block and the
``event.block`` transaction block exactly as AvroData renders them in the samples.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from lakehouse.lake.connect import DECIMAL, ConnectSchema, struct

DEBEZIUM_VERSION = "3.6.3.Final"
ZONED_TIMESTAMP = "io.debezium.time.ZonedTimestamp"
UUID = "io.debezium.data.Uuid"
ENUM = "io.debezium.data.Enum"
EPOCH_DEFAULT = "1970-01-01T00:00:00.000000Z"  # now() exported as a schema default (samples)
EPOCH_FALLBACK = "1970-01-01T00:00:00Z"  # JdbcValueConverters fallback for NOT NULL timestamptz
SNAPSHOT_ALLOWED = "true,first,first_in_data_collection,last_in_data_collection,last,false,incremental"


def _p(type_: str, optional: bool, **kw) -> ConnectSchema:
    return ConnectSchema(type_, optional=optional, **kw)


def bigserial() -> ConnectSchema:
    return ConnectSchema("int64", default=0)


def int64(optional: bool = False) -> ConnectSchema:
    return _p("int64", optional)


def int32(optional: bool = False) -> ConnectSchema:
    return _p("int32", optional)


def float64(optional: bool = False) -> ConnectSchema:
    return _p("float64", optional)


def boolean(optional: bool = False) -> ConnectSchema:
    return _p("boolean", optional)


def text(optional: bool = False) -> ConnectSchema:
    return _p("string", optional)


def uuid(optional: bool = False) -> ConnectSchema:
    return ConnectSchema("string", name=UUID, version=1, optional=optional)


def timestamptz(optional: bool = False, default_now: bool = False) -> ConnectSchema:
    return ConnectSchema(
        "string",
        name=ZONED_TIMESTAMP,
        version=1,
        optional=optional,
        default=EPOCH_DEFAULT if default_now else None,
    )


def numeric(precision: int, scale: int, optional: bool = True) -> ConnectSchema:
    return ConnectSchema(
        "bytes",
        name=DECIMAL,
        version=1,
        optional=optional,
        parameters=(("scale", str(scale)), ("connect.decimal.precision", str(precision))),
    )


def source_schema() -> ConnectSchema:
    """``io.debezium.connector.postgresql.Source`` (field list and types of the 3.6.3 samples)."""
    snapshot = ConnectSchema(
        "string",
        name=ENUM,
        version=1,
        optional=True,
        default="false",
        parameters=(("allowed", SNAPSHOT_ALLOWED),),
    )
    return struct(
        "io.debezium.connector.postgresql.Source",
        [
            ("version", text()),
            ("connector", text()),
            ("name", text()),
            ("ts_ms", int64()),
            ("snapshot", snapshot),
            ("db", text()),
            ("sequence", text(True)),
            ("ts_us", int64(True)),
            ("ts_ns", int64(True)),
            ("schema", text()),
            ("table", text()),
            ("txId", int64(True)),
            ("lsn", int64(True)),
            ("xmin", int64(True)),
            ("origin", text(True)),
            ("origin_lsn", int64(True)),
        ],
        version=1,
    )


def transaction_schema() -> ConnectSchema:
    return struct(
        "event.block",
        [("id", text()), ("total_order", int64()), ("data_collection_order", int64())],
        optional=True,
        version=1,
    )


def transaction_value_schema() -> ConnectSchema:
    """BEGIN/END events of the transaction topic, as Debezium 3.6.3 + AvroData write them."""
    collection = struct(
        "event.collection", [("data_collection", text()), ("event_count", int64())], optional=True, version=1
    )
    return struct(
        "io.debezium.connector.common.TransactionMetadataValue",
        [
            ("status", text()),
            ("id", text()),
            ("event_count", int64(True)),
            ("data_collections", ConnectSchema("array", optional=True, items=collection)),
            ("ts_ms", int64()),
        ],
        version=1,
    )


def envelope_schema(topic: str, value: ConnectSchema) -> ConnectSchema:
    opt_value = replace(value, optional=True)
    return struct(
        f"{topic}.Envelope",
        [
            ("before", opt_value),
            ("after", opt_value),
            ("source", source_schema()),
            ("transaction", transaction_schema()),
            ("op", text()),
            ("ts_ms", int64(True)),
            ("ts_us", int64(True)),
            ("ts_ns", int64(True)),
        ],
        version=2,
    )


@dataclass(frozen=True)
class TableDef:
    """One source table: its columns (PostgreSQL order), key and Debezium schemas."""

    schema: str  # PostgreSQL schema (auth / scan)
    table: str
    columns: tuple[tuple[str, ConnectSchema], ...]
    key: tuple[str, ...] = ("id",)
    server: str = "scan"  # which PostgreSQL database / Debezium connector captures it

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.table}"

    def topic(self, prefix: str) -> str:
        return f"{prefix}.{self.schema}.{self.table}"

    def value_schema(self, prefix: str) -> ConnectSchema:
        return struct(f"{self.topic(prefix)}.Value", list(self.columns))

    def key_schema(self, prefix: str) -> ConnectSchema:
        cols = dict(self.columns)
        return struct(f"{self.topic(prefix)}.Key", [(k, cols[k]) for k in self.key])

    def envelope(self, prefix: str) -> ConnectSchema:
        return envelope_schema(self.topic(prefix), self.value_schema(prefix))

    def with_columns(self, columns: list[tuple[str, ConnectSchema]]) -> TableDef:
        return replace(self, columns=tuple(columns))


USERS = TableDef(
    "auth",
    "users",
    (
        ("id", bigserial()),
        ("username", text()),
        ("email", text()),
        ("password_hash", text()),
        ("provider", text(True)),
        ("created_at", timestamptz(default_now=True)),
        ("updated_at", timestamptz(True)),
    ),
    server="auth",
)

SCANS = TableDef(
    "scan",
    "scans",
    (
        ("id", uuid()),
        ("user_id", int64()),
        ("image_path_raw", text()),
        ("image_path_processed", text(True)),
        ("status", text()),
        ("created_at", timestamptz()),
        ("completed_at", timestamptz(True)),
    ),
)

CLASSIFICATION_RESULTS = TableDef(
    "scan",
    "classification_results",
    (
        ("id", bigserial()),
        ("scan_id", uuid()),
        ("category", text()),
        ("item", text(True)),
        ("confidence", numeric(5, 4)),
        ("rationale", text(True)),
        ("model", text()),
        ("prompt_version", text(True)),
        ("created_at", timestamptz()),
    ),
)

RAG_RETRIEVALS = TableDef(
    "scan",
    "rag_retrievals",
    (
        ("id", bigserial()),
        ("scan_id", uuid()),
        ("rank", int32()),
        ("document_id", text(True)),
        ("chunk_id", text(True)),
        ("chunk_text", text(True)),
        ("relevance_score", float64(True)),
        ("created_at", timestamptz()),
    ),
)

LLM_CALL_LOG = TableDef(
    "scan",
    "llm_call_log",
    (
        ("id", bigserial()),
        ("scan_id", uuid(True)),
        ("stage", text()),
        ("model", text()),
        ("latency_ms", int32()),
        ("prompt_tokens", int32(True)),
        ("completion_tokens", int32(True)),
        ("status", text()),
        ("created_at", timestamptz()),
    ),
)

FEEDBACK = TableDef(
    "scan",
    "feedback",
    (
        ("id", bigserial()),
        ("scan_id", uuid()),
        ("user_id", int64()),
        ("thumbs_up", boolean()),
        ("corrected_category", text(True)),
        ("corrected_item", text(True)),
        ("comment", text(True)),
        ("created_at", timestamptz()),
        ("updated_at", timestamptz(True)),
    ),
)

TABLES: tuple[TableDef, ...] = (USERS, SCANS, CLASSIFICATION_RESULTS, RAG_RETRIEVALS, LLM_CALL_LOG, FEEDBACK)
TABLE_BY_NAME = {t.table: t for t in TABLES}

# Schema evolution of scan.llm_call_log (option schema_change):
#   v1 -> v2: ALTER TABLE scan.llm_call_log ADD COLUMN cached_tokens integer
#   v2 -> v3: ALTER TABLE scan.llm_call_log ALTER COLUMN latency_ms TYPE bigint
LLM_CALL_LOG_V2 = LLM_CALL_LOG.with_columns(list(LLM_CALL_LOG.columns) + [("cached_tokens", int32(True))])
LLM_CALL_LOG_V3 = LLM_CALL_LOG_V2.with_columns(
    [(n, int64() if n == "latency_ms" else s) for n, s in LLM_CALL_LOG_V2.columns]
)
LLM_VERSIONS = (LLM_CALL_LOG, LLM_CALL_LOG_V2, LLM_CALL_LOG_V3)

# Partition column per table for the FieldPartitioner (unwrap shape only): low-cardinality columns.
FIELD_PARTITION_COLUMNS = {
    "users": "provider",
    "scans": "status",
    "classification_results": "category",
    "rag_retrievals": "rank",
    "llm_call_log": "stage",
    "feedback": "thumbs_up",
}


def delete_fallback(schema: ConnectSchema, is_key: bool) -> object:
    """What Debezium puts in ``before`` for a non-key column of a DEFAULT-identity delete
    (spec §5.4): null for nullable columns; for NOT NULL ones the schema default if any, else
    the type fallback (0, "", false, the epoch)."""
    if is_key:
        raise ValueError("key columns carry the real key")
    if schema.optional:
        return None
    if schema.default is not None:
        return schema.default
    if schema.name == ZONED_TIMESTAMP:
        return EPOCH_FALLBACK
    return {"int32": 0, "int64": 0, "float64": 0.0, "boolean": False, "string": ""}[schema.type]
