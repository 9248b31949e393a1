"""Consistent reads (issue 16): every table of a database at one transaction boundary.

Real PostgreSQL 15, the real Debezium engine with transaction metadata (``lakehouse capture``):
Eco2 scans, each one transaction over five tables, one pair of interleaved transactions (the one
that began first commits last), re-scoring and withdrawn feedback. After every commit the test
records its transaction id and ``SELECT *`` of every table. The captured objects are then
delivered to a second lake step by step, ``scan.classification_results`` one step behind the
other topics and the transaction topic itself lagging in one step. After each step the
consistent root must equal PostgreSQL right after the transaction the watermark names (never a
partial transaction), its watermark never moves back, and no scan is without its classification
result; the state that runs ahead does show such scans (so this test can fail).
"""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from support.capture_process import Capture, _no_capture_left_running, wait_for  # noqa: F401 (autouse fixture)
from support.oracle import compare, pg_state

from lakehouse.config import TableConfig, TablesConfig
from lakehouse.lake.reader import LakeReader
from lakehouse.lake.store import LocalStore
from lakehouse.lake.transactions import read_transaction_log
from lakehouse.pg.workload import Eco2Workload
from lakehouse.state.compact import compact
from lakehouse.state.consistent import compact_consistent, consistent_rows
from lakehouse.state.export import visible_rows

pytestmark = pytest.mark.slow

TABLES = [
    "auth.users",
    "scan.scans",
    "scan.classification_results",
    "scan.rag_retrievals",
    "scan.llm_call_log",
    "scan.feedback",
]
LAGGING = "eco2.scan.classification_results"
CONFIG = TablesConfig(tables=tuple(TableConfig(topic=f"eco2.{t}", primary_key=["id"]) for t in TABLES))


def everything(dsn: str) -> dict[str, dict]:
    return {t: pg_state(dsn, t, ("id",)) for t in TABLES}


def committed(history: dict, dsn: str, txid: int) -> None:
    history[txid] = everything(dsn)


def run_workload(dsn: str, history: dict) -> list[int]:
    """Scans (one transaction each), an interleaved pair, changes; returns the txids in commit order."""
    wl = Eco2Workload(dsn, dsn, seed=16)
    wl.user_ids = [r[0] for r in psycopg.connect(dsn).execute("SELECT id FROM auth.users").fetchall()]
    order = []
    with psycopg.connect(dsn) as a, psycopg.connect(dsn) as b:

        def one_scan(conn):
            with conn.transaction(), conn.cursor() as cur:
                wl._one_scan(cur, wl.rng)
                return cur.execute("SELECT txid_current()").fetchone()[0]

        for i in range(10):
            if i == 4:  # a begins first (its scan row and LLM call written), b commits a whole scan before it
                with a.transaction(), a.cursor() as cur:
                    wl._one_scan(cur, random.Random(99))
                    txa = cur.execute("SELECT txid_current()").fetchone()[0]
                    txb = one_scan(b)
                    committed(history, dsn, txb)
                    order.append(txb)
                committed(history, dsn, txa)
                order.append(txa)
                continue
            txid = one_scan(a)
            committed(history, dsn, txid)
            order.append(txid)
        with a.transaction():
            a.execute("UPDATE scan.classification_results SET confidence = 0.5 WHERE id % 2 = 0")
            a.execute("DELETE FROM scan.feedback WHERE id % 3 = 0")
            a.execute(
                "UPDATE scan.scans SET status = 'reviewed' WHERE id IN (SELECT scan_id FROM scan.feedback)"
            )
            txid = a.execute("SELECT txid_current()").fetchone()[0]
        committed(history, dsn, txid)
        order.append(txid)
    return order


def deliver(source: Path, target: Path, share: dict[str, float]) -> None:
    """Copy into ``target`` the first ``share`` of each topic's objects (Kafka order; at least one
    when the share is above 0), companions before their value file, as the sink writes them."""
    by_topic: dict[str, dict[int, list[str]]] = {}
    for info in LocalStore(source).list("topics/"):
        offset = int(info.key.rsplit("+", 1)[1].split(".")[0])
        by_topic.setdefault(info.key.split("/")[1], {}).setdefault(offset, []).append(info.key)
    for topic, by_offset in by_topic.items():
        offsets = sorted(by_offset)
        fraction = share.get(topic, 1.0)
        count = max(1, round(len(offsets) * fraction)) if fraction > 0 else 0
        for offset in offsets[:count]:
            for key in sorted(by_offset[offset], key=lambda k: ".headers." not in k and ".keys." not in k):
                dest = target / key
                if not dest.exists():
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(source / key, dest)


