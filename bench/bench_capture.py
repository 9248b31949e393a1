"""Benchmark: `lakehouse capture` throughput and memory, beside Debezium's own floor, in one run.

A throwaway PostgreSQL 15 cluster gets N rows in ``scan.llm_call_log`` (narrow) and, separately,
N rows in ``scan.classification_results`` with ~600-byte text (wide). For each, two consumers drain
the same changes from their own replication slot, one after the other, each in a fresh process with
a 512 MB JVM heap:

* baseline: the bare pydbzengine engine (``connect`` format) with a handler that only counts, i.e.
  what Debezium itself delivers on this machine, with no lake writing at all;
* capture: ``lakehouse capture`` writing the lake (Parquet objects, Avro footers, offsets committed
  only when durable).

Both the snapshot path (rows present before the slot) and the streaming path (rows committed
while the consumer is stopped, then drained) are measured. Throughput is rows ÷ (last - first row
batch), so JVM start-up is excluded; peak RSS is the whole process (Python + JVM).

    .venv/bin/python bench/bench_capture.py --rows 200000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from lakehouse.pg.cluster import PgCluster  # noqa: E402

HEAP = "-Xmx512m"

BASELINE = r"""
import json, sys, threading, time
from pydbzengine import BasePythonChangeHandler, DebeziumEngine
dsn_port, db, table, name, offsets, log4j = sys.argv[1:7]
props = {
    "name": name, "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
    "database.hostname": "127.0.0.1", "database.port": dsn_port, "database.user": "postgres",
    "database.password": "", "database.dbname": db, "topic.prefix": "eco2", "plugin.name": "pgoutput",
    "slot.name": name, "publication.name": name, "publication.autocreate.mode": "filtered",
    "table.include.list": table.replace(".", "\\."), "snapshot.mode": "initial", "skipped.operations": "none",
    "offset.storage": "org.apache.kafka.connect.storage.FileOffsetBackingStore",
    "offset.storage.file.filename": offsets, "offset.flush.interval.ms": "1000",
    "max.batch.size": "4096", "max.queue.size": "16384", "poll.interval.ms": "100",
}
state = {"n": 0, "first": None, "last": None, "last_seen": time.monotonic()}
class Count(BasePythonChangeHandler):
    def handleJsonBatch(self, records):
        now = time.monotonic()
        rows = sum(1 for r in records if r.value().value() is not None)
        if rows:
            state["first"] = state["first"] or now
            state["last"] = now
            state["n"] += rows
        state["last_seen"] = now
engine = DebeziumEngine(properties=props, handler=Count(), format="connect",
                        jvm_opts=["-Xmx512m", "-Dlog4j2.configurationFile=" + log4j])
t = threading.Thread(target=engine.run, daemon=True); t.start()
while time.monotonic() - (state["last"] or state["last_seen"]) < 15 or state["n"] == 0:
    time.sleep(0.2)
    if not t.is_alive(): break
engine.close(); t.join(30)
span = (state["last"] - state["first"]) if state["first"] else 0
print(json.dumps({"events": state["n"], "events_per_second": state["n"] / span if span else 0}))
"""


def run_measured(cmd: list[str]) -> tuple[dict, float]:
    """Run a consumer process; returns its JSON summary and its peak RSS (MB, process tree)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
    ps = psutil.Process(proc.pid)
    peak = 0.0
    while proc.poll() is None:
        try:
            rss = ps.memory_info().rss + sum(c.memory_info().rss for c in ps.children(recursive=True))
            peak = max(peak, rss / 2**20)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.1)
    out = proc.stdout.read()
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[:4]} failed with {proc.returncode}")
    try:
        return json.loads(out), peak  # lakehouse capture prints one JSON document
    except json.JSONDecodeError:
        return json.loads(out.strip().splitlines()[-1]), peak  # the baseline's last line


