"""`lakehouse capture` against a real PostgreSQL 15 with the real Debezium 3.6.3 engine.

Each test runs the CLI in a subprocess (the JVM lives there; kill -9 needs a process), reads the
lake with the reader, applies it with the test oracle and compares with ``SELECT *``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pyarrow.parquet as pq
import pytest
from support.capture_process import Capture, _no_capture_left_running, wait_for  # noqa: F401 (autouse fixture)
from support.capture_steps import STREAM_STEPS, TABLES, lake_matches_pg, seed
from support.oracle import compare, lake_state, op_counts, pg_state

from lakehouse.lake.connect import avro_schema_json, parse_avro_schema
from lakehouse.lake.reader import LakeReader
from lakehouse.lake.semantic import TOAST_PLACEHOLDER
from lakehouse.lake.store import LocalStore
from lakehouse.warehouse.duckdb_warehouse import target_name

pytestmark = pytest.mark.slow


def test_snapshot_and_streaming_match_postgres(eco2_db, tmp_path):
    seed(eco2_db)
    lake, state = tmp_path / "lake", tmp_path / "state"
    cap = Capture(eco2_db, lake, state, "--flush-size", "25", "--progress-interval", "1").start()
    wait_for(lambda: lake_matches_pg(lake, eco2_db), cap, what="the snapshot")
    with psycopg.connect(eco2_db, autocommit=True) as conn:
        for step in STREAM_STEPS:
            conn.execute(step)
    wait_for(lambda: lake_matches_pg(lake, eco2_db), cap, what="streamed changes")
    stats = cap.stop()
    assert lake_matches_pg(lake, eco2_db) is True

    reader = LakeReader(LocalStore(lake))
    feedback = reader.read_changes("eco2.scan.feedback")
    assert {"r", "c", "u", "d"} <= set(op_counts(feedback))
    rag = reader.read_changes("eco2.scan.rag_retrievals")
    assert op_counts(rag).get("t") == 1
    cls = reader.read_changes("eco2.scan.classification_results").to_pylist()
    toast_update = [e for e in cls if e["__op"] == "u" and e["id"] == 3]
    assert toast_update and toast_update[0]["rationale"] == TOAST_PLACEHOLDER
    pk_delete = [e for e in cls if e["__op"] == "d" and e["id"] == 9]
    pk_create = [e for e in cls if e["__op"] == "c" and e["id"] == 100000]
    assert pk_delete and pk_create
    assert (pk_delete[0]["__lsn"], pk_delete[0]["__tx_id"]) == (
        pk_create[0]["__lsn"],
        pk_create[0]["__tx_id"],
    )
    assert pk_create[0]["rationale"] == TOAST_PLACEHOLDER  # observed Debezium 3.6.3 behaviour (spec §5.5)
    calls = reader.read_changes("eco2.scan.llm_call_log")
    assert "cached_tokens" in calls.column_names
    deletes = sum(op_counts(reader.read_changes(t)).get("d", 0) for t in TABLES)
    assert deletes == 5  # llm_call_log 2, feedback 1, the PK change, the account closure
    assert stats["tombstones"] == deletes  # one tombstone per delete: an offset, never a row
    assert stats["events"] == sum(reader.read_changes(t).num_rows for t in TABLES)

    # every object: the sink's name, the Avro schema exactly as AvroData wrote it, headers companions
    store = LocalStore(lake)
    values = [o.key for o in store.list("topics/") if ".keys." not in o.key and ".headers." not in o.key]
    assert values and all(k.endswith(".snappy.parquet") and "/partition=0/" in k for k in values)
    for key in values:
        footer = pq.ParquetFile(store.open_input(key)).metadata.metadata[b"parquet.avro.schema"].decode()
        assert avro_schema_json(parse_avro_schema(footer)) == footer, key
    headers = [o.key for o in store.list("topics/eco2.scan.classification_results/") if ".headers." in o.key]
    header_rows = [
        h for k in headers for row in pq.read_table(store.path(k)).column("headers").to_pylist() for h in row
    ]
    assert any(h["key"] == "__debezium.newkey" and "100000" in h["value"] for h in header_rows)
    assert not list(lake.rglob("*.lakehouse-tmp"))

    # rotation: never more than flush.size rows; full files from flush.size, short ones from the
    # scheduled rotation (1 s); a new file whenever the value schema changed
    rows = {k: pq.ParquetFile(store.open_input(k)).metadata.num_rows for k in values}
    assert max(rows.values()) == 25 and min(rows.values()) < 25
    calls = sorted(
        (k for k in values if "llm_call_log" in k), key=lambda k: int(k.rsplit("+", 1)[1].split(".")[0])
    )
    footers = [pq.ParquetFile(store.open_input(k)).metadata.metadata[b"parquet.avro.schema"] for k in calls]
    with_cached = ["cached_tokens" in f.decode() for f in footers]
    assert with_cached[-1] and not with_cached[0] and with_cached == sorted(with_cached)
    log = cap.log.read_text()
    assert "events " in log and "/s)" in log and "objects" in log and "lag" in log
    assert "stopped:" in log  # SIGTERM: files written, offsets committed, clean exit


def _workload(dsn: str, start: int, n: int, stop: threading.Event) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for i in range(start, start + n):
            if stop.is_set():
                return
            with conn.transaction():
                conn.execute(
                    """INSERT INTO scan.llm_call_log (scan_id, stage, model, latency_ms, prompt_tokens,
                                completion_tokens, status, created_at)
                                VALUES (NULL, 'vision', 'gpt-4o', %s, 10, 5, 'ok', now())""",
                    (i,),
                )
                conn.execute("UPDATE scan.scans SET status = %s WHERE user_id = %s", (f"s{i}", 1 + i % 20))
                if i % 7 == 0:
                    conn.execute(
                        "DELETE FROM scan.llm_call_log WHERE id = (SELECT min(id) FROM scan.llm_call_log)"
                    )
            time.sleep(0.01)


def test_kill9_during_streaming_loses_nothing(eco2_db, tmp_path):
    seed(eco2_db)
    lake, state = tmp_path / "lake", tmp_path / "state"
    cap = Capture(eco2_db, lake, state, "--flush-size", "50").start()
    wait_for(lambda: lake_matches_pg(lake, eco2_db), cap, what="the snapshot")
    stop = threading.Event()
    writer = threading.Thread(target=_workload, args=(eco2_db, 0, 400, stop))
    writer.start()
    try:
        time.sleep(3)
        cap.kill9()  # mid-stream, files and offsets in whatever state they are
        assert writer.is_alive(), "the workload ended before the kill; make it longer"
        assert lake_matches_pg(lake, eco2_db) is not True  # the lake was behind when killed
        time.sleep(1)
        cap = Capture(eco2_db, lake, state, "--flush-size", "50").start()
        writer.join()
    finally:
        stop.set()
        writer.join()
    wait_for(lambda: lake_matches_pg(lake, eco2_db), cap, timeout=120, what="catch-up after kill -9")
    cap.stop()
    # anything written twice is an exact replay: same identity, same row image
    events = LakeReader(LocalStore(lake)).read_changes("eco2.scan.llm_call_log").to_pylist()
    seen: dict[tuple, dict] = {}
    for e in events:
        ident = (e["id"], e["__op"], e["__lsn"], e["__tx_id"])
        image = {k: v for k, v in e.items() if not k.startswith("__")}
        assert seen.setdefault(ident, image) == image


def test_kill9_during_snapshot_loses_nothing(eco2_db, tmp_path):
    seed(eco2_db, users=50, scans=300, calls=60_000)
    lake, state = tmp_path / "lake", tmp_path / "state"
    cap = Capture(eco2_db, lake, state, "--flush-size", "2000").start()
    store = LocalStore(lake)

    def some_snapshot_files():
        return any(store.list("topics/eco2.scan.llm_call_log/")) or "no snapshot files yet"

    wait_for(some_snapshot_files, cap, what="the first snapshot files")
    cap.kill9()
    reader = LakeReader(store)
    partial = reader.read_changes("eco2.scan.llm_call_log").num_rows
    assert partial < 60_000, "the snapshot finished before the kill; the test needs a bigger table"
    cap = Capture(eco2_db, lake, state, "--flush-size", "2000").start()
    wait_for(lambda: lake_matches_pg(lake, eco2_db), cap, timeout=180, what="the re-snapshot")
    cap.stop()


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lakehouse.cli", "capture", *args], capture_output=True, text=True, timeout=120
    )


def test_unreachable_database_is_a_clear_error(tmp_path):
    from lakehouse.pg.cluster import free_port

    port = free_port()
    proc = _run_cli(
        "--dsn",
        f"host=127.0.0.1 port={port} user=postgres password=s3cret dbname=eco2",
        "--lake",
        str(tmp_path / "lake"),
        "--state-dir",
        str(tmp_path / "state"),
    )
    assert proc.returncode == 2
    assert f"cannot connect to PostgreSQL at postgres@127.0.0.1:{port}/eco2" in proc.stderr
    assert "s3cret" not in proc.stderr + proc.stdout
    assert not (tmp_path / "lake").exists()


def test_wal_level_not_logical_is_a_clear_error(tmp_path):
    from lakehouse.pg.cluster import DEFAULT_SETTINGS, PgCluster

    with PgCluster.temporary(settings={**DEFAULT_SETTINGS, "wal_level": "replica"}) as cluster:
        proc = _run_cli(
            "--dsn", cluster.dsn(), "--lake", str(tmp_path / "lake"), "--state-dir", str(tmp_path / "state")
        )
    assert proc.returncode == 2
    assert "wal_level=replica" in proc.stderr and "wal_level=logical" in proc.stderr
    assert not (tmp_path / "lake").exists()


def test_table_without_primary_key_is_a_clear_error(eco2_db, tmp_path):
    with psycopg.connect(eco2_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE scan.events_raw (payload text)")
    proc = _run_cli(
        "--dsn", eco2_db, "--lake", str(tmp_path / "lake"), "--state-dir", str(tmp_path / "state")
    )
    assert proc.returncode == 2
    assert "scan.events_raw" in proc.stderr and "primary key" in proc.stderr
    assert not (tmp_path / "lake").exists()
    # naming the other tables works
    proc = _run_cli(
        "--dsn",
        eco2_db,
        "--lake",
        str(tmp_path / "lake"),
        "--state-dir",
        str(tmp_path / "state"),
        "--tables",
        "scan.events_raw",
    )
    assert proc.returncode == 2 and "scan.events_raw" in proc.stderr


def test_pg_cli_start_workload_stop(tmp_path):
    """The throwaway-cluster script: start (with the Eco2 databases), run the workload, remove."""
    import tempfile
    import uuid

    from typer.testing import CliRunner

    from lakehouse.cli import app

    runner = CliRunner()
    folder = Path(tempfile.gettempdir()) / f"lakehouse-pg-cli-{uuid.uuid4().hex[:8]}"
    started = runner.invoke(app, ["pg", "start", "--dir", str(folder)])
    assert started.exit_code == 0, started.output
    dsn = started.stdout.strip().splitlines()[-1]
    try:
        ran = runner.invoke(
            app,
            [
                "pg",
                "workload",
                "--auth-dsn",
                dsn.replace("dbname=postgres", "dbname=auth"),
                "--scan-dsn",
                dsn.replace("dbname=postgres", "dbname=scan"),
                "--scans",
                "20",
                "--users",
                "5",
            ],
        )
        assert ran.exit_code == 0, ran.output
        with psycopg.connect(dsn.replace("dbname=postgres", "dbname=scan")) as conn:
            assert conn.execute("SELECT count(*) FROM scan.scans").fetchone()[0] == 20
    finally:
        stopped = runner.invoke(app, ["pg", "stop", "--dir", str(folder)])
    assert stopped.exit_code == 0 and not folder.exists()


def test_store_keys_companions_and_truncate_refusal(eco2_db, tmp_path):
    seed(eco2_db, users=5, scans=6, calls=12)
    lake, state = tmp_path / "lake", tmp_path / "state"
    proc = _run_cli(
        "--dsn",
        eco2_db,
        "--lake",
        str(lake),
        "--state-dir",
        str(state),
        "--store-keys",
        "--stop-when-idle",
        "2",
        "--rotate-interval",
        "1",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    reader = LakeReader(LocalStore(lake))
    assert reader.key_columns("eco2.scan.llm_call_log") == ("id",)
    assert reader.key_columns("eco2.scan.scans") == ("id",)
    # a truncate has a null key: the S3 sink fails on it with store.kafka.keys=true, and so do we
    with psycopg.connect(eco2_db, autocommit=True) as conn:
        conn.execute("TRUNCATE scan.rag_retrievals")
    proc = _run_cli(
        "--dsn",
        eco2_db,
        "--lake",
        str(lake),
        "--state-dir",
        str(state),
        "--store-keys",
        "--stop-when-idle",
        "2",
        "--rotate-interval",
        "1",
    )
    assert proc.returncode == 2
    assert "null key" in proc.stderr and "eco2.scan.rag_retrievals" in proc.stderr


@pytest.mark.s3
def test_capture_into_s3(eco2_db, moto_s3, tmp_path):
    seed(eco2_db, users=5, scans=10, calls=20)
    uri = moto_s3("captured")
    proc = _run_cli(
        "--dsn",
        eco2_db,
        "--lake",
        uri,
        "--state-dir",
        str(tmp_path / "state"),
        "--stop-when-idle",
        "2",
        "--rotate-interval",
        "1",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    reader = LakeReader(uri)
    for topic, (table, key) in TABLES.items():
        assert compare(lake_state(reader, topic, key), pg_state(eco2_db, table, key)) == [], (
            topic,
            proc.stdout,
        )


# --------------------------------------------------------------------------------------------
# issue 15: offsets belong to the lake they feed; names Avro and Kafka cannot hold
# --------------------------------------------------------------------------------------------


def _capture_once(dsn: str, lake: Path, state: Path, *extra: str) -> subprocess.CompletedProcess:
    """One capture run to the end of the snapshot and a short idle stream."""
    return _run_cli(
        "--dsn",
        dsn,
        "--lake",
        str(lake),
        "--state-dir",
        str(state),
        "--stop-when-idle",
        "2",
        "--rotate-interval",
        "1",
        "--heap-mb",
        "512",
        *extra,
    )


def _engine(dsn: str, **opts) -> str:
    """The engine name a capture of this database gets (the slot is ``lakehouse_<engine>``)."""
    from lakehouse.capture.engine import CaptureOptions, engine_name
    from lakehouse.capture.preflight import Source

    dbname = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
    return engine_name(CaptureOptions(dsn=dsn, **opts), Source("", 0, "", dbname, ()))


def _slots(dsn: str) -> list[str]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return [
            r[0]
            for r in conn.execute(
                "SELECT slot_name FROM pg_replication_slots WHERE database = current_database() ORDER BY 1"
            ).fetchall()
        ]


def _drop_slot(dsn: str, slot: str) -> None:
    """Drop a slot once its walsender (of a capture that just exited) has let go of it."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for _ in range(50):
            try:
                conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
                return
            except psycopg.errors.ObjectInUse:
                time.sleep(0.2)
    raise AssertionError(f"slot {slot} stayed in use")


