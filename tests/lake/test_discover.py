"""`lakehouse discover`: topics in the lake that the tables config does not list get config entries,
with keys from the lake's key files or the PostgreSQL catalog; comments survive; never twice."""

from __future__ import annotations

import shutil

import numpy as np
import pyarrow as pa
import pytest
from support.sample_lake import load_events, write_sample_lake
from typer.testing import CliRunner

from lakehouse.cli import app
from lakehouse.config import DEFAULT_PATH, ConfigError, load_config
from lakehouse.discover import (
    KEY_FILES,
    CatalogError,
    Discovered,
    append_entries,
    discover,
    unknown_topics,
)
from lakehouse.generate import GeneratorOptions, generate_lake
from lakehouse.lake.connect import ConnectSchema, struct
from lakehouse.lake.reader import LakeListing, LakeReader
from lakehouse.lake.sink import SinkConfig, SinkWriter
from lakehouse.lake.store import LocalStore

runner = CliRunner()

VOTES = "eco2.scan.bin_votes"  # composite key (voter, scan_id): key order differs from column order
NOTES = "eco2.scan.notes"  # no key anywhere


def vote_fields(dbz):
    return [
        ("scan_id", ConnectSchema("string")),
        ("voter", ConnectSchema("int64")),
        ("label", dbz.opt("string")),
    ]


def write_topic(store, dbz, topic, fields, key=(), n=2):
    """Change events of one topic through the sink emulation; with ``key`` the sink stores key
    companion files (store.kafka.keys=true) holding those columns in that order."""
    schema = dbz.envelope(topic, fields)
    key_schema = struct(f"{topic}.Key", [(k, dict(fields)[k]) for k in key]) if key else None
    w = SinkWriter(store, SinkConfig(flush_size=1000, store_keys=bool(key)))
    table_name = topic.split(".")[-1]
    for i in range(n):
        after = {name: (f"s{i}" if s.type == "string" else i) for name, s in fields}
        rec = dbz.record("c", after=after, table=table_name, schema="scan", lsn=100 + i)
        keys = (
            pa.Table.from_pylist(
                [{k: after[k] for k in key}], schema=pa.schema(list(key_schema.physical_arrow_type()))
            )
            if key
            else None
        )
        w.write(
            topic,
            0,
            dbz.table(schema, [rec]),
            schema,
            np.array([i]),
            keys=keys,
            key_schema=key_schema,
            timestamps_ms=np.array([rec["source"]["ts_ms"]]),
        )
    w.close()


def write_heartbeats(store):
    hb = struct("io.debezium.connector.common.Heartbeat", [("ts_ms", ConnectSchema("int64"))], version=1)
    w = SinkWriter(store, SinkConfig(flush_size=10))
    w.write("__debezium-heartbeat.eco2", 0, pa.table({"ts_ms": [1, 2]}), hb, np.array([0, 1]))
    tx = struct(
        "io.debezium.connector.common.TransactionMetadataValue",
        [("status", ConnectSchema("string")), ("id", ConnectSchema("string"))],
        version=1,
    )
    w.write("eco2.transaction", 0, pa.table({"status": ["BEGIN"], "id": ["1:2"]}), tx, np.array([0]))
    w.close()


@pytest.fixture
def config_copy(tmp_path):
    """A temp copy of the project's tables config (comments and all)."""
    path = tmp_path / "tables.yaml"
    shutil.copyfile(DEFAULT_PATH, path)
    return path