def scans_without_result(rows: dict[str, list[dict]]) -> int:
    results = {r["scan_id"] for r in rows["scan.classification_results"]}
    return sum(1 for s in rows["scan.scans"] if s["id"] not in results)


def test_consistent_reads_are_one_past_commit_with_a_lagging_topic(eco2_db, tmp_path):
    with psycopg.connect(eco2_db, autocommit=True) as conn:
        conn.execute("""INSERT INTO auth.users (username, email, password_hash, provider)
                        SELECT 'u' || g, 'u' || g || '@eco2.test', 'x', 'email' FROM generate_series(1, 5) g""")
    history: dict[int | None, dict] = {None: everything(eco2_db)}  # None: the snapshot point
    captured, lake, state = tmp_path / "captured", tmp_path / "lake", tmp_path / "state"
    cap = Capture(eco2_db, captured, tmp_path / "capture", "--flush-size", "3").start()
    wait_for(
        lambda: (captured / "topics" / "eco2.auth.users").exists() or "no snapshot yet", cap, what="snapshot"
    )
    order = run_workload(eco2_db, history)
    reader = LakeReader(str(captured))

    def caught_up():
        txlog = read_transaction_log(reader, "eco2.transaction")
        return txlog is not None and order[-1] in txlog.ends.get_column("tx_id").to_list() or "capture behind"

    wait_for(caught_up, cap, what="the last transaction's END")
    cap.stop()

    steps = [0.2, 0.4, 0.6, 0.8, 1.0, 1.0]  # the last: the lagging topic catches up
    previous, ahead_violations, seen = -1, 0, set()
    for i, share in enumerate(steps):
        shares = {
            t: share
            for t in (
                "eco2.auth.users",
                "eco2.scan.scans",
                "eco2.scan.rag_retrievals",
                "eco2.scan.llm_call_log",
                "eco2.scan.feedback",
                "eco2.transaction",
            )
        }
        shares[LAGGING] = steps[i - 1] if i else 0.0
        if i:  # the snapshot (users only) lands whole from step 1 on; in step 0 it is cut short
            shares["eco2.auth.users"] = 1.0
        if i == 2:
            shares["eco2.transaction"] = 0.25  # the transaction topic lags too
        deliver(captured, lake, shares)
        [result] = compact_consistent(str(lake), str(state), CONFIG)
        if i == 0:  # the snapshot has not landed whole: nothing can be shown yet
            assert result.watermark is None and "no transaction is complete" in result.error
            continue
        assert result.error is None, result.error
        mark = result.watermark
        assert mark.lsn >= previous, "the watermark moved back"
        previous = mark.lsn
        seen.add(mark.tx_id)
        want = history[mark.tx_id]
        consistent = {}
        for table in TABLES:
            rows = consistent_rows(str(state), table)[0].to_pylist() if table in mark.tables else []
            consistent[table] = rows
            got = {(r["id"],): r for r in rows}
            diff = compare(got, want[table])
            assert not diff, f"step {i}, watermark txId {mark.tx_id}: {table}: {diff}"
        assert scans_without_result(consistent) == 0
        compact(str(lake), str(state), CONFIG)  # the current state runs ahead
        ahead = {
            t: visible_rows(str(state), t).to_pylist() for t in ("scan.scans", "scan.classification_results")
        }
        ahead_violations += scans_without_result(ahead)

    assert ahead_violations > 0, "the lagging topic never showed: the test would not catch a partial read"
    assert len(seen) >= 4, f"the watermark stood still: {seen}"
    assert mark.tx_id == order[-1] and mark.lag_seconds == 0
    out = tmp_path / "scans.parquet"
    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "lakehouse.cli",
            "export",
            "--state",
            str(state),
            "-t",
            "scan.scans",
            "-o",
            str(out),
            "--consistent",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert f"txId {order[-1]}" in cli.stdout


# --------------------------------------------------------------------------------------------
# generated lakes (lakehouse generate --transactions): every step against the test oracle
# --------------------------------------------------------------------------------------------


