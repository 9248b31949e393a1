"""The tables config: typed loading, clear errors, primary-key resolution order."""

from __future__ import annotations

import pytest

from lakehouse.config import ColumnPolicy, ConfigError, load_config, resolve_primary_key
from lakehouse.generate import GeneratorOptions, generate_lake
from lakehouse.lake.reader import LakeReader


def write(tmp_path, text: str):
    path = tmp_path / "tables.yaml"
    path.write_text(text)
    return path


def test_the_project_config_covers_every_generated_topic(tmp_path):
    config = load_config()
    generate_lake(str(tmp_path), GeneratorOptions(events=3000, seed=1))
    assert sorted(config.topics) == LakeReader(str(tmp_path)).scan().topics
    users = config.get("eco2.auth.users")
    assert users.primary_key == ("id",) and users.table == "auth.users"
    assert users.policy("password_hash") is ColumnPolicy.drop
    assert users.policy("email") is ColumnPolicy.pseudonymise
    assert users.policy("username") is ColumnPolicy.keep


def test_minimal_form(tmp_path):
    config = load_config(write(tmp_path, "tables: [{topic: eco2.scan.feedback, primary_key: [id]}]"))
    assert resolve_primary_key(config, "eco2.scan.feedback") == ("id",)


@pytest.mark.parametrize(
    "text,expected",
    [
        ("tables: [{topic: a.b.c, primary_key: []}]", "tables[0] (a.b.c).primary_key"),
        ("tables: [{topic: a.b.c, primary_key: [id], colums: {}}]", "tables[0] (a.b.c).colums"),
        (
            "tables: [{topic: a.b.c, primary_key: [id], columns: {email: hide}}]",
            "tables[0] (a.b.c).columns.email",
        ),
        ("tables: [{topic: a.b.c, primary_key: [id]}, {topic: a.b.c, primary_key: [id]}]", "listed twice"),
        ("tables: [{topic: 'a b', primary_key: [id]}]", "tables[0] (a b).topic"),
        ("tabels: []", "expected a mapping with a 'tables:' list"),
        ("tables: [", "not valid YAML"),
    ],
)
def test_errors_name_the_file_and_the_entry(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(path) in str(err.value) and expected in str(err.value)


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.yaml")


def test_primary_key_from_key_companions_when_not_configured(tmp_path):
    lake = tmp_path / "lake"
    generate_lake(str(lake), GeneratorOptions(events=3000, seed=2, store_keys=True))
    config = load_config(write(tmp_path, "tables: [{topic: eco2.scan.feedback}]"))
    reader = LakeReader(str(lake))
    assert resolve_primary_key(config, "eco2.scan.feedback", reader) == ("id",)
    assert resolve_primary_key(config, "eco2.scan.scans", reader) == ("id",)  # not in the config at all


def test_unknown_key_says_how_to_configure_it(tmp_path):
    lake = tmp_path / "lake"
    generate_lake(str(lake), GeneratorOptions(events=3000, seed=3))
    config = load_config(write(tmp_path, "tables: [{topic: eco2.scan.feedback, primary_key: [id]}]"))
    with pytest.raises(ConfigError) as err:
        resolve_primary_key(config, "eco2.scan.scans", LakeReader(str(lake)))
    message = str(err.value)
    assert "eco2.scan.scans" in message and "primary_key: [<column>, ...]" in message
    assert str(tmp_path / "tables.yaml") in message and "store.kafka.keys" in message


def test_unknown_top_level_keys_are_rejected(tmp_path):
    path = write(tmp_path, "tables:\n  - topic: eco2.scan.feedback\n    primary_key: [id]\ntabels_extra: 1\n")
    with pytest.raises(ConfigError, match=r"unknown top-level key\(s\) \['tabels_extra'\]"):
        load_config(path)