def _recreate_database(pg_cluster, dsn: str) -> None:
    """Drop the database (slots included) and create it again under the same name, as a restore
    or a new throwaway cluster does: same name, another database."""
    from support.pgdb import drop_database

    dbname = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
    drop_database(pg_cluster, dbname)
    with psycopg.connect(pg_cluster.dsn(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{dbname}"')
    sql_dir = Path(__file__).resolve().parents[2] / "sql" / "eco2"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute((sql_dir / "auth.sql").read_text())
        conn.execute((sql_dir / "scan.sql").read_text())


def _row_count(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        return sum(
            conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table, _ in TABLES.values()
        )


def _one_line_error(proc: subprocess.CompletedProcess) -> str:
    """The capture's own failure message (one line after 'capture failed:'), no Python traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("capture failed:")]
    assert len(lines) == 1, proc.stderr[-3000:]
    return lines[0]


def test_offsets_belong_to_their_lake_and_database(eco2_db, pg_cluster, tmp_path):
    """Offsets are keyed by lake, cluster and database: another lake cannot take over the slot
    of the first one, and a database created again under the same name starts clean (before:
    Debezium resumed the old offsets and died with 'no longer available on the server')."""
    seed(eco2_db, users=3, scans=4, calls=6)
    dbname = psycopg.conninfo.conninfo_to_dict(eco2_db)["dbname"]
    name = _engine(eco2_db)
    state, lake1, lake2 = tmp_path / "state", tmp_path / "lake1", tmp_path / "lake2"
    proc = _capture_once(eco2_db, lake1, state)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert lake_matches_pg(lake1, eco2_db) is True
    [offsets] = state.glob("*.offsets")
    assert re.fullmatch(rf"{name}\.[0-9a-f]{{16}}\.offsets", offsets.name), offsets.name
    meta = json.loads(offsets.with_suffix(".json").read_text())
    assert meta["lake"] == str(lake1.resolve()) and meta["database"] == dbname
    assert meta["slot"] == f"lakehouse_{name}" and meta["system_identifier"] and meta["database_oid"]

    # the same database into another lake under the same engine name: the slot is lake1's position
    message = _one_line_error(_capture_once(eco2_db, lake2, state))
    assert f"lakehouse_{name}" in message and str(lake1.resolve()) in message and "--name" in message
    assert _slots(eco2_db) == [f"lakehouse_{name}"]
    # the first lake moved: the message says how to take the offsets along; then it resumes
    moved = tmp_path / "moved"
    shutil.move(lake1, moved)
    message = _one_line_error(_capture_once(eco2_db, moved, state))
    rename = re.search(r"if \S+ is that lake moved, rename (\S+) to (\S+) and (\S+) to (\S+)$", message)
    assert rename, message
    Path(rename[1]).rename(rename[2])
    Path(rename[3]).rename(rename[4])
    proc = _capture_once(eco2_db, moved, state)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout)["events"] == 0  # resumed, no new snapshot
    assert json.loads(Path(rename[4]).read_text())["lake"] == str(moved.resolve())
    lake1 = moved
    # with a name of its own it takes its own snapshot from its own slot
    proc = _capture_once(eco2_db, lake2, state, "--name", "second")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert lake_matches_pg(lake2, eco2_db) is True
    assert _slots(eco2_db) == [f"lakehouse_{name}", "lakehouse_second"]

    # the database created again under the same name (a restore, a new throwaway cluster)
    _recreate_database(pg_cluster, eco2_db)
    seed(eco2_db, users=5, scans=7, calls=9)
    proc = _capture_once(eco2_db, lake1, state)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "no longer available" not in proc.stderr
    assert json.loads(proc.stdout)["events"] == _row_count(eco2_db)  # a new snapshot, nothing resumed
    assert len(list(state.glob(f"{name}.*.offsets"))) == 2


def test_offsets_their_slot_cannot_serve_fail_in_one_line(eco2_db, tmp_path):
    seed(eco2_db, users=3, scans=4, calls=6)
    slot = f"lakehouse_{_engine(eco2_db)}"
    lake, state = tmp_path / "lake", tmp_path / "state"
    proc = _capture_once(eco2_db, lake, state)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [offsets] = state.glob("*.offsets")

    # the slot is gone: found before the JVM starts
    _drop_slot(eco2_db, slot)
    started = time.monotonic()
    message = _one_line_error(_capture_once(eco2_db, lake, state))
    assert time.monotonic() - started < 30
    assert str(offsets) in message and slot in message and "no such slot" in message and "delete" in message

    # a new slot under the old name, created after more changes: Debezium 3.6.3 would stream on
    # from it (it only checks a processed change's LSN, which an idle capture has none of) and
    # skip the UPDATE; the offsets' position is behind what the slot confirmed
    with psycopg.connect(eco2_db, autocommit=True) as conn:
        conn.execute("UPDATE scan.scans SET status = 'moved on'")
        conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))
    message = _one_line_error(_capture_once(eco2_db, lake, state))
    assert "the changes in between are not in" in message and str(offsets) in message
    assert f"pg_drop_replication_slot('{slot}')" in message
    assert _slots(eco2_db) == [slot]  # not ours to drop: it existed before the run

    # following the advice takes a new snapshot into the same lake
    offsets.unlink()
    _drop_slot(eco2_db, slot)
    proc = _capture_once(eco2_db, lake, state)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert lake_matches_pg(lake, eco2_db) is True


def test_failed_first_run_leaves_no_slot(eco2_db, tmp_path):
    """A first run that never commits an offset drops the slot and publication it created: nothing
    could resume from them, and the slot would hold WAL. A later failing run keeps its slot."""
    seed(eco2_db, users=3, scans=4, calls=6)
    name = _engine(eco2_db)
    lake, state = tmp_path / "lake", tmp_path / "state"
    lake.mkdir()
    (lake / "topics").write_text("a file where the sink's folder belongs")  # every write fails
    proc = _capture_once(eco2_db, lake, state)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert f"dropped replication slot lakehouse_{name}" in proc.stderr
    assert _slots(eco2_db) == []
    with psycopg.connect(eco2_db, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM pg_publication").fetchone()[0] == 0

    (lake / "topics").unlink()
    proc = _capture_once(eco2_db, lake, state)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with psycopg.connect(eco2_db, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO auth.users (username, email, password_hash, provider, created_at) "
            "VALUES ('late', 'late@eco2.test', 'x', 'email', now())"
        )
    shutil.rmtree(lake / "topics" / "eco2.auth.users")
    (lake / "topics" / "eco2.auth.users").write_text("in the way again")
    proc = _capture_once(eco2_db, lake, state)
    assert proc.returncode == 2
    assert _slots(eco2_db) == [f"lakehouse_{name}"]  # it holds the committed position


ODD_SQL = """
CREATE SCHEMA "we ird";
CREATE TABLE "we ird"."Key Words" ("select" int, "a""b" text, "ü 名前" text, "1st" int, "😀" text,
                                   "order" text, PRIMARY KEY ("select", "a""b"));
INSERT INTO "we ird"."Key Words" VALUES (1, 'x', '이름', 10, 'smile', 'o1'), (2, 'y', NULL, NULL, NULL, 'o2'),
                                        (3, 'z"q', 'ß', 30, '😀', NULL);
CREATE TABLE public."ü 名前" ("id x" bigint PRIMARY KEY, "from" text);
INSERT INTO public."ü 名前" VALUES (1, 'a'), (2, 'b');
CREATE TABLE "we ird"."KEY WORDS" (id int PRIMARY KEY);  -- not asked for (Debezium matches without case)
INSERT INTO "we ird"."KEY WORDS" VALUES (1);
"""
ODD_STREAM = [
    """UPDATE "we ird"."Key Words" SET "ü 名前" = 'streamed', "😀" = 'grin' WHERE "select" = 1""",
    """DELETE FROM "we ird"."Key Words" WHERE "select" = 2""",
    """ALTER TABLE "we ird"."Key Words" ADD COLUMN "new col" text""",  # a new odd name while streaming
    """INSERT INTO "we ird"."Key Words" ("select", "a""b", "new col") VALUES (4, 'w', 'n')""",
    """UPDATE public."ü 名前" SET "from" = 'c' WHERE "id x" = 2""",
]
ODD_TABLES = {  # topic (sanitized by Debezium) -> (schema.table, quoted, primary key as in PostgreSQL)
    "eco2.we_ird.Key_Words": ("we ird.Key Words", '"we ird"."Key Words"', ("select", 'a"b')),
    "eco2.public.____": ("public.ü 名前", 'public."ü 名前"', ("id x",)),
}


def _odd_lake_matches_pg(lake: Path, dsn: str):
    reader = LakeReader(LocalStore(lake))
    topics = set(reader.scan().topics)
    problems = []
    for topic, (_, table, key) in ODD_TABLES.items():
        if topic not in topics:
            problems.append(f"no topic {topic} yet")
            continue
        problems += [
            f"{table}: {d}" for d in compare(lake_state(reader, topic, key), pg_state(dsn, table, key))
        ]
    return True if not problems else problems[:8]


def test_odd_names_are_captured_under_their_real_names(eco2_db, tmp_path, bigquery_emulator):
    """Tables and columns whose names Avro or Kafka cannot hold (quotes, spaces, non-ASCII, a
    leading digit, SQL keywords) are captured; the lake records each adjusted column's real name,
    so reader, discover and compaction give PostgreSQL's names: the state equals ``SELECT *``,
    column names included. Before: ``SchemaParseException: Illegal character in: a"b`` with no
    table named, and the slot left behind."""
    from lakehouse.lake.names import avro_field_name, source_name

    with psycopg.connect(eco2_db, autocommit=True) as conn:
        conn.execute(ODD_SQL)
    lake, state = tmp_path / "lake", tmp_path / "state"
    cap = Capture(eco2_db, lake, state, "--tables", "we ird.Key Words,public.ü 名前", "--store-keys").start()
    wait_for(lambda: _odd_lake_matches_pg(lake, eco2_db), cap, what="the snapshot")
    with psycopg.connect(eco2_db, autocommit=True) as conn:
        for step in ODD_STREAM:
            conn.execute(step)
    wait_for(lambda: _odd_lake_matches_pg(lake, eco2_db), cap, what="streamed changes")
    cap.stop()

    # every object: Avro-valid field names, each adjusted one with its real name beside it
    store = LocalStore(lake)
    reader = LakeReader(store)
    assert sorted(reader.scan().topics) == sorted(ODD_TABLES)  # before: "KEY WORDS" was captured too
    for topic, (name, table, key) in ODD_TABLES.items():
        with psycopg.connect(eco2_db) as conn:
            pg_columns = [d.name for d in conn.execute(f"SELECT * FROM {table} LIMIT 0").description]
        for info in store.list(f"topics/{topic}/"):
            if ".keys." in info.key or ".headers." in info.key:
                continue
            footer = pq.ParquetFile(store.open_input(info.key)).metadata.metadata[b"parquet.avro.schema"]
            row = parse_avro_schema(footer.decode()).field("after").schema
            assert all(f.name == avro_field_name(source_name(f)) for f in row.fields), info.key
            assert [source_name(f) for f in row.fields] == pg_columns[: len(row.fields)], info.key
        changes = reader.read_changes(topic)
        assert [c for c in changes.column_names if not c.startswith("__")] == pg_columns
        assert set(changes.column("__table").to_pylist()) == {name}
        assert reader.key_columns(topic) == key  # key companions hold adjusted names: mapped back

    # discover (keys from the key files) and compaction: the state is SELECT *, names included
    config = tmp_path / "tables.yaml"
    config.write_text("tables:\n")
    cli = [sys.executable, "-m", "lakehouse.cli"]
    proc = subprocess.run(
        [*cli, "discover", "--lake", str(lake), "--tables-config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    from lakehouse.config import load_config

    assert {t.topic: t.primary_key for t in load_config(config).tables} == {
        topic: key for topic, (_, _, key) in ODD_TABLES.items()
    }
    proc = subprocess.run(
        [
            *cli,
            "compact",
            "--lake",
            str(lake),
            "--state",
            str(tmp_path / "delta"),
            "--tables-config",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for topic, (_, table, key) in ODD_TABLES.items():
        out = tmp_path / f"{topic}.parquet"
        proc = subprocess.run(
            [
                *cli,
                "export",
                "--state",
                str(tmp_path / "delta"),
                "--table",
                topic.split(".", 1)[1],
                "--out",
                str(out),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        exported = pq.read_table(out)
        with psycopg.connect(eco2_db) as conn:
            cur = conn.execute(f"SELECT * FROM {table}")
            names = [d.name for d in cur.description]
            rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
        assert exported.column_names == names
        order = [(c, "ascending") for c in key]
        assert exported.sort_by(order).to_pylist() == sorted(rows, key=lambda r: tuple(r[c] for c in key))
    _odd_names_through_the_warehouses_and_dbt(eco2_db, tmp_path, config, bigquery_emulator)


def _pg_rows(dsn: str, table: str, key: tuple[str, ...]) -> tuple[list[str], list[dict]]:
    with psycopg.connect(dsn) as conn:
        cur = conn.execute(f"SELECT * FROM {table}")
        names = [d.name for d in cur.description]
        rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    return names, sorted(rows, key=lambda r: tuple(r[c] for c in key))


def _odd_names_through_the_warehouses_and_dbt(
    dsn: str, tmp_path: Path, config: Path, bigquery_emulator
) -> None:
    """The same tables loaded into DuckDB (CLI) and the BigQuery emulator, and read by a dbt model
    (``select *`` from a source whose names need quoting): PostgreSQL's columns and rows everywhere."""
    import uuid

    import duckdb

    from lakehouse.config import load_config
    from lakehouse.warehouse.bigquery_warehouse import BigQueryWarehouse, column_name

    entries = {t.topic: t for t in load_config(config).tables}
    warehouse = tmp_path / "warehouse.duckdb"
    tables = [a for t in entries.values() for a in ("--table", t.table)]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lakehouse.cli",
            "load",
            "--state",
            str(tmp_path / "delta"),
            "--warehouse",
            str(warehouse),
            "--tables-config",
            str(config),
            *tables,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    bq = BigQueryWarehouse(
        bigquery_emulator.client,
        bigquery_emulator.project,
        dataset_prefix=f"o{uuid.uuid4().hex[:8]}_",
        meta_dataset=f"m{uuid.uuid4().hex[:8]}",
    )
    project = _odd_dbt_project(tmp_path / "dbt", entries.values())
    run = subprocess.run(
        [
            str(Path(sys.executable).with_name("dbt")),
            "run",
            "--project-dir",
            str(project),
            "--profiles-dir",
            str(project),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "ODD_DUCKDB": str(warehouse)},
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    models = {topic: f"odd_{i}" for i, topic in enumerate(entries)}  # as _odd_dbt_project names them
    for topic, (_, table, key) in ODD_TABLES.items():
        names, rows = _pg_rows(dsn, table, key)
        entry = entries[topic]
        bq.load(str(tmp_path / "delta"), entry)
        # BigQuery cannot name a column a"b or 😀: such columns get plain names, the source name in
        # their description (lakehouse.warehouse.bigquery_warehouse.column_name)
        on_bigquery = bq.read(entry.table).select([column_name(n) for n in names]).rename_columns(names)
        assert sorted(on_bigquery.to_pylist(), key=lambda r: tuple(r[c] for c in key)) == rows, (
            f"BigQuery {table}"
        )
        described = {f.name: f.description for f in bq.client.get_table(bq.table_id(entry.table)).schema}
        for n in names:
            assert n == column_name(n) or described[column_name(n)] == f"source column: {n}", n
        with duckdb.connect(str(warehouse), read_only=True) as con:
            for relation in (target_name(entry.table), f"main.{models[topic]}"):  # loaded, and dbt's model
                cur = con.execute(f"SELECT * EXCLUDE (_cdc_lsn, _cdc_committed_at) FROM {relation}")
                got = [dict(zip([d[0] for d in cur.description], r, strict=True)) for r in cur.fetchall()]
                assert [d[0] for d in cur.description] == names, relation
                assert sorted(got, key=lambda r: tuple(r[c] for c in key)) == rows, relation


def _odd_dbt_project(root: Path, entries) -> Path:
    """A dbt project of one ``select *`` model per table, over sources quoted as the names need."""
    (root / "models").mkdir(parents=True)
    (root / "dbt_project.yml").write_text(
        "name: odd\nversion: '1.0.0'\nprofile: odd\nmodel-paths: [models]\n"
    )
    (root / "profiles.yml").write_text(
        "odd:\n  target: duckdb\n  outputs:\n    duckdb:\n      type: duckdb\n"
        "      path: \"{{ env_var('ODD_DUCKDB') }}\"\n      schema: main\n"
    )
    sources = ["version: 2", "sources:"]
    for i, entry in enumerate(entries):
        schema, name = entry.table.split(".", 1)
        sources += [
            f"  - name: src_{i}",
            f"    schema: {json.dumps(schema)}",
            "    quoting: {database: false, schema: true, identifier: true}",
            f"    tables: [{{name: t, identifier: {json.dumps(name)}}}]",
        ]
        (root / "models" / f"odd_{i}.sql").write_text(f"select * from {{{{ source('src_{i}', 't') }}}}\n")
    (root / "models" / "sources.yml").write_text("\n".join(sources) + "\n")
    return root


def test_names_debezium_would_merge_are_refused_before_capture(eco2_db, tmp_path):
    """Two tables with one topic, or two columns with one Avro field name, cannot be captured:
    one line naming them, exit 2, nothing created (before: the tables were mixed in one topic)."""
    with psycopg.connect(eco2_db, autocommit=True) as conn:
        conn.execute(
            'CREATE TABLE public."ü x" (id int PRIMARY KEY); CREATE TABLE public."ä x" (id int PRIMARY KEY)'
        )
        conn.execute('CREATE TABLE public.cols (id int PRIMARY KEY, "a b" text, "a-b" text)')
    lake, state = tmp_path / "lake", tmp_path / "state"
    message = _one_line_error(_capture_once(eco2_db, lake, state, "--tables", "public.ü x,public.ä x"))
    assert "'public.ü x', 'public.ä x'" in message and "eco2.public.__x" in message
    message = _one_line_error(_capture_once(eco2_db, lake, state, "--tables", "public.cols"))
    assert "'a b', 'a-b'" in message and "public.cols" in message and "'a_b'" in message
    assert _slots(eco2_db) == [] and not lake.exists()
