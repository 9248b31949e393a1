"""The tables config: which topics become tables, their primary keys, their personal-data policy.

One YAML file (default ``config/tables.yaml``, or ``LAKEHOUSE_TABLES_CONFIG``), validated by the
models below; every error names the file and the entry. Minimal form::

    tables:
      - topic: eco2.scan.feedback
        primary_key: [id]
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lakehouse.lake.layout import LakeObjectError
from lakehouse.settings import DEFAULT_TABLES_CONFIG, get_settings

DEFAULT_PATH = DEFAULT_TABLES_CONFIG


class ConfigError(ValueError):
    """The tables config cannot be used; the message names the file and what to change."""


class ColumnPolicy(StrEnum):
    keep = "keep"
    drop = "drop"  # never leaves the raw lake
    pseudonymise = "pseudonymise"  # keyed HMAC, joins still work


class DroppedColumns(StrEnum):
    drop = "drop"  # like the source: a dropped column leaves the table (SELECT * no longer shows it)
    keep = "keep"  # the column stays, null for rows changed after the drop (Fivetran/Airbyte style)


class PartitionGranularity(StrEnum):
    day = "DAY"
    month = "MONTH"


class WarehouseLayout(BaseModel):
    """How the table is laid out in BigQuery (DuckDB ignores it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # a timestamp or date column whose value never changes for a row (loads prune MERGEs by it)
    partition_by: str | None = None
    partition_granularity: PartitionGranularity = PartitionGranularity.day
    cluster_by: tuple[str, ...] = ()  # up to four columns, most filtered first

    @field_validator("cluster_by")
    @classmethod
    def _at_most_four(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if len(v) > 4:
            raise ValueError("BigQuery clusters by at most four columns")
        return v


class Erasure(BaseModel):
    """What an account closure erases from this table's derived copies (lakehouse.state.erasure)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # the column naming the account a row belongs to; the table whose primary key it is holds the
    # accounts, and a delete there closes one
    account_column: str
    columns: tuple[str, ...] = Field(min_length=1)  # personal data of that account


class TableConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    topic: str = Field(pattern=r"^[A-Za-z0-9._-]+$")
    primary_key: tuple[str, ...] | None = None
    columns: dict[str, ColumnPolicy] = Field(default_factory=dict)
    # what a DROP COLUMN in the source does to the table here
    dropped_columns: DroppedColumns = DroppedColumns.drop
    warehouse: WarehouseLayout = Field(default_factory=WarehouseLayout)
    # Debezium's transaction topic of the connector capturing this table (provide.transaction.metadata):
    # tables sharing one are read at one consistent watermark. Default <prefix>.transaction; two
    # connectors under one topic.prefix need their own (topic.transaction), e.g. eco2.transaction_auth
    transaction_topic: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9_-]+\.transaction[A-Za-z0-9_-]*$"
    )
    # keep every version of every row (SCD type 2, lakehouse.state.history): export --as-of, <table>_history
    history: bool = False
    erasure: Erasure | None = None

    @field_validator("primary_key")
    @classmethod
    def _key_not_empty(cls, v: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if v is not None and (not v or len(set(v)) != len(v)):
            raise ValueError("primary_key must list at least one column, each once")
        return v

    @property
    def table(self) -> str:
        """``<schema>.<table>``: the topic without its prefix."""
        parts = self.topic.split(".")
        return ".".join(parts[-2:]) if len(parts) >= 2 else self.topic

    @property
    def transactions(self) -> str:
        """The transaction topic this table's consistent watermark is read from."""
        return self.transaction_topic or f"{self.topic.split('.', 1)[0]}.transaction"

    def policy(self, column: str) -> ColumnPolicy:
        return self.columns.get(column, ColumnPolicy.keep)


class TablesConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tables: tuple[TableConfig, ...]
    source: str = "<memory>"

    @model_validator(mode="after")
    def _unique_topics(self) -> TablesConfig:
        seen: set[str] = set()
        for t in self.tables:
            if t.topic in seen:
                raise ValueError(f"topic {t.topic!r} is listed twice")
            seen.add(t.topic)
        return self

    def get(self, topic: str) -> TableConfig | None:
        return next((t for t in self.tables if t.topic == topic), None)

    @property
    def topics(self) -> list[str]:
        return [t.topic for t in self.tables]


def config_path() -> Path:
    """``LAKEHOUSE_TABLES_CONFIG``, else ``config/tables.yaml`` (lakehouse.settings)."""
    return get_settings().tables_config


def load_config(path: str | Path | None = None) -> TablesConfig:
    path = Path(path) if path is not None else config_path()
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the tables config ({exc.strerror or exc})") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(doc, dict) or "tables" not in doc:
        raise ConfigError(
            f"{path}: expected a mapping with a 'tables:' list, "
            "e.g. tables: [{topic: eco2.scan.feedback, primary_key: [id]}]"
        )
    unknown = sorted(str(k) for k in doc if k != "tables")
    if unknown:
        raise ConfigError(f"{path}: unknown top-level key(s) {unknown}: the file holds one 'tables:' list")
    try:
        return TablesConfig(tables=doc["tables"] or (), source=str(path))
    except ValidationError as exc:
        problems = "; ".join(f"{_where(e['loc'], doc)}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{path}: {problems}") from None


def _where(loc: tuple, doc: dict) -> str:
    """'tables[2] (eco2.scan.feedback).primary_key' from a pydantic error location."""
    parts: list[str] = []
    tables = doc.get("tables") or []
    for i, item in enumerate(loc):
        if isinstance(item, int) and i > 0 and loc[i - 1] == "tables":
            topic = (
                tables[item].get("topic") if item < len(tables) and isinstance(tables[item], dict) else None
            )
            parts[-1] = f"tables[{item}]" + (f" ({topic})" if topic else "")
        else:
            parts.append(str(item))
    return ".".join(parts)


def resolve_primary_key(config: TablesConfig, topic: str, reader=None) -> tuple[str, ...]:
    """Key columns of a topic: from the config, else from the lake's ``.keys`` companions (when a
    reader is given), else a :class:`ConfigError` saying how to configure it."""
    entry = config.get(topic)
    if entry is not None and entry.primary_key:
        return entry.primary_key
    if reader is not None:
        try:
            keys = reader.key_columns(topic)
        except LakeObjectError as exc:
            raise ConfigError(f"{topic}: its key companion {exc.key} is unreadable ({exc.reason})") from exc
        if keys:
            return keys
    raise ConfigError(
        f"topic {topic!r} has no known primary key: add\n"
        f"  - topic: {topic}\n    primary_key: [<column>, ...]\n"
        f"under 'tables:' in {config.source}, or let the S3 sink store key files (store.kafka.keys=true)"
    )