def test_generated_lake_extra_topic_is_written_once(tmp_path, dbz, config_copy):
    lake = tmp_path / "lake"
    generate_lake(str(lake), GeneratorOptions(events=300, seed=4))
    write_topic(LocalStore(lake), dbz, VOTES, vote_fields(dbz), key=("voter", "scan_id"))
    original = config_copy.read_text()
    assert unknown_topics(load_config(config_copy), LakeReader(str(lake))) == [VOTES]

    result = runner.invoke(app, ["discover", "--lake", str(lake), "--tables-config", str(config_copy)])
    assert result.exit_code == 0, result.output
    assert VOTES in result.stdout and "voter, scan_id" in result.stdout and "key files" in result.stdout
    text = config_copy.read_text()
    assert text.startswith(original)  # comments and existing entries untouched
    assert text[len(original) :] == f"  - topic: {VOTES}\n    primary_key: [voter, scan_id]\n"
    config = load_config(config_copy)
    assert config.get(VOTES).primary_key == ("voter", "scan_id")
    assert config.topics[:-1] == load_config(DEFAULT_PATH).topics
    assert unknown_topics(config, LakeReader(str(lake))) == []

    again = runner.invoke(app, ["discover", "--lake", str(lake), "--tables-config", str(config_copy)])
    assert again.exit_code == 0, again.output
    assert "every table topic" in again.stdout
    assert config_copy.read_text() == text


def test_keys_from_the_real_sample_key_files(tmp_path, config_copy):
    store = LocalStore(tmp_path / "lake")
    events = [e for e in load_events() if not (e.value and e.value["op"] == "t")]  # null keys
    write_sample_lake(store, SinkConfig(flush_size=3, store_keys=True), events)
    found = discover(load_config(config_copy), LakeReader(store))
    assert found == [
        Discovered("eco2.scan.scan_feedback", ("id",), KEY_FILES),
        Discovered("eco2.scan.scan_results", ("id",), KEY_FILES),
    ]
    added, block = append_entries(config_copy, found)
    assert [f.topic for f in added] == ["eco2.scan.scan_feedback", "eco2.scan.scan_results"]
    assert load_config(config_copy).get("eco2.scan.scan_results").primary_key == ("id",)
    assert append_entries(config_copy, found) == ([], "")  # already there: nothing twice


def test_topic_without_key_source_is_reported_not_written(tmp_path, dbz, config_copy):
    lake = tmp_path / "lake"
    store = LocalStore(lake)
    write_topic(store, dbz, VOTES, vote_fields(dbz), key=("scan_id", "voter"))
    write_topic(store, dbz, NOTES, [("id", ConnectSchema("int64")), ("body", dbz.opt("string"))])
    original = config_copy.read_text()

    for _ in range(2):  # the second run adds nothing and still names the keyless topic
        result = runner.invoke(app, ["discover", "--lake", str(lake), "--tables-config", str(config_copy)])
        assert result.exit_code == 1, result.output
        assert f"topic {NOTES!r} has no known primary key" in result.output
        assert "primary_key: [<column>, ...]" in result.output and str(config_copy) in result.output
        assert "store.kafka.keys" in result.output and "scan.notes" in result.output
        assert (
            config_copy.read_text() == original + f"  - topic: {VOTES}\n    primary_key: [scan_id, voter]\n"
        )
    config = load_config(config_copy)
    assert config.get(NOTES) is None and config.get(VOTES).primary_key == ("scan_id", "voter")
    assert discover(config, LakeReader(store)) == [
        Discovered(NOTES, None, None, "no key files in the lake; no DSN given")
    ]


def test_dry_run_prints_and_changes_nothing(tmp_path, dbz, config_copy):
    lake = tmp_path / "lake"
    write_topic(LocalStore(lake), dbz, VOTES, vote_fields(dbz), key=("voter", "scan_id"))
    original = config_copy.read_text()
    result = runner.invoke(
        app, ["discover", "--lake", str(lake), "--tables-config", str(config_copy), "--dry-run"]
    )
    assert result.exit_code == 0, result.output
    assert "would add" in result.stdout
    assert f"- topic: {VOTES}\n    primary_key: [voter, scan_id]" in result.stdout
    assert config_copy.read_text() == original


