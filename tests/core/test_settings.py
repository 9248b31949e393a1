"""The typed settings (lakehouse.settings): defaults under LAKEHOUSE_HOME, one override per variable,
errors that name the variable, secrets kept out of repr, and the CLI defaults that come from them."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.sample_lake import write_sample_lake
from typer.testing import CliRunner

from lakehouse.cli import app
from lakehouse.lake.store import LocalStore
from lakehouse.settings import (
    DEFAULT_TABLES_CONFIG,
    VARIABLES,
    Settings,
    SettingsError,
    get_settings,
)
from lakehouse.state.table import delta_storage_options


@pytest.fixture
def env(monkeypatch, tmp_path):
    """No setting from the caller's environment; LAKEHOUSE_HOME under tmp_path."""
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LAKEHOUSE_HOME", str(tmp_path / "home"))
    return monkeypatch


def test_defaults_live_under_lakehouse_home(env, tmp_path):
    s = get_settings()
    home = tmp_path / "home"
    assert s.home == home
    assert s.lake == str(home / "lake") and s.state == str(home / "state")
    assert s.duckdb_path == home / "warehouse.duckdb"
    assert s.report_dir == home / "report"
    assert s.dagster_home == home / "dagster"
    assert s.capture_dir == home / "capture"
    assert s.tables_config == DEFAULT_TABLES_CONFIG
    assert (s.warehouse, s.engine) == ("duckdb", "local")
    assert (s.bigquery_project, s.bigquery_location, s.bigquery_dataset_prefix) == (None, "US", "")
    assert s.engine_dataset == "lakehouse_engine"
    assert (s.storage_attempts, s.storage_retry_seconds, s.consistent_reads) == (8, 120.0, True)
    assert s.pseudonym_key is None and s.aws_endpoint_url is None and s.aws_region is None


def test_the_default_home_is_data_in_the_working_directory(env, tmp_path):
    env.delenv("LAKEHOUSE_HOME")
    env.chdir(tmp_path)
    assert get_settings().home == tmp_path / ".data"
    assert get_settings().lake == str(tmp_path / ".data" / "lake")


@pytest.mark.parametrize(
    ("variable", "value", "field", "expected"),
    [
        ("LAKEHOUSE_LAKE", "s3://bucket/lake", "lake", "s3://bucket/lake"),
        ("LAKEHOUSE_STATE", "s3://bucket/state", "state", "s3://bucket/state"),
        ("LAKEHOUSE_DUCKDB", "/w/x.duckdb", "duckdb_path", Path("/w/x.duckdb")),
        ("LAKEHOUSE_REPORT", "/r", "report_dir", Path("/r")),
        ("DAGSTER_HOME", "/d", "dagster_home", Path("/d")),
        ("LAKEHOUSE_TABLES_CONFIG", "other.yaml", "tables_config", Path("other.yaml")),
        ("LAKEHOUSE_WAREHOUSE", " BigQuery ", "warehouse", "bigquery"),
        ("LAKEHOUSE_ENGINE", "bigquery", "engine", "bigquery"),
        ("LAKEHOUSE_BIGQUERY_PROJECT", "p", "bigquery_project", "p"),
        ("LAKEHOUSE_BIGQUERY_LOCATION", "EU", "bigquery_location", "EU"),
        ("LAKEHOUSE_BIGQUERY_DATASET_PREFIX", "prod_", "engine_dataset", "prod_lakehouse_engine"),
        ("LAKEHOUSE_BIGQUERY_ENDPOINT", "http://bq:9050", "bigquery_endpoint", "http://bq:9050"),
        ("LAKEHOUSE_BIGQUERY_ENGINE_DATASET", "eng", "bigquery_engine_dataset", "eng"),
        ("LAKEHOUSE_STORAGE_ATTEMPTS", "3", "storage_attempts", 3),
        ("LAKEHOUSE_STORAGE_ATTEMPTS", "0", "storage_attempts", 1),  # at least one try
        ("LAKEHOUSE_STORAGE_RETRY_SECONDS", "2.5", "storage_retry_seconds", 2.5),
        ("LAKEHOUSE_CONSISTENT_READS", "off", "consistent_reads", False),
        ("AWS_ENDPOINT_URL", "http://minio:9000", "aws_endpoint_url", "http://minio:9000"),
        ("AWS_DEFAULT_REGION", "eu-west-1", "aws_region", "eu-west-1"),
    ],
)
def test_each_variable_overrides_its_setting(env, variable, value, field, expected):
    env.setenv(variable, value)
    assert getattr(get_settings(), field) == expected  # seen without clearing any cache


