"""Options of the Eco2 lake generator (each one is observable in the written lake)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from lakehouse.lake.avrofile import CODECS as AVRO_CODECS

PARTITIONERS = ("default", "hourly", "daily", "time", "field")
SHAPES = ("envelope", "unwrap")
FORMATS = ("parquet", "json", "avro")


@dataclass(frozen=True)
class GeneratorOptions:
    events: int = 100_000  # total change events (value records, snapshot included; the report is exact)
    seed: int = 0
    topic_prefix: str = "eco2"
    partitions: int = 1  # Kafka partitions per topic (key hash -> partition)
    flush_size: int = 10_000
    partitioner: str = "default"  # default | hourly | daily | time | field (field only with unwrap)
    shape: str = "envelope"  # envelope | unwrap (ExtractNewRecordState, rewrite, add.fields=op,lsn,source.ts_ms,txId,snapshot)
    format: str = "parquet"  # parquet | json | avro
    avro_codec: str = "null"  # avro.codec of Avro objects (format='avro')
    json_schemas: bool = False  # JSON lines with embedded {"schema","payload"}
    schema_change: bool = (
        False  # llm_call_log: ADD COLUMN cached_tokens at 35 %, latency_ms int -> bigint at 65 %
    )
    replays: bool = False  # Debezium at-least-once replays + overlapping sink files
    toast: bool = True  # classification_results.rationale > 2 KB; untouched on updates -> placeholder
    pk_changes: bool = False  # classification_results id updates: d + tombstone + c (same lsn/txId)
    truncates: bool = False  # one TRUNCATE scan.llm_call_log (log retention) at 50 %
    deletes: bool = True  # feedback deletes, account closures (auth.users)
    store_keys: bool = False  # key companion files (.keys.snappy.parquet)
    start_time: str = "2026-11-01T00:00:00Z"
    events_per_second: float = 50.0  # simulated commit-time rate
    # provide.transaction.metadata: BEGIN/END per transaction in <prefix>.transaction_<database>
    # (one connector per database under one prefix, each its own topic.transaction)
    transactions: bool = False

    def validate(self) -> None:
        if self.events < 1:
            raise ValueError("events must be >= 1")
        if self.partitions < 1:
            raise ValueError("partitions must be >= 1")
        if self.flush_size < 1:
            raise ValueError("flush_size must be >= 1")
        if self.partitioner not in PARTITIONERS:
            raise ValueError(f"partitioner must be one of {', '.join(PARTITIONERS)}")
        if self.shape not in SHAPES:
            raise ValueError(f"shape must be one of {', '.join(SHAPES)}")
        if self.format not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}")
        if self.partitioner == "field" and self.shape != "unwrap":
            raise ValueError(
                "the field partitioner needs shape='unwrap' (an envelope has no top-level "
                "business column to partition by, spec §1.4)"
            )
        if self.json_schemas and self.format != "json":
            raise ValueError("json_schemas needs format='json'")
        if self.avro_codec not in AVRO_CODECS:
            raise ValueError(f"avro_codec must be one of {', '.join(AVRO_CODECS)}")
        if self.truncates and self.store_keys:
            raise ValueError(
                "truncates with store_keys: truncate events have a null key and the S3 sink "
                "fails on null keys when store.kafka.keys=true (spec §3.3, pitfall 21)"
            )
        if not self.events_per_second > 0:
            raise ValueError("events_per_second must be > 0")
        if not self.topic_prefix or any(c not in _TOPIC_CHARS for c in self.topic_prefix):
            raise ValueError("topic_prefix may only contain [A-Za-z0-9._-]")
        _ = self.start_us  # parses

    @property
    def start_us(self) -> int:
        text = self.start_time.replace("Z", "+00:00")
        dt = datetime.fromisoformat(text)
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        return int(dt.timestamp()) * 1_000_000 + dt.microsecond


_TOPIC_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")