def test_heartbeat_and_transaction_topics_are_not_tables(tmp_path, config_copy):
    lake = tmp_path / "lake"
    write_heartbeats(LocalStore(lake))
    reader = LakeReader(str(lake))
    assert unknown_topics(load_config(config_copy), reader) == []
    # also when a listing handed in still holds them
    listing = LakeListing(
        {"__debezium-heartbeat.eco2": [], "eco2.transaction": [], "eco2.x.y": []}, [], [], set()
    )
    assert unknown_topics(load_config(config_copy), listing) == ["eco2.x.y"]
    original = config_copy.read_text()
    result = runner.invoke(app, ["discover", "--lake", str(lake), "--tables-config", str(config_copy)])
    assert result.exit_code == 0, result.output
    assert "every table topic" in result.stdout and config_copy.read_text() == original


def test_append_keeps_layout_and_quotes_odd_names(tmp_path):
    path = tmp_path / "tables.yaml"
    path.write_text("# top comment\ntables:\n- topic: a.b.c  # trailing comment\n  primary_key: [id]")
    odd = Discovered("eco2.public.odd", ("on", "my col", "2"), "catalog x")
    added, block = append_entries(path, [odd, Discovered("eco2.public.nokey", None, None)])
    assert added == [odd]
    text = path.read_text()
    assert text.startswith(
        "# top comment\ntables:\n- topic: a.b.c  # trailing comment\n  primary_key: [id]\n"
    )
    assert (
        block == '- topic: eco2.public.odd\n  primary_key: ["on", "my col", "2"]\n'
    )  # same indent as the file
    assert load_config(path).get("eco2.public.odd").primary_key == ("on", "my col", "2")


def test_flow_style_file_is_not_broken(tmp_path):
    path = tmp_path / "tables.yaml"
    path.write_text("tables: [{topic: a.b.c, primary_key: [id]}]\n")
    with pytest.raises(ConfigError) as err:
        append_entries(path, [Discovered("eco2.public.t", ("id",), KEY_FILES)])
    assert "by hand" in str(err.value) and "- topic: eco2.public.t" in str(err.value)
    assert path.read_text() == "tables: [{topic: a.b.c, primary_key: [id]}]\n"
    assert [p.name for p in tmp_path.iterdir()] == ["tables.yaml"]  # no temp file left behind


def test_unreachable_catalog_is_an_error_and_writes_nothing(tmp_path, dbz, config_copy):
    from lakehouse.pg.cluster import free_port

    lake = tmp_path / "lake"
    write_topic(LocalStore(lake), dbz, NOTES, [("id", ConnectSchema("int64"))])
    dsn = f"host=127.0.0.1 port={free_port()} user=postgres dbname=nowhere"
    with pytest.raises(CatalogError, match="nowhere"):
        discover(load_config(config_copy), LakeReader(str(lake)), dsn)
    original = config_copy.read_text()
    result = runner.invoke(
        app, ["discover", "--lake", str(lake), "--tables-config", str(config_copy), "--dsn", dsn]
    )
    assert result.exit_code == 2 and "cannot read the PostgreSQL catalog" in result.output
    assert config_copy.read_text() == original