def baseline(cluster: PgCluster, db: str, table: str, name: str, work: Path) -> tuple[dict, float]:
    return run_measured(
        [
            sys.executable,
            "-c",
            BASELINE,
            str(cluster.port),
            db,
            table,
            name,
            str(work / f"{name}.offsets"),
            str(ROOT / "src/lakehouse/capture/log4j2.properties"),
        ]
    )


def capture(cluster: PgCluster, db: str, table: str, name: str, work: Path) -> tuple[dict, float]:
    return run_measured(
        [
            sys.executable,
            "-m",
            "lakehouse.cli",
            "capture",
            "--dsn",
            cluster.dsn(db),
            "--lake",
            str(work / f"lake-{name}"),
            "--tables",
            table,
            "--name",
            name,
            "--state-dir",
            str(work / "state"),
            "--stop-when-idle",
            "15",
            "--heap-mb",
            "512",
            "--rotate-interval",
            "30",
            "--flush-size",
            "10000",
        ]
    )


LOADS = {
    "narrow": (
        "scan.llm_call_log",
        """INSERT INTO scan.llm_call_log (scan_id, stage, model, latency_ms,
              prompt_tokens, completion_tokens, status, created_at)
              SELECT gen_random_uuid(), 'vision', 'gpt-4o-mini', g % 2000, 1000, 100, 'ok', now()
              FROM generate_series(1, {n}) g""",
    ),
    "wide": (
        "scan.classification_results",
        """INSERT INTO scan.classification_results (scan_id, category,
             item, confidence, rationale, model, prompt_version, created_at)
             SELECT gen_random_uuid(), 'plastic', 'pet_bottle', 0.9123, repeat(md5(g::text), 18), 'gpt-4o',
             'v3', now() FROM generate_series(1, {n}) g""",
    ),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=200_000)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-capture-"))
    results = []
    with PgCluster.temporary() as cluster:
        with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE bench")
        with psycopg.connect(cluster.dsn("bench"), autocommit=True) as conn:
            conn.execute((ROOT / "sql/eco2/scan.sql").read_text())
        for shape, (table, load) in LOADS.items():
            with psycopg.connect(cluster.dsn("bench"), autocommit=True) as conn:
                conn.execute(f"TRUNCATE {table}")
                conn.execute(load.format(n=args.rows))
            # snapshot path: fresh slots see the rows as a snapshot
            for consumer, fn in (("baseline", baseline), ("capture", capture)):
                stats, rss = fn(cluster, "bench", table, f"{consumer}_{shape}", work)
                results.append(
                    (shape, "snapshot", consumer, stats["events"], stats["events_per_second"], rss)
                )
            # streaming path: same slots (offsets kept), rows committed while the consumers are stopped
            with psycopg.connect(cluster.dsn("bench"), autocommit=True) as conn:
                for _ in range(10):
                    conn.execute(load.format(n=args.rows // 10))
            for consumer, fn in (("baseline", baseline), ("capture", capture)):
                stats, rss = fn(cluster, "bench", table, f"{consumer}_{shape}", work)
                results.append(
                    (shape, "streaming", consumer, stats["events"], stats["events_per_second"], rss)
                )
    print(
        f"\n{'rows':<8}{'path':<11}{'consumer':<10}{'events':>10}{'events/s':>11}{'peak RSS MB':>13}{'vs baseline':>13}"
    )
    print("-" * 76)
    base = {}
    for shape, path, consumer, events, eps, rss in results:
        if consumer == "baseline":
            base[(shape, path)] = eps
        ratio = (
            f"{eps / base[(shape, path)]:.2f}x" if consumer != "baseline" and base.get((shape, path)) else ""
        )
        print(f"{shape:<8}{path:<11}{consumer:<10}{events:>10,}{eps:>11,.0f}{rss:>13,.0f}{ratio:>13}")
    print(f"\nJVM heap {HEAP}; 2 cores shared by PostgreSQL, the JVM and Python. Lakes in {work}")


if __name__ == "__main__":
    main()