def _ends(lake: Path, topic: str) -> list[dict]:
    import pyarrow.parquet as pq

    files = sorted((lake / "topics" / topic).rglob("*.parquet"))
    return [
        r
        for f in files
        if ".headers." not in f.name
        for r in pq.read_table(f).to_pylist()
        if r["status"] == "END"
    ]


@pytest.mark.parametrize("engine", ["local", "bigquery"])
def test_generated_lake_is_consistent_at_every_step(engine, tmp_path, request):
    """A generated lake with replays, key changes and a truncate, delivered with
    classification_results lagging: each database's consistent root equals the test oracle's
    fold of exactly the events whose transaction committed at or before the watermark."""
    from support.bq_emulator import fold_engine
    from support.oracle import committed_by, lake_state

    from lakehouse.config import load_config
    from lakehouse.generate.options import GeneratorOptions
    from lakehouse.generate.run import generate_lake
    from lakehouse.state.compact import CompactOptions

    source, lake, state = tmp_path / "source", tmp_path / "lake", tmp_path / "state"
    generate_lake(
        str(source),
        GeneratorOptions(
            events=6_000,
            seed=16,
            flush_size=250,
            transactions=True,
            replays=True,
            pk_changes=True,
            truncates=True,
        ),
    )
    config = TablesConfig(tables=tuple(e.model_copy(update={"columns": {}}) for e in load_config().tables))
    options = CompactOptions(engine=fold_engine(engine, request)[0])
    steps = [0.3, 0.6, 0.8, 1.0] if engine == "local" else [0.5, 1.0]
    marks = {}
    for i, share in enumerate(steps):
        lagging = 1.0 if i == len(steps) - 1 else steps[i - 1] if i else 0.1  # caught up in the last step
        deliver(
            source,
            lake,
            {LAGGING: lagging, "eco2.transaction_scan": share}
            | {f"eco2.{t}": share for t in TABLES if f"eco2.{t}" != LAGGING},
        )
        results = compact_consistent(str(lake), str(state), config, options)
        reader = LakeReader(str(lake))
        for result in results:
            assert result.error is None, result.error
            mark = result.watermark
            assert mark.lsn >= marks.get(mark.database, -1), "the watermark moved back"
            marks[mark.database] = mark.lsn
            keep = committed_by(_ends(lake, mark.database), mark.lsn)
            for entry in (e for e in config.tables if e.transactions == mark.database):
                want = lake_state(reader, entry.topic, ("id",), keep)
                got = {(r["id"],): r for r in consistent_rows(str(state), entry.table)[0].to_pylist()}
                assert not compare(got, want), f"step {i}, {entry.table} at {mark.lsn}: {compare(got, want)}"
    newest = {db: max(int(e["id"].split(":")[1]) for e in _ends(lake, db)) for db in marks}
    assert marks == newest, "everything landed, yet the watermark is not the newest commit"
    if engine == "local":  # the CLI: compact --consistent prints each watermark, load --consistent reads it
        from typer.testing import CliRunner

        from lakehouse.cli import app
        from lakehouse.warehouse.duckdb_warehouse import DuckDBWarehouse

        config_file = tmp_path / "tables.yaml"
        config_file.write_text(
            __import__("yaml").safe_dump(
                {"tables": [e.model_dump(mode="json", exclude_defaults=True) for e in config.tables]}
            )
        )
        ran = CliRunner().invoke(
            app,
            [
                "compact",
                "--lake",
                str(lake),
                "--state",
                str(state),
                "--tables-config",
                str(config_file),
                "--consistent",
            ],
        )
        assert ran.exit_code == 0, ran.output
        assert all(
            f"consistent {db}: every table at commit LSN {lsn}" in ran.output for db, lsn in marks.items()
        )
        warehouse = tmp_path / "warehouse.duckdb"
        ran = CliRunner().invoke(
            app,
            [
                "load",
                "--state",
                str(state),
                "--warehouse",
                str(warehouse),
                "-t",
                "scan.scans",
                "--tables-config",
                str(config_file),
                "--consistent",
            ],
        )
        assert ran.exit_code == 0, ran.output
        got = DuckDBWarehouse(warehouse).read("scan.scans").num_rows
        assert got == consistent_rows(str(state), "scan.scans")[0].num_rows > 0