@pytest.mark.slow
def test_keys_from_the_postgres_catalog(tmp_path, dbz, eco2_db, config_copy):
    import psycopg

    with psycopg.connect(eco2_db, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE scan.bin_votes (scan_id uuid, voter bigint, label text, "
            "PRIMARY KEY (voter, scan_id))"
        )
        conn.execute("CREATE TABLE scan.notes (id bigint, body text)")  # no primary key
        dbname = conn.info.dbname
    lake = tmp_path / "lake"
    store = LocalStore(lake)
    write_topic(store, dbz, VOTES, vote_fields(dbz))  # no key files
    write_topic(store, dbz, NOTES, [("id", ConnectSchema("int64")), ("body", dbz.opt("string"))])
    write_topic(store, dbz, "eco2.scan.missing", [("id", ConnectSchema("int64"))])

    found = discover(load_config(config_copy), LakeReader(store), eco2_db)
    assert found[0] == Discovered(VOTES, ("voter", "scan_id"), f"catalog {dbname}")
    assert found[1].topic == "eco2.scan.missing" and found[1].primary_key is None
    assert f"no table scan.missing in database {dbname!r}" in found[1].note
    assert found[2].topic == NOTES and found[2].primary_key is None
    assert f"scan.notes has no primary key in database {dbname!r}" in found[2].note

    result = runner.invoke(
        app, ["discover", "--lake", str(lake), "--tables-config", str(config_copy), "--dsn", eco2_db]
    )
    assert result.exit_code == 1, result.output
    assert f"catalog {dbname}" in result.stdout
    assert "eco2.scan.missing, eco2.scan.notes" in result.output
    config = load_config(config_copy)
    assert config.get(VOTES).primary_key == ("voter", "scan_id")
    assert config.get(NOTES) is None and config.get("eco2.scan.missing") is None


@pytest.mark.slow
def test_sanitized_topics_map_back_to_their_tables(tmp_path, dbz, eco2_db, config_copy):
    """Debezium writes ``"we ird"."Key Words"`` to topic ``eco2.we_ird.Key_Words``: the catalog
    lookup uses the real names from the events' ``source`` block (also when a table with the
    sanitized names exists too), else the catalog table whose topic name is the topic's."""
    import psycopg

    with psycopg.connect(eco2_db, autocommit=True) as conn:
        conn.execute('CREATE SCHEMA "we ird"; CREATE SCHEMA we_ird')
        conn.execute(
            'CREATE TABLE "we ird"."Key Words" ("select" bigint, "a""b" text, PRIMARY KEY ("a""b", "select"))'
        )
        conn.execute('CREATE TABLE we_ird."Key_Words" (decoy bigint PRIMARY KEY)')  # same topic name
        conn.execute('CREATE TABLE public."ü 名前" ("id x" bigint PRIMARY KEY)')
        dbname = conn.info.dbname
    store = LocalStore(tmp_path / "lake")
    odd = "eco2.we_ird.Key_Words"
    fields = [("select", ConnectSchema("int64")), ("a_b", ConnectSchema("string"))]
    rec = dbz.record("r", after={"select": 1, "a_b": "x"}, table="Key Words", schema="we ird", lsn=10)
    dbz.write(store, odd, dbz.envelope(odd, fields), [rec], [0])
    # an unwrapped topic (no source block): found by its sanitized name alone
    unwrapped = "eco2.public.____"
    value = dbz.value_schema(unwrapped, [("id_x", ConnectSchema("int64")), ("__op", dbz.opt("string"))])
    dbz.write(store, unwrapped, value, [{"id_x": 1, "__op": "r"}], [0])

    found = discover(load_config(config_copy), LakeReader(store), eco2_db)
    assert found == [
        Discovered(unwrapped, ("id x",), f"catalog {dbname}"),
        Discovered(odd, ('a"b', "select"), f"catalog {dbname}"),
    ]
    assert [f.table for f in found] == ["public.ü 名前", "we ird.Key Words"]

    result = runner.invoke(
        app,
        ["discover", "--lake", str(tmp_path / "lake"), "--tables-config", str(config_copy), "--dsn", eco2_db],
    )
    assert result.exit_code == 0, result.output
    config = load_config(config_copy)
    assert config.get(odd).primary_key == ('a"b', "select")
    assert config.get(unwrapped).primary_key == ("id x",)

    # without the source block, two tables with that topic name: named, not guessed
    with psycopg.connect(eco2_db, autocommit=True) as conn:
        conn.execute('CREATE TABLE public."ü 名 " (id bigint PRIMARY KEY)')
    found = discover(load_config(DEFAULT_PATH), LakeReader(store), eco2_db)
    [ambiguous] = [f for f in found if f.topic == unwrapped]
    assert ambiguous.primary_key is None
    assert "could be any of public.ü 名 , public.ü 名前" in ambiguous.note
