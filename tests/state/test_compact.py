"""`lakehouse compact` end to end on generated lakes: equal to the oracle for every table and every
lake shape, incremental steps equal one full build, late files, idempotence, schema evolution,
bad input, keys from companions, personal data, S3, export and maintenance."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.bq_emulator import fold_engine
from support.lake_copy import copy_companions, copy_objects, value_keys
from support.oracle import assert_equals_oracle, lake_state, plain_config, state_of

from lakehouse.config import ConfigError, TableConfig, TablesConfig, load_config
from lakehouse.generate import GeneratorOptions, generate_lake
from lakehouse.lake.reader import LakeReader
from lakehouse.lake.store import LocalStore
from lakehouse.state.compact import CompactOptions, compact
from lakehouse.state.engine import LocalEngine
from lakehouse.state.export import visible_rows
from lakehouse.state.maintain import maintain
from lakehouse.state.table import StateTable

KEY = "test-pseudonym-key"
LAKES = {
    "envelope-replays-pk-truncate-schema": GeneratorOptions(
        events=12_000,
        seed=3,
        flush_size=400,
        replays=True,
        pk_changes=True,
        truncates=True,
        schema_change=True,
    ),
    "three-partitions": GeneratorOptions(
        events=12_000, seed=4, flush_size=300, partitions=3, replays=True, pk_changes=True, truncates=True
    ),
    "unwrap-hourly": GeneratorOptions(
        events=8_000, seed=5, flush_size=500, shape="unwrap", partitioner="hourly", replays=True
    ),
    "json-embedded-schemas": GeneratorOptions(
        events=6_000, seed=6, flush_size=500, format="json", json_schemas=True, pk_changes=True
    ),
}


@pytest.fixture(autouse=True)
def _pseudonym_key(monkeypatch):
    monkeypatch.setenv("LAKEHOUSE_PSEUDONYM_KEY", KEY)


@pytest.fixture(scope="session")
def lakes(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("lakes")
    out = {}
    for name, opts in LAKES.items():
        generate_lake(root / name, opts)
        out[name] = root / name
    return out


@pytest.mark.parametrize("name", list(LAKES))
def test_full_build_equals_oracle(lakes, tmp_path, name):
    config = plain_config()
    results = compact(
        str(lakes[name]), str(tmp_path / "state"), config, options=CompactOptions(batch_events=900)
    )
    assert all(r.status == "applied" for r in results if r.objects), [(r.table, r.error) for r in results]
    assert sum(r.commits for r in results) > len(results)  # several batches per table
    assert_equals_oracle(lakes[name], tmp_path / "state", config)
    # a second run finds nothing new and changes nothing
    again = compact(str(lakes[name]), str(tmp_path / "state"), config)
    assert {r.status for r in again} == {"up-to-date"}
    assert [r.rows for r in again] == [r.rows for r in results]


def test_incremental_steps_equal_one_build(lakes, tmp_path):
    src = lakes["three-partitions"]
    config = plain_config()
    by_partition: dict[tuple, list[str]] = {}
    for objs in LakeReader(str(src)).scan().objects.values():
        for o in sorted(objs, key=lambda o: o.ref):
            by_partition.setdefault((o.ref.topic, o.ref.kafka_partition), []).append(o.key)
    lake = tmp_path / "lake"
    copy_companions(src, lake)
    applied = 0
    for step in range(4):
        # every partition's next quarter of objects, in Kafka order
        for keys in by_partition.values():
            n = len(keys)
            copy_objects(src, lake, keys[step * n // 4 : (step + 1) * n // 4])
        results = compact(
            str(lake), str(tmp_path / "state"), config, options=CompactOptions(batch_events=1_500)
        )
        assert not [r for r in results if r.failed]
        assert {r.status for r in results} <= {"applied", "up-to-date"}  # in order: never a rebuild
        applied += sum(r.objects for r in results)
    assert applied == sum(len(v) for v in by_partition.values())  # every object applied exactly once
    compact(str(src), str(tmp_path / "full"), config)
    for entry in config.tables:
        assert state_of(tmp_path / "state", entry.table, entry.primary_key) == state_of(
            tmp_path / "full", entry.table, entry.primary_key
        ), entry.table


def test_late_object_rebuilds_the_table(lakes, tmp_path):
    src = lakes["envelope-replays-pk-truncate-schema"]
    config = plain_config()
    listing = LakeReader(str(src)).scan()
    scans = [o.key for o in listing.objects["eco2.scan.scans"]]
    late = scans[1]
    lake = tmp_path / "lake"
    copy_companions(src, lake)
    copy_objects(src, lake, [k for k in value_keys(src) if k != late])
    first = {r.table: r for r in compact(str(lake), str(tmp_path / "state"), config)}
    assert first["scan.scans"].status == "applied"
    copy_objects(src, lake, [late])
    second = {r.table: r for r in compact(str(lake), str(tmp_path / "state"), config)}
    assert second["scan.scans"].status == "rebuilt"
    assert any(late in n for n in second["scan.scans"].notes)
    assert second["scan.feedback"].status == "up-to-date"  # other tables untouched
    assert_equals_oracle(src, tmp_path / "state", config)


@settings(
    max_examples=int(os.environ.get("COMPACT_EXAMPLES", "6")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_property_any_batches_any_order_any_repeats(lakes, tmp_path_factory, data):
    """Objects arrive in any order and groups, runs repeat: the end state equals one full build."""
    _any_batches_any_order_any_repeats(LocalEngine(), lakes, tmp_path_factory, data)


@pytest.mark.slow
@settings(
    max_examples=int(os.environ.get("COMPACT_BIGQUERY_EXAMPLES", "2")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_property_any_batches_any_order_any_repeats_on_bigquery(lakes, tmp_path_factory, data, request):
    """The same on the BigQuery engine (the emulator: a few jobs per batch, so fewer examples)."""
    engine, _ = fold_engine("bigquery", request)
    _any_batches_any_order_any_repeats(engine, lakes, tmp_path_factory, data)


def _any_batches_any_order_any_repeats(engine, lakes, tmp_path_factory, data) -> None:
    src = lakes["three-partitions"]
    config = TablesConfig(
        tables=tuple(
            t
            for t in plain_config().tables
            if t.topic in ("eco2.scan.scans", "eco2.scan.classification_results", "eco2.scan.llm_call_log")
        )
    )
    work = tmp_path_factory.mktemp("prop")
    keys = [k for k in value_keys(src) if any(f"/{t.topic}/" in f"/{k}" for t in config.tables)]
    order = data.draw(st.permutations(keys))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(keys)), max_size=3)))
    lake = work / "lake"
    copy_companions(src, lake)
    start = 0
    for cut in [*cuts, len(keys)]:
        copy_objects(src, lake, order[start:cut])
        start = max(start, cut)
        if start == 0:  # nothing landed yet: an empty lake is an error, not "up to date"
            continue
        for _ in range(data.draw(st.integers(1, 2))):
            batch = data.draw(st.sampled_from([700, 5_000]))
            results = compact(
                str(lake),
                str(work / "state"),
                config,
                options=CompactOptions(batch_events=batch, engine=engine),
            )
            assert not [r for r in results if r.failed], [r.error for r in results]
    assert_equals_oracle(src, work / "state", config)


def test_schema_evolution_added_and_widened(lakes, tmp_path):  # dropped columns: tests/test_truth.py
    src = lakes["envelope-replays-pk-truncate-schema"]
    compact(str(src), str(tmp_path / "state"), plain_config(), options=CompactOptions(batch_events=3_000))
    rows = visible_rows(str(tmp_path / "state"), "scan.llm_call_log")
    # latency_ms was widened int -> bigint, cached_tokens added mid-stream (null for older rows)
    assert rows.schema.field("latency_ms").type == pa.int64()
    cached = rows.column("cached_tokens")
    assert 0 < cached.null_count < len(cached)


def test_incompatible_change_stops_that_table_only(lakes, tmp_path):
    src = lakes["envelope-replays-pk-truncate-schema"]
    lake = tmp_path / "lake"
    shutil.copytree(src, lake)
    listing = LakeReader(str(lake)).scan()
    victim = listing.objects["eco2.scan.scans"][-1].key
    # rewrite the newest object with user_id (bigint) as a string column: an incompatible change
    t = pq.read_table(lake / victim)
    meta = pq.ParquetFile(lake / victim).metadata.metadata
    schema_json = meta[b"parquet.avro.schema"].decode()
    assert '"user_id"' in schema_json
    import json

    doc = json.loads(schema_json)

    def patch(node):
        if isinstance(node, dict):
            if node.get("name") == "user_id":
                node["type"] = ["null", "string"] if isinstance(node["type"], list) else "string"
            for v in node.values():
                patch(v)
        elif isinstance(node, list):
            for v in node:
                patch(v)

    patch(doc)

    def retype(col: pa.ChunkedArray, field: pa.Field):
        if pa.types.is_struct(field.type) and field.name in ("before", "after"):
            arr = col.combine_chunks()
            children = [
                arr.field(i) if f.name != "user_id" else arr.field(i).cast(pa.string())
                for i, f in enumerate(field.type)
            ]
            return pa.StructArray.from_arrays(
                children,
                fields=[f if f.name != "user_id" else pa.field("user_id", pa.string()) for f in field.type],
                mask=arr.is_null(),
            )
        return col

    t2 = pa.table({f.name: retype(t.column(f.name), f) for f in t.schema})
    t2 = t2.replace_schema_metadata({**meta, b"parquet.avro.schema": json.dumps(doc).encode()})
    pq.write_table(t2, lake / victim)
    results = {r.table: r for r in compact(str(lake), str(tmp_path / "state"), plain_config())}
    bad = results["scan.scans"]
    assert bad.failed and "user_id" in bad.error and victim in bad.error and "scan.scans" in bad.error
    assert "from int64 to string" in bad.error  # old and new type
    assert (
        "new Debezium snapshot" in bad.error and "--full-refresh --table scan.scans" in bad.error
    )  # recovery
    assert not StateTable(str(tmp_path / "state"), "scan.scans").exists()  # nothing committed
    assert all(r.status == "applied" for name, r in results.items() if name != "scan.scans")


def test_unreadable_object_names_it_and_commits_nothing_for_that_table(lakes, tmp_path):
    src = lakes["envelope-replays-pk-truncate-schema"]
    lake = tmp_path / "lake"
    shutil.copytree(src, lake)
    config = plain_config()
    compact(str(lake), str(tmp_path / "state"), config)
    before = StateTable(str(tmp_path / "state"), "scan.scans")
    before.load()
    version = before.version
    # a new object arrives broken (truncated upload)
    listing = LakeReader(str(lake)).scan()
    last = listing.objects["eco2.scan.scans"][-1]
    broken = last.key.replace(f"+{last.ref.start_offset:010d}.", f"+{last.ref.start_offset + 10**6:010d}.")
    data = (lake / last.key).read_bytes()
    (lake / broken).write_bytes(data[: len(data) // 2])
    results = {r.table: r for r in compact(str(lake), str(tmp_path / "state"), config)}
    assert results["scan.scans"].failed and broken in results["scan.scans"].error
    after = StateTable(str(tmp_path / "state"), "scan.scans")
    after.load()
    assert after.version == version
    assert results["scan.feedback"].status == "up-to-date"


def test_keys_from_companions_and_missing_key_is_a_config_error(tmp_path):
    lake = tmp_path / "lake"
    generate_lake(lake, GeneratorOptions(events=3_000, seed=8, store_keys=True, flush_size=500))
    topics = LakeReader(str(lake)).scan().topics
    keyless = TablesConfig(tables=tuple(TableConfig(topic=t) for t in topics))
    results = compact(str(lake), str(tmp_path / "state"), keyless)
    assert all(not r.failed for r in results)
    assert_equals_oracle(lake, tmp_path / "state", plain_config())
    # without companions and without primary_key: the error says how to configure it
    lake2 = tmp_path / "lake2"
    generate_lake(lake2, GeneratorOptions(events=1_000, seed=8))
    results = compact(str(lake2), str(tmp_path / "state2"), keyless)
    assert all(r.failed and "primary_key" in r.error and "store.kafka.keys" in r.error for r in results)


def test_personal_data_policy(lakes, tmp_path, monkeypatch):
    src = lakes["envelope-replays-pk-truncate-schema"]
    config = load_config()  # users: password_hash dropped, email pseudonymised
    compact(str(src), str(tmp_path / "state"), config, tables=["auth.users"])
    users = visible_rows(str(tmp_path / "state"), "auth.users")
    assert "password_hash" not in users.column_names
    raw = lake_state(LakeReader(str(src)), "eco2.auth.users", ("id",))
    import hashlib
    import hmac

    for row in users.to_pylist()[:50]:
        email = raw[(row["id"],)]["email"]
        assert row["email"] == hmac.new(KEY.encode(), email.encode(), hashlib.sha256).hexdigest()
    monkeypatch.delenv("LAKEHOUSE_PSEUDONYM_KEY")
    results = compact(str(src), str(tmp_path / "state2"), config, tables=["auth.users"])
    assert results[0].failed and "LAKEHOUSE_PSEUDONYM_KEY" in results[0].error
    with pytest.raises(ConfigError):
        compact(str(src), str(tmp_path / "state2"), config, tables=["no.such_table"])


def test_export_cli_types_and_summary(lakes, tmp_path):
    src = lakes["envelope-replays-pk-truncate-schema"]
    cfg = tmp_path / "tables.yaml"
    cfg.write_text(
        "tables:\n" + "".join(f"  - topic: {t.topic}\n    primary_key: [id]\n" for t in load_config().tables)
    )
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "lakehouse.cli",
            "compact",
            "--lake",
            str(src),
            "--state",
            str(tmp_path / "state"),
            "--tables-config",
            str(cfg),
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    for word in ("objects", "events", "inserts", "updates", "deletes", "rows", "seconds", "scan.scans"):
        assert word in run.stdout
    out = tmp_path / "scans.parquet"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "lakehouse.cli",
            "export",
            "--state",
            str(tmp_path / "state"),
            "--table",
            "scan.scans",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    exported = pq.read_table(out)
    assert not [c for c in exported.column_names if c.startswith("__")]
    for f in exported.schema:
        if pa.types.is_timestamp(f.type):
            assert f.type.unit == "us"
    assert exported.schema.field("id").type == pa.string()  # uuid as text
    assert exported.num_rows == len(lake_state(LakeReader(str(src)), "eco2.scan.scans", ("id",)))


def test_maintenance_merges_files_and_keeps_the_state(lakes, tmp_path):
    src = lakes["three-partitions"]
    config = plain_config()
    compact(str(src), str(tmp_path / "state"), config, options=CompactOptions(batch_events=800))
    before = state_of(tmp_path / "state", "scan.rag_retrievals", ("id",))
    result = maintain(str(tmp_path / "state"), "scan.rag_retrievals", retention_hours=0)
    assert result.files_vacuumed > 0 and result.manifests_removed > 0
    assert state_of(tmp_path / "state", "scan.rag_retrievals", ("id",)) == before
    # the table still compacts incrementally after maintenance
    again = compact(str(src), str(tmp_path / "state"), config, tables=["scan.rag_retrievals"])
    assert again[0].status == "up-to-date"


@pytest.mark.s3
def test_lake_and_state_on_s3(lakes, moto_s3, tmp_path):
    src = lakes["three-partitions"]
    lake_uri = moto_s3("lake")
    store = LocalStore(src)
    target = __import__("lakehouse.lake.store", fromlist=["open_store"]).open_store(lake_uri)
    for info in store.list(""):
        target.put_bytes(info.key, store.get_bytes(info.key))
    state_uri = moto_s3("state")
    config = plain_config()
    results = compact(lake_uri, state_uri, config, options=CompactOptions(batch_events=3_000))
    assert all(not r.failed for r in results), [r.error for r in results]
    compact(str(src), str(tmp_path / "local"), config)
    for entry in config.tables:
        got = visible_rows(state_uri, entry.table)
        want = visible_rows(str(tmp_path / "local"), entry.table)
        assert got.sort_by("id").equals(want.sort_by("id")), entry.table
    assert {r.status for r in compact(lake_uri, state_uri, config)} == {"up-to-date"}


def test_summary_counts_add_up(lakes, tmp_path):
    results = compact(str(lakes["json-embedded-schemas"]), str(tmp_path / "state"), plain_config())
    for r in results:
        assert r.rows == r.inserts - r.deletes  # built from nothing: net inserts
        visible = visible_rows(str(tmp_path / "state"), r.table)
        assert visible.num_rows == r.rows
        assert pc.count_distinct(visible.column("id")).as_py() == r.rows


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["local", "bigquery"])
def test_kill9_at_any_point_leaves_a_committed_state_and_the_next_run_completes(engine, tmp_path, request):
    """`lakehouse compact` killed with SIGKILL at random moments: every table always reads as the
    state of exactly the objects its manifest lists; the run after the last kill ends equal to
    the oracle. On both engines (bigquery: the emulator; a kill may land inside a BigQuery job,
    whose working tables expire on their own)."""
    import random
    import signal
    import time

    lake = tmp_path / "lake"
    generate_lake(
        lake,
        GeneratorOptions(
            events=40_000,
            seed=11,
            flush_size=500,
            partitions=2,
            replays=True,
            pk_changes=True,
            truncates=True,
            schema_change=True,
        ),
    )
    cfg = tmp_path / "tables.yaml"
    cfg.write_text(
        "tables:\n" + "".join(f"  - topic: {t.topic}\n    primary_key: [id]\n" for t in load_config().tables)
    )
    state = tmp_path / "state"
    _, env = fold_engine(engine, request)
    env = {**os.environ, **env}
    # a BigQuery fold is a few jobs (about a second on the emulator): fewer, larger batches
    batch, pause = ("400", (0.8, 3.0)) if engine == "local" else ("4000", (3.0, 12.0))
    cmd = [
        sys.executable,
        "-m",
        "lakehouse.cli",
        "compact",
        "--lake",
        str(lake),
        "--state",
        str(state),
        "--tables-config",
        str(cfg),
        "--batch-events",
        batch,
    ]
    rng = random.Random(11)
    kills = 0
    for _ in range(6):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        time.sleep(rng.uniform(*pause))
        if proc.poll() is not None:
            break
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        kills += 1
        _assert_state_matches_its_manifest(lake, state, plain_config(), tmp_path / f"check{kills}")
    assert kills >= 2, "the run finished before it could be killed: make the lake bigger"
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    # the last run really folded on the engine asked for (the CLI names it when not local)
    assert ("engine bigquery:" in done.stdout) == (engine == "bigquery"), done.stdout
    assert_equals_oracle(lake, state, plain_config())


def _assert_state_matches_its_manifest(lake: Path, state: Path, config: TablesConfig, work: Path) -> None:
    for entry in config.tables:
        st = StateTable(str(state), entry.table)
        if st.load() is None:
            continue
        applied = st.applied().column("key").to_pylist()
        partial = work / entry.table
        copy_companions(lake, partial)
        copy_objects(lake, partial, applied)
        sub = TablesConfig(tables=(entry,))
        compact(str(partial), str(work / "state"), sub)
        assert state_of(state, entry.table, entry.primary_key) == state_of(
            work / "state", entry.table, entry.primary_key
        ), entry.table


def test_an_unexpected_error_stops_only_its_table(lakes, tmp_path, monkeypatch):
    import lakehouse.state.engine as engine_module

    real_fold = engine_module.fold

    def failing_fold(events, *args, **kwargs):  # e.g. Arrow's 2 GiB string offset overflow
        if events.num_rows and events.column("__topic")[0].as_py() == "eco2.scan.scans":
            raise pa.ArrowInvalid("offset overflow while concatenating arrays")
        return real_fold(events, *args, **kwargs)

    monkeypatch.setattr(engine_module, "fold", failing_fold)
    results = {
        r.table: r
        for r in compact(str(lakes["json-embedded-schemas"]), str(tmp_path / "state"), plain_config())
    }
    assert results["scan.scans"].failed and "ArrowInvalid" in results["scan.scans"].error
    assert not StateTable(str(tmp_path / "state"), "scan.scans").exists()
    assert all(r.status == "applied" for name, r in results.items() if name != "scan.scans")


def test_key_change_without_txid_takes_toast_value_when_its_d_half_comes_later(dbz, tmp_path):
    """A primary-key change (d of key 1 + c of key 2, one LSN, no txId) whose c half, in another
    Kafka partition, is compacted first: its unchanged-TOAST column waits, and takes key 1's value
    once the d half arrives in a later run (the wait is recorded with txId -1)."""
    from lakehouse.lake.semantic import TOAST_PLACEHOLDER

    topic = "p.public.docs"
    config = TablesConfig(tables=(TableConfig(topic=topic, primary_key=("id",)),))
    schema = dbz.envelope(topic, [("id", dbz.req("int64")), ("body", dbz.opt("string"))])
    store, lake, state = LocalStore(tmp_path / "lake"), str(tmp_path / "lake"), str(tmp_path / "state")
    t0 = 1_796_000_000_000_000
    created = dbz.record("c", after={"id": 1, "body": "long text"}, ts_us=t0, lsn=40, tx_id=7)
    moved_in = dbz.record("c", after={"id": 2, "body": TOAST_PLACEHOLDER}, ts_us=t0 + 5, lsn=50, tx_id=None)
    moved_out = dbz.record("d", before={"id": 1, "body": None}, ts_us=t0 + 5, lsn=50, tx_id=None)
    dbz.write(store, topic, schema, [created], [0], partition=0)
    dbz.write(store, topic, schema, [moved_in], [0], partition=1)
    assert not [r.error for r in compact(lake, state, config) if r.failed]
    assert {r["id"]: r["body"] for r in visible_rows(state, "public.docs").to_pylist()} == {
        1: "long text",
        2: None,
    }
    dbz.write(store, topic, schema, [moved_out], [1], partition=0)
    assert not [r.error for r in compact(lake, state, config) if r.failed]
    assert {r["id"]: r["body"] for r in visible_rows(state, "public.docs").to_pylist()} == {2: "long text"}
