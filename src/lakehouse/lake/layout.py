"""Object keys the S3 sink writes, and how to parse them back (spec lake-format.md §1).

Key formula (§1.1)::

    [<topics.dir>/]<topic>/<encodedPartition>/<topic>+<kafkaPartition>+<startOffset><extension>

The encoded partition depends on the partitioner (Default ``partition=N``; Hourly/Daily/TimeBased
``year=YYYY/...``; Field ``name=value``; optional ``schema_name=...`` affix; ``tombstone`` for null
values). The Kafka partition and start offset come only from the file name and are parsed as
integers (offsets past 10 digits break lexicographic order, pitfall 2).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

PARQUET_CODEC_EXTENSIONS = {
    "snappy": ".snappy.parquet",
    "none": ".parquet",
    "gzip": ".gz.parquet",
    "zstd": ".zstd.parquet",
    "lzo": ".lzo.parquet",
    "brotli": ".br.parquet",
    "lz4": ".lz4hadoop.parquet",
    "lz4_raw": ".lz4raw.parquet",
}
# Codec names as pyarrow knows them (for writing).
PYARROW_CODECS = {
    "snappy": "snappy",
    "none": "none",
    "gzip": "gzip",
    "zstd": "zstd",
    "brotli": "brotli",
    "lz4_raw": "lz4",
}

# Topics that carry no table rows (spec §5.1, §5.9, pitfall 19).
# Table topics are <prefix>.<schema>.<table>; the transaction and message topics have no schema
# segment, so a table that happens to be named "message" is not caught. A connector sharing its
# topic.prefix with another names its transaction topic apart (topic.transaction=transaction_auth).
NON_TABLE_TOPIC_PATTERNS = (
    re.compile(r"^__debezium-heartbeat\..+$"),
    re.compile(r"^[^.]+\.(transaction[A-Za-z0-9_-]*|message)$"),
)


class LakeObjectError(Exception):
    """An object in the lake that cannot be used, with the object's key and the reason."""

    def __init__(self, key: str, reason: str):
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


@dataclass(frozen=True)
class SinkLayout:
    """The S3 sink settings that shape object keys (defaults as in storage-common)."""

    topics_dir: str = "topics"
    directory_delim: str = "/"
    file_delim: str = "+"
    zero_pad_width: int = 10
    tombstone_partition: str = "tombstone"

    def topic_prefix(self, topic: str | None = None) -> str:
        base = f"{self.topics_dir}{self.directory_delim}" if self.topics_dir else ""
        return base if topic is None else f"{base}{topic}{self.directory_delim}"


