"""Every setting the code reads from the environment, in one typed object.

Everything lives under ``LAKEHOUSE_HOME`` (default ``.data`` in the working directory). Each
location can be overridden on its own by an environment variable; production points ``LAKEHOUSE_LAKE``
at ``s3://bucket/prefix``. Read them through :func:`get_settings`::

    from lakehouse.settings import get_settings

    lake = get_settings().lake

Each field names its variable explicitly (``validation_alias``): the real name is what a grep, the
deploy test (``tests/orchestration/test_deploy.py``) and a validation error show. An empty variable
counts as unset. Besides the ``LAKEHOUSE_*`` variables, two of AWS's own are mapped here, once
(``AWS_ENDPOINT_URL_S3``/``AWS_ENDPOINT_URL``, ``AWS_REGION``/``AWS_DEFAULT_REGION``), and Dagster's
``DAGSTER_HOME``. Process knobs of libraries (``PG_BINDIR``, ``XDG_CACHE_HOME``,
``ARROW_DEFAULT_MEMORY_POOL``, ``GX_ANALYTICS_ENABLED``) stay next to the code they tune.

:func:`get_settings` is cheap and always current: it caches one object per (working directory,
values of the variables above), so a test's ``monkeypatch.setenv``/``chdir`` is seen on the next
call without clearing anything (``get_settings.cache_clear()`` drops the cache anyway).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal, get_args

from pydantic import AliasChoices, Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

WarehouseKind = Literal["duckdb", "bigquery"]
EngineKind = Literal["local", "bigquery"]
WAREHOUSE_KINDS: tuple[str, ...] = get_args(WarehouseKind)
ENGINE_KINDS: tuple[str, ...] = get_args(EngineKind)

# names other modules quote (error messages, dg.EnvVar, CLI envvar=)
PSEUDONYM_KEY_ENV = "LAKEHOUSE_PSEUDONYM_KEY"
CAPTURE_DSN_ENV = "LAKEHOUSE_CAPTURE_DSN"
DATASET_PREFIX_ENV = "LAKEHOUSE_BIGQUERY_DATASET_PREFIX"

DEFAULT_TABLES_CONFIG = Path(__file__).resolve().parents[2] / "config" / "tables.yaml"


_UNDER_HOME = {"duckdb_path": "warehouse.duckdb", "report_dir": "report", "dagster_home": "dagster"}


def _env(name: str, default, description: str, **kw):
    return Field(default, validation_alias=name, description=f"``{name}``: {description}", **kw)


class Settings(BaseSettings):
    """The environment's settings (read-only; :func:`get_settings` returns a shared instance)."""

    model_config = SettingsConfigDict(
        env_prefix="LAKEHOUSE_",
        case_sensitive=True,  # os.environ is; LAKEHOUSE_lake is not LAKEHOUSE_LAKE
        env_ignore_empty=True,
        populate_by_name=True,  # Settings(lake=...) in tests and scripts
        frozen=True,
        extra="ignore",
    )

    # where things live (home first: the derived defaults below read it)
    home: Path = _env("LAKEHOUSE_HOME", Path(".data"), "root of the embedded defaults below.")
    lake: str = _env(
        "LAKEHOUSE_LAKE",
        None,
        "lake root: a folder or s3://bucket/prefix (default <home>/lake).",
        validate_default=True,
    )
    state: str = _env(
        "LAKEHOUSE_STATE",
        None,
        "current-state Delta tables, one per source table: a folder or s3://... (default <home>/state).",
        validate_default=True,
    )
    duckdb_path: Path = _env(
        "LAKEHOUSE_DUCKDB",
        None,
        "the embedded DuckDB warehouse file (default <home>/warehouse.duckdb).",
        validate_default=True,
    )
    report_dir: Path = _env(
        "LAKEHOUSE_REPORT",
        None,
        "where the marts report is written (default <home>/report).",
        validate_default=True,
    )
    dagster_home: Path = Field(
        default=None,
        validation_alias="DAGSTER_HOME",
        description="``DAGSTER_HOME`` (Dagster's own variable): run history and instance settings "
        "(default <home>/dagster).",
        validate_default=True,
    )
    tables_config: Path = _env(
        "LAKEHOUSE_TABLES_CONFIG",
        DEFAULT_TABLES_CONFIG,
        "the tables config YAML (default config/tables.yaml).",
    )

    # what runs where
    warehouse: WarehouseKind = _env(
        "LAKEHOUSE_WAREHOUSE", "duckdb", "duckdb (embedded) or bigquery (production)."
    )
    engine: EngineKind = _env(
        "LAKEHOUSE_ENGINE",
        "local",
        "what runs the fold: local (in this process) or bigquery (past one machine; the "
        "LAKEHOUSE_BIGQUERY_* settings).",
    )
    bigquery_project: str | None = Field(
        default=None,
        validation_alias=AliasChoices("LAKEHOUSE_BIGQUERY_PROJECT", "GOOGLE_CLOUD_PROJECT"),
        description="``LAKEHOUSE_BIGQUERY_PROJECT``, else Google's ``GOOGLE_CLOUD_PROJECT``, else the "
        "project of Google's Application Default Credentials.",
    )
    bigquery_location: str = _env("LAKEHOUSE_BIGQUERY_LOCATION", "US", "BigQuery location.")
    bigquery_dataset_prefix: str = _env(
        DATASET_PREFIX_ENV, "", "prefix of the BigQuery datasets (default none: datasets auth, scan)."
    )
    bigquery_endpoint: str | None = _env(
        "LAKEHOUSE_BIGQUERY_ENDPOINT",
        None,
        "an emulator's endpoint (anonymous credentials); unset in production.",
    )
    bigquery_engine_dataset: str = _env(
        "LAKEHOUSE_BIGQUERY_ENGINE_DATASET",
        "lakehouse_engine",
        "dataset of the BigQuery engine's raw change tables and working tables (after the prefix).",
    )

    # secrets: SecretStr, never in repr, str or logs
    pseudonym_key: SecretStr | None = _env(
        PSEUDONYM_KEY_ENV, None, "HMAC key of pseudonymised columns (from a secret; never in config)."
    )
    capture_dsn: SecretStr | None = _env(
        CAPTURE_DSN_ENV, None, "PostgreSQL DSN of `lakehouse capture` (keep the password out: PGPASSWORD)."
    )

    # storage behaviour
    storage_attempts: int = _env(
        "LAKEHOUSE_STORAGE_ATTEMPTS",
        8,
        "tries of one storage request (S3 and delta-rs) before its error counts; transient errors "
        "(5xx, throttling, dropped connections) are retried with backoff (at least 1).",
    )
    storage_retry_seconds: float = _env(
        "LAKEHOUSE_STORAGE_RETRY_SECONDS",
        120.0,
        'how long one read or write keeps retrying through an outage before the table fails with "storage '
        'unavailable" (nothing committed; a rerun resumes).',
    )
    consistent_reads: bool = _env(
        "LAKEHOUSE_CONSISTENT_READS",
        True,
        "warehouse loads (and so the marts and datasets) read each database at its published consistent "
        "watermark when there is one.",
    )

    # AWS's own variables, mapped once for every S3 client here (boto3, pyarrow, delta-rs)
    aws_endpoint_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"),
        description="``AWS_ENDPOINT_URL_S3``, else ``AWS_ENDPOINT_URL``: an S3-compatible endpoint "
        "(MinIO, moto, ...); unset: AWS.",
    )
    aws_region: str | None = Field(
        default=None,
        validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION"),
        description="``AWS_REGION``, else ``AWS_DEFAULT_REGION``.",
    )

    @field_validator("home")
    @classmethod
    def _resolve_home(cls, v: Path) -> Path:
        return v.resolve()

    @field_validator("lake", "state", mode="before")
    @classmethod
    def _under_home(cls, v, info: ValidationInfo):
        if v:
            return v
        home = info.data.get("home")
        return str(home / info.field_name) if home else v

    @field_validator("duckdb_path", "report_dir", "dagster_home", mode="before")
    @classmethod
    def _path_under_home(cls, v, info: ValidationInfo):
        if not v:
            home = info.data.get("home")
            if home is None:
                return v
            assert info.field_name is not None  # always set for a field validator
            v = home / _UNDER_HOME[info.field_name]
        return Path(v).resolve()

    @field_validator("warehouse", "engine", mode="before")
    @classmethod
    def _kind(cls, v):
        return v.strip().lower() if isinstance(v, str) else v

    @field_validator("storage_attempts")
    @classmethod
    def _at_least_one(cls, v: int) -> int:
        return max(1, v)

    # -- derived --------------------------------------------------------------------------------

    @property
    def capture_dir(self) -> Path:
        """Where ``lakehouse capture`` keeps Debezium's offsets by default."""
        return self.home / "capture"

    @property
    def engine_dataset(self) -> str:
        """The BigQuery engine's dataset, prefix included."""
        return self.bigquery_dataset_prefix + self.bigquery_engine_dataset

    def pseudonym_key_value(self) -> str | None:
        """The HMAC key in clear, for the one place that uses it."""
        return self.pseudonym_key.get_secret_value() if self.pseudonym_key else None


