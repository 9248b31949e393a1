"""The scripted Eco2 workload on real PostgreSQL, captured: what the demo's live path runs."""

from __future__ import annotations

import subprocess
import sys

import psycopg
import pytest
from support.oracle import compare, lake_state, op_counts, pg_state

from lakehouse.lake.reader import LakeReader
from lakehouse.lake.semantic import TOAST_PLACEHOLDER
from lakehouse.pg.workload import Eco2Workload, create_databases, load_schema

pytestmark = pytest.mark.slow


def test_workload_captured_equals_postgres(pg_cluster, tmp_path):
    create_databases(pg_cluster.dsn(), ("wl_auth", "wl_scan"))
    auth, scan = pg_cluster.dsn("wl_auth"), pg_cluster.dsn("wl_scan")
    load_schema(auth, "auth")
    load_schema(scan, "scan")
    work = Eco2Workload(auth, scan, seed=3)
    work.sign_ups(30)
    work.scans(120)
    work.changes()  # before the capture: part of the snapshot
    lake, state = tmp_path / "lake", tmp_path / "state"
    for dsn in (auth, scan):
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "lakehouse.cli",
                "capture",
                "--dsn",
                dsn,
                "--lake",
                str(lake),
                "--state-dir",
                str(state),
                "--stop-when-idle",
                "3",
                "--rotate-interval",
                "1",
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
    work.scans(40)
    work.changes()  # streamed: re-scores leave the TOASTed rationale out of the event
    for dsn in (auth, scan):
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "lakehouse.cli",
                "capture",
                "--dsn",
                dsn,
                "--lake",
                str(lake),
                "--state-dir",
                str(state),
                "--stop-when-idle",
                "3",
                "--rotate-interval",
                "1",
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
    reader = LakeReader(str(lake))
    for topic, table, dsn in [
        ("eco2.auth.users", "auth.users", auth),
        ("eco2.scan.scans", "scan.scans", scan),
        ("eco2.scan.classification_results", "scan.classification_results", scan),
        ("eco2.scan.rag_retrievals", "scan.rag_retrievals", scan),
        ("eco2.scan.llm_call_log", "scan.llm_call_log", scan),
        ("eco2.scan.feedback", "scan.feedback", scan),
    ]:
        assert compare(lake_state(reader, topic, ("id",)), pg_state(dsn, table, ("id",))) == [], topic
    cls = reader.read_changes("eco2.scan.classification_results")
    updates = [r for r in cls.to_pylist() if r["__op"] == "u"]
    assert updates and all(r["rationale"] == TOAST_PLACEHOLDER for r in updates)
    assert op_counts(reader.read_changes("eco2.scan.feedback")).get("d", 0) > 0
    with psycopg.connect(auth) as conn:
        assert conn.execute("SELECT count(*) FROM auth.users").fetchone()[0] == 29  # one account closed