@dataclass(frozen=True, order=True)
class ObjectKey:
    """A parsed value-file key. Ordering is the per-partition Kafka order of the files."""

    topic: str
    kafka_partition: int
    start_offset: int
    key: str = field(compare=True)
    encoded_partition: str = field(default="", compare=False)
    format: str = field(default="parquet", compare=False)  # parquet | json | avro
    compression: str = field(default="", compare=False)  # parquet codec ext or json .gz (Avro: in the header)

    @property
    def partition_values(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for seg in self.encoded_partition.split("/"):
            if "=" in seg:
                k, _, v = seg.partition("=")
                out[k] = v
        return out


@dataclass(frozen=True)
class IgnoredObject:
    """An object that is knowingly not a value file (companion, tombstone keys)."""

    key: str
    topic: str
    reason: str
    kind: str = ""  # keys | headers | tombstone


def _file_re(file_delim: str) -> re.Pattern[str]:
    d = re.escape(file_delim)
    return re.compile(
        rf"^(?P<topic>[A-Za-z0-9._-]+){d}(?P<kpart>\d+){d}(?P<start>\d+)"
        r"(?P<view>\.keys|\.headers)?"
        r"(?P<ext>(?:\.[a-z0-9]+)?\.parquet|\.json(?:\.gz)?|\.avro|\.bin(?:\.gz)?)$"
    )


_FILE_RES: dict[str, re.Pattern[str]] = {}


def is_non_table_topic(topic: str) -> bool:
    return any(p.match(topic) for p in NON_TABLE_TOPIC_PATTERNS)


def parse_object_key(key: str, layout: SinkLayout = SinkLayout()) -> ObjectKey | IgnoredObject:
    """Parse a key below the topics dir. Raises :class:`LakeObjectError` for keys that do not
    follow the sink's naming (nothing is skipped silently)."""
    prefix = layout.topic_prefix()
    if not key.startswith(prefix):
        raise LakeObjectError(key, f"not under the topics dir {prefix!r}")
    rest = key[len(prefix) :]
    parts = rest.split(layout.directory_delim)
    if len(parts) < 2:
        raise LakeObjectError(key, "expected <topic>/<encoded partition>/<file>, found no topic directory")
    topic_dir, filename = parts[0], parts[-1]
    encoded = layout.directory_delim.join(parts[1:-1])
    if filename.startswith(".") or filename.endswith(("_$folder$", "/")):
        raise LakeObjectError(key, "hidden or folder-marker object inside the lake")
    pattern = _FILE_RES.get(layout.file_delim) or _FILE_RES.setdefault(
        layout.file_delim, _file_re(layout.file_delim)
    )
    m = pattern.match(filename)
    if m is None:
        raise LakeObjectError(
            key,
            f"file name is not <topic>{layout.file_delim}<kafkaPartition>{layout.file_delim}<startOffset>.<ext> "
            "as the S3 sink writes it",
        )
    if m["topic"] != topic_dir:
        raise LakeObjectError(key, f"file name topic {m['topic']!r} differs from its directory {topic_dir!r}")
    if m["view"]:
        return IgnoredObject(key, topic_dir, f"{m['view'][1:]} companion file", kind=m["view"][1:])
    if encoded.split(layout.directory_delim)[0] == layout.tombstone_partition:
        return IgnoredObject(key, topic_dir, "tombstone partition (null values)", kind="tombstone")
    ext = m["ext"]
    if ext.endswith(".parquet"):
        fmt, compression = "parquet", ext[: -len(".parquet")] or ".none"
    elif ext.startswith(".json"):
        fmt, compression = "json", ext[len(".json") :]
    elif ext == ".avro":  # AvroFormat: the codec (avro.codec) is in the container header, not the name
        fmt, compression = "avro", ""
    else:
        raise LakeObjectError(
            key, f"value files with extension {ext!r} are not supported (Parquet, JSON or Avro only)"
        )
    if not encoded:
        raise LakeObjectError(key, "no encoded partition directory between topic and file")
    return ObjectKey(
        topic=topic_dir,
        kafka_partition=int(m["kpart"]),
        start_offset=int(m["start"]),
        key=key,
        encoded_partition=encoded,
        format=fmt,
        compression=compression,
    )


# --------------------------------------------------------------------------------------------
# Partitioners (for writing lakes the way the sink does)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Partitioner:
    """Encodes the directory between topic and file (spec §1.4)."""

    kind: str = "default"  # default | hourly | daily | time | field
    path_format: str = ""  # Joda pattern for kind=time
    duration_ms: int = 0  # bucket width for kind=time
    timezone_name: str = "UTC"
    fields: tuple[str, ...] = ()  # for kind=field
    schema_affix: str = "none"  # none | prefix | suffix

    @classmethod
    def named(cls, name: str, **kw) -> Partitioner:
        if name == "hourly":
            return cls("hourly", "'year'=YYYY/'month'=MM/'day'=dd/'hour'=HH", 3_600_000, **kw)
        if name == "daily":
            return cls("daily", "'year'=YYYY/'month'=MM/'day'=dd", 86_400_000, **kw)
        if name == "time":
            kw.setdefault("path_format", "'dt'=YYYY-MM-dd/'hr'=HH")
            kw.setdefault("duration_ms", 3_600_000)
            return cls("time", **kw)
        if name in ("default", "field"):
            return cls(name, **kw)
        raise ValueError(f"unknown partitioner {name!r} (default, hourly, daily, time, field)")

    def encode(
        self,
        kafka_partition: int,
        timestamp_ms: int | None = None,
        field_values: dict[str, object] | None = None,
        schema_name: str | None = None,
    ) -> str:
        if self.kind == "default":
            enc = f"partition={kafka_partition}"
        elif self.kind == "field":
            vals = field_values or {}
            enc = "/".join(f"{f}={_field_text(vals.get(f))}" for f in self.fields)
        else:
            if timestamp_ms is None:
                raise ValueError("time-based partitioners need a timestamp")
            # floor the local wall-clock time (as the partitioner does in the configured zone) and
            # format that; converting back through UTC would pick the wrong offset on DST days
            local = datetime.fromtimestamp(timestamp_ms / 1000, ZoneInfo(self.timezone_name))
            wall_ms = int(local.replace(tzinfo=UTC).timestamp() * 1000)
            bucket = (wall_ms // self.duration_ms) * self.duration_ms
            wall = datetime.fromtimestamp(bucket / 1000, UTC)
            enc = joda_format(wall, self.path_format).rstrip("/")
        if self.schema_affix == "prefix" and schema_name:
            enc = f"schema_name={schema_name}/{enc}"
        elif self.schema_affix == "suffix" and schema_name:
            enc = f"{enc}/schema_name={schema_name}"
        return enc


def _field_text(v: object) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


_JODA_TOKEN = re.compile(r"'([^']*)'|YYYY|yyyy|MM|dd|HH|mm|ss")


def joda_format(dt: datetime, pattern: str) -> str:
    """The subset of Joda-Time patterns the storage partitioners use."""

    def repl(m: re.Match) -> str:
        if m.group(1) is not None:
            return m.group(1)
        tok = m.group(0)
        return {
            "YYYY": f"{dt.year:04d}",
            "yyyy": f"{dt.year:04d}",
            "MM": f"{dt.month:02d}",
            "dd": f"{dt.day:02d}",
            "HH": f"{dt.hour:02d}",
            "mm": f"{dt.minute:02d}",
            "ss": f"{dt.second:02d}",
        }[tok]

    return _JODA_TOKEN.sub(repl, pattern)


def build_object_key(
    layout: SinkLayout,
    topic: str,
    encoded_partition: str,
    kafka_partition: int,
    start_offset: int,
    extension: str,
    view: str = "",
) -> str:
    d = layout.directory_delim
    name = (
        f"{topic}{layout.file_delim}{kafka_partition}{layout.file_delim}"
        f"{start_offset:0{layout.zero_pad_width}d}{view}{extension}"
    )
    return f"{layout.topic_prefix()}{topic}{d}{encoded_partition}{d}{name}"


def utc_now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)