def _variables() -> tuple[str, ...]:
    names: list[str] = []
    for field in Settings.model_fields.values():
        alias = field.validation_alias
        choices = alias.choices if isinstance(alias, AliasChoices) else [alias]
        names += [name for name in choices if isinstance(name, str)]  # every field has str aliases
    return tuple(sorted(set(names)))


VARIABLES: tuple[str, ...] = _variables()  # every environment variable Settings reads


class SettingsError(ValueError):
    """An environment variable with a value the settings reject; the message names the variable."""


SECRETS = frozenset({PSEUDONYM_KEY_ENV, CAPTURE_DSN_ENV})


def _one_line(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors(include_url=False):
        name = ".".join(str(part) for part in error["loc"])
        got = "" if name in SECRETS else f" (got {error.get('input')!r})"  # a secret is never echoed
        problems.append(f"{name}: {error['msg']}{got}")
    return "; ".join(problems)


@lru_cache(maxsize=8)
def _cached(cwd: str, values: tuple[str | None, ...]) -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        raise SettingsError(_one_line(exc)) from None


def get_settings() -> Settings:
    """The settings for the current environment and working directory (cached per their values).

    Raises :class:`SettingsError` (a ``ValueError``) naming the variable when a value is invalid,
    e.g. ``LAKEHOUSE_WAREHOUSE: Input should be 'duckdb' or 'bigquery' (got 'oracle')``."""
    return _cached(os.getcwd(), tuple(os.environ.get(name) for name in VARIABLES))


get_settings.cache_clear = _cached.cache_clear  # type: ignore[attr-defined]  # mypy: no attributes on functions