def test_an_empty_variable_counts_as_unset(env, tmp_path):
    env.setenv("LAKEHOUSE_LAKE", "")
    env.setenv("LAKEHOUSE_WAREHOUSE", "")
    assert get_settings().lake == str(tmp_path / "home" / "lake")
    assert get_settings().warehouse == "duckdb"


def test_the_s3_specific_aws_variables_win_and_every_s3_client_uses_them(env):
    env.setenv("AWS_ENDPOINT_URL", "http://generic:1")
    env.setenv("AWS_ENDPOINT_URL_S3", "http://s3-only:2")
    env.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    env.setenv("AWS_REGION", "eu-central-1")
    s = get_settings()
    assert (s.aws_endpoint_url, s.aws_region) == ("http://s3-only:2", "eu-central-1")
    opts = delta_storage_options("s3://bucket/state")
    assert opts["AWS_ENDPOINT_URL"] == "http://s3-only:2" and opts["AWS_ALLOW_HTTP"] == "true"
    assert opts["AWS_REGION"] == "eu-central-1"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("LAKEHOUSE_WAREHOUSE", "oracle"),
        ("LAKEHOUSE_ENGINE", "spark"),
        ("LAKEHOUSE_STORAGE_ATTEMPTS", "many"),
        ("LAKEHOUSE_CONSISTENT_READS", "maybe"),
    ],
)
def test_a_bad_value_is_an_error_naming_the_variable(env, variable, value):
    env.setenv(variable, value)
    with pytest.raises(SettingsError, match=rf"^{variable}: .*{value}"):
        get_settings()
    assert issubclass(SettingsError, ValueError)  # callers that catch ValueError still do


def test_the_pseudonym_key_is_never_in_repr_or_str(env):
    env.setenv("LAKEHOUSE_PSEUDONYM_KEY", "sentinel-key-7f3a")
    env.setenv("LAKEHOUSE_CAPTURE_DSN", "postgresql://u:sentinel-gcp-91bc@h/db")
    s = get_settings()
    for text in (repr(s), str(s), repr(s.pseudonym_key), s.model_dump_json()):
        assert "sentinel-key-7f3a" not in text and "sentinel-gcp-91bc" not in text
    assert s.pseudonym_key_value() == "sentinel-key-7f3a"


def test_settings_are_read_only_and_every_field_names_its_variable(env):
    with pytest.raises(ValueError):
        get_settings().lake = "elsewhere"  # type: ignore[misc]
    for name, field in Settings.model_fields.items():
        assert field.validation_alias, f"{name} reads no named variable"
        assert field.description, f"{name} is undocumented"


def test_cli_defaults_come_from_the_settings(env, tmp_path):
    lake = tmp_path / "lake"
    write_sample_lake(LocalStore(lake))
    env.setenv("LAKEHOUSE_LAKE", str(lake))
    result = CliRunner().invoke(app, ["inspect", "--json", "--no-count"])
    assert result.exit_code == 0, result.output
    assert str(lake) in result.stdout
    help_text = " ".join(
        CliRunner().invoke(app, ["inspect", "--help"], env={"COLUMNS": "200"}).output.split()
    )
    assert "$LAKEHOUSE_LAKE" in help_text


def test_a_bad_setting_ends_the_cli_in_one_line(env):
    env.setenv("LAKEHOUSE_WAREHOUSE", "oracle")
    result = CliRunner().invoke(app, ["inspect", "--json"])
    assert result.exit_code == 2
    assert "LAKEHOUSE_WAREHOUSE" in result.output and "Traceback" not in result.output
