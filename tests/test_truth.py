"""The truth test of current-state compaction (issue 4): real capture, real PostgreSQL 15.

Per seed: a fresh database with the ``chaos`` schema (``truth_workload.py``), ``lakehouse capture``
with a small flush size, the seeded workload in phases (two interleaved connections, every §4.4
type, TOAST, key changes, delete-and-reinsert, ADD/DROP COLUMN, widening, TRUNCATE), and between
phases an incremental compaction step. One phase kills the capture with ``kill -9`` in the middle
of a large transaction and restarts it (Debezium re-emits what was not committed: replays); another
compacts (through the CLI) while the capture is still writing. After every quiescent step, and at
the end after a clean stop, the product's export of every table must equal ``SELECT *`` exactly.

Catch-up (when is everything committed in PostgreSQL durable in the lake?): the test inserts a row
``m`` into ``chaos.marker`` once the workload is idle and waits until the lake holds it as a
streamed (``c``) event, then does the same with ``m + 1``. PostgreSQL streams whole transactions
in commit order, so when ``m`` is visible the capture has *received* everything before it; the
capture writes files only on its engine thread (scheduled rotation: every open file, then the
offset mark), so ``m + 1``, committed after ``m`` was seen, can only be received once the call that
wrote ``m`` has finished writing every open file. Flush sizes >= 2 keep the marker topic from rotating
on size (each marker object holds one row), so ``m`` is always written by a full rotation.

Seeds: ``TRUTH_SEEDS`` = a count (``10`` -> seeds 1..10) or a comma list (``3,17``); default 1,2.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import random
import re
import struct
import subprocess
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from capture_process import Capture, _no_capture_left_running, wait_for  # noqa: F401 (autouse fixture)
from truth_workload import TABLES, Workload

from lakehouse.config import TableConfig, TablesConfig
from lakehouse.lake.reader import LakeReader
from lakehouse.lake.semantic import is_toast_placeholder
from lakehouse.lake.store import LocalStore
from lakehouse.state.compact import CompactOptions, compact
from lakehouse.state.export import visible_rows

pytestmark = pytest.mark.slow

PREFIX = "truth"
PHASES = 5
STATEMENTS_PER_PHASE = 70


def _seeds() -> list[int]:
    raw = os.environ.get("TRUTH_SEEDS", "1,2").strip()
    if "," not in raw and raw.isdigit():
        return list(range(1, int(raw) + 1))
    return [int(s) for s in raw.split(",") if s.strip()]


def topic(table: str) -> str:
    return f"{PREFIX}.{table}"


CONFIG = TablesConfig(tables=tuple(TableConfig(topic=topic(t), primary_key=k) for t, k in TABLES.items()))


# --------------------------------------------------------------------------------------------
# comparison: PostgreSQL value <-> lake value
# --------------------------------------------------------------------------------------------

# How each PostgreSQL type is selected so psycopg returns the form Debezium starts from (every
# other column is selected as is). These are casts to PostgreSQL's own text output or an exact
# numeric, never a rounding.
_SELECT_AS = {
    "json": "{c}::text",  # json keeps the client's text byte for byte; Debezium sends that text
    "jsonb": "{c}::text",  # jsonb's normalized text, which is also what Debezium sends
    "uuid": "{c}::text",
    "uuid[]": "{c}::text[]",
    "inet": "{c}::text",  # psycopg's ipaddress objects print differently (e.g. no /32)
    "cidr": "{c}::text",
    "int4range": "{c}::text",
    "tsrange": "{c}::text",
    "money": "{c}::numeric",  # exact; psycopg returns money as locale text ('$1.00')
    "hstore": "hstore_to_json({c})::text",  # Debezium's hstore.handling.mode=json: a JSON object
}


def _select_expr(column: str, pg_type: str) -> str:
    if re.fullmatch(r"bit\(\d+\)", pg_type):
        return f"{column}::text"
    return _SELECT_AS.get(pg_type, "{c}").format(c=column)


def _float_bits(v: float, fmt: str) -> str:
    return "NaN" if v != v else struct.pack(">" + fmt, v).hex()


_ZONED_TIME = re.compile(r"(\d\d):(\d\d)(?::(\d\d)(?:\.(\d{1,9}))?)?Z")


def canonical(pg_type: str, v: object) -> object:
    """Bring a PostgreSQL value (as selected by ``_select_expr``) and a lake value (as exported)
    into one comparable form. Both sides go through this function; every rule is an exact type
    conversion (nothing is rounded, trimmed or skipped). ``pg_type`` is ``format_type()``."""
    if v is None:
        return None
    if pg_type.endswith("[]"):
        return [canonical(pg_type[:-2], x) for x in v]
    if pg_type == "real":  # binary32: psycopg gives the double nearest PG's shortest text, which
        return _float_bits(v, "f")  # rounds back to the stored binary32 exactly; compared bit for bit
    if pg_type == "double precision":
        return _float_bits(v, "d")
    if pg_type.startswith("numeric") or pg_type == "money":
        # Decimal (psycopg, decimal128/256) or exact decimal text (unconstrained numeric, > 38
        # digits): plain notation with every digit, the scale included ('1.50' != '1.5')
        return format(Decimal(v), "f")
    if pg_type == "time with time zone":
        # Debezium's ZonedTime is the time in UTC ('07:04:56.123456Z'); the original offset is not
        # in the lake, so PostgreSQL's value is compared as its UTC time of day
        if isinstance(v, str):
            m = _ZONED_TIME.fullmatch(v)
            assert m, f"not a ZonedTime: {v!r}"
            frac = (m.group(4) or "").ljust(9, "0")
            assert frac[6:] == "000", f"sub-microsecond ZonedTime: {v!r}"
            return dt.time(int(m.group(1)), int(m.group(2)), int(m.group(3) or 0), int(frac[:6]))
        utc = dt.datetime.combine(dt.date(2000, 1, 1), v.replace(tzinfo=None)) - v.utcoffset()
        return utc.time()
    if pg_type == "bit(1)":  # Debezium: BOOLEAN; PostgreSQL text '0'/'1'
        return v if isinstance(v, bool) else v == "1"
    if pg_type.startswith("bit("):
        # io.debezium.data.Bits: java.util.BitSet.toByteArray() of the bit string (bit i = the
        # i-th bit from the right): little-endian, as many bytes as the highest set bit needs
        if isinstance(v, str):
            n = int(v, 2)
            return n.to_bytes((n.bit_length() + 7) // 8, "little")
        return bytes(v)
    if pg_type == "hstore":  # a map: compared as parsed JSON objects on both sides
        return json.loads(v)
    if pg_type == "timestamp with time zone":  # ZonedTimestamp: an instant, compared in UTC
        return v.astimezone(dt.UTC)
    if pg_type == "uuid" and isinstance(v, uuid.UUID):
        return str(v)
    return v


def pg_table(conn: psycopg.Connection, table: str) -> tuple[dict[str, str], list[dict]]:
    """PostgreSQL's current columns (name -> format_type) and all rows (``SELECT *`` with the
    casts above)."""
    cols = conn.execute(
        """SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute
           WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum""",
        [table]).fetchall()
    types = dict(cols)
    exprs = ", ".join(f'{_select_expr(c, t)} AS "{c}"' for c, t in cols)
    cur = conn.execute(f"SELECT {exprs} FROM {table}")
    names = [d.name for d in cur.description]
    return types, [dict(zip(names, r)) for r in cur.fetchall()]


def _short(v: object) -> str:
    s = repr(v)
    return s if len(s) <= 90 else s[:60] + f"...<{len(s)} chars>"


def diff_table(table: str, types: dict[str, str], pg_rows: list[dict], lake: pa.Table,
               dropped: set[str]) -> list[str]:
    """Every difference between PostgreSQL's rows and the export (empty when equal)."""
    key = TABLES[table]
    problems: list[str] = []
    missing_cols = [c for c in types if c not in lake.column_names]
    if missing_cols:
        problems.append(f"{table}: columns {missing_cols} missing in the export")
    extra = set(lake.column_names) - set(types)
    if extra - dropped:
        problems.append(f"{table}: export has columns {sorted(extra - dropped)} PostgreSQL never dropped")
    if problems:
        return problems

    def by_key(rows: list[dict], side: str) -> dict[tuple, dict]:
        out: dict[tuple, dict] = {}
        for r in rows:
            k = tuple(canonical(types[c], r[c]) for c in key)
            if k in out:
                problems.append(f"{table}: key {k} twice in {side}")
            out[k] = r
        return out

    pg = by_key(pg_rows, "PostgreSQL")
    ex = by_key(lake.to_pylist(), "the export")
    for k in sorted(set(pg) - set(ex), key=repr)[:5]:
        problems.append(f"{table}: {k} missing in the export")
    for k in sorted(set(ex) - set(pg), key=repr)[:5]:
        problems.append(f"{table}: {k} in the export but not in PostgreSQL")
    for k in sorted(set(pg) & set(ex), key=repr):
        for c, t in types.items():
            want, got = canonical(t, pg[k][c]), canonical(t, ex[k][c])
            if want != got:
                problems.append(f"{table} {k} {c} ({t}): export {_short(ex[k][c])} != PostgreSQL {_short(pg[k][c])}")
                if len(problems) > 12:
                    return problems
    return problems


# --------------------------------------------------------------------------------------------
# fixtures and helpers
# --------------------------------------------------------------------------------------------


@pytest.fixture
def truth_db(pg_cluster, request):
    """A fresh, empty database; replication slots dropped and the database removed afterwards."""
    name = "truth_" + re.sub(r"[^a-z0-9]", "_", request.node.callspec.id.lower())[:20] + "_" + uuid.uuid4().hex[:6]
    with psycopg.connect(pg_cluster.dsn(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield pg_cluster.dsn(name)
    with psycopg.connect(pg_cluster.dsn(), autocommit=True) as conn:
        for _ in range(20):  # a walsender may still be attached for a moment after a capture exits
            conn.execute("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
                         "WHERE database = %s AND active_pid IS NOT NULL", (name,))
            try:
                for (slot,) in conn.execute("SELECT slot_name FROM pg_replication_slots WHERE database = %s",
                                            (name,)).fetchall():
                    conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
                break
            except psycopg.errors.ObjectInUse:
                time.sleep(0.5)
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Run:
    """One seed's lake, state, capture and bookkeeping."""

    def __init__(self, seed: int, dsn: str, tmp: Path):
        self.seed, self.dsn, self.tmp = seed, dsn, tmp
        self.rng = random.Random(f"truth-test-{seed}")  # the test's own choices, apart from the workload's
        self.lake, self.state, self.capture_state = tmp / "lake", tmp / "state", tmp / "capture"
        self.flush_size = self.rng.randint(7, 50)
        self.capture: Capture | None = None
        self.marker_conn = psycopg.connect(dsn, autocommit=True)
        self.next_marker = 1
        self.steps: list[tuple[str, dict[str, str]]] = []  # (label, table -> status)
        self.incremental = 0  # table steps that applied new objects onto an existing state
        self.product_duplicates = 0
        self.compared = 0
        self.config_file = tmp / "tables.yaml"
        self.config_file.write_text("tables:\n" + "".join(
            f"  - topic: {topic(t)}\n    primary_key: [{', '.join(k)}]\n" for t, k in TABLES.items()))

    def start_capture(self) -> None:
        self.capture = Capture(self.dsn, self.lake, self.capture_state, "--topic-prefix", PREFIX,
                               "--flush-size", str(self.flush_size)).start()

    def value_objects(self, table: str | None = None) -> int:
        base = self.lake / "topics"
        dirs = [base / topic(table) / "partition=0"] if table else [d / "partition=0" for d in base.glob("*")]
        n = 0
        for d in dirs:
            with contextlib.suppress(FileNotFoundError):
                n += sum(1 for e in os.scandir(d) if e.name.endswith(".parquet") and ".keys." not in e.name
                         and ".headers." not in e.name)
        return n

    # -- catch-up ----------------------------------------------------------------------------

    def _marker_op(self, m: int) -> str | None:
        if not (self.lake / "topics" / topic("chaos.marker")).exists():
            return None
        events = LakeReader(LocalStore(self.lake)).read_changes(topic("chaos.marker"))
        ops = events.filter(pc.equal(events.column("id"), m)).column("__op").to_pylist()
        return "c" if "c" in ops else (ops[0] if ops else None)

    def _marker(self) -> str:
        m = self.next_marker
        self.next_marker += 1
        self.marker_conn.execute("INSERT INTO chaos.marker (id) VALUES (%s)", [m])
        seen: list[str | None] = [None]

        def visible():
            seen[0] = self._marker_op(m)
            return True if seen[0] else f"marker {m} not in the lake yet"

        wait_for(visible, self.capture, timeout=120, what=f"marker {m}")
        return seen[0]

    def catch_up(self) -> None:
        """Everything committed so far is in the lake (see the module docstring)."""
        while self._marker() != "c":  # a marker read by the snapshot says nothing about streaming
            pass
        self._marker()

    # -- compaction and comparison --------------------------------------------------------------

    def step(self, label: str) -> None:
        had_state = {t: (self.state / t / "_delta_log").exists() for t in TABLES}
        options = CompactOptions(batch_events=self.rng.choice([10, 37, 150, 1000, 1_000_000]))
        results = compact(str(self.lake), str(self.state), CONFIG, options=options)
        failed = [f"{r.table}: {r.error}" for r in results if r.status == "failed"]
        assert not failed, f"seed {self.seed} step {label}: compaction failed: {failed}"
        for r in results:
            self.product_duplicates += r.duplicates
            if r.status == "applied" and had_state[r.table]:
                self.incremental += 1
        self.steps.append((label, {r.table: r.status for r in results}))

    def step_cli(self, label: str) -> subprocess.Popen:
        """Start ``lakehouse compact`` (the CLI) in the background; see ``finish_cli``."""
        batch = self.rng.choice([25, 200, 1_000_000])
        return subprocess.Popen(
            [sys.executable, "-m", "lakehouse.cli", "compact", "--lake", str(self.lake), "--state", str(self.state),
             "--tables-config", str(self.config_file), "--batch-events", str(batch)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def finish_cli(self, proc: subprocess.Popen, label: str) -> None:
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"seed {self.seed} step {label}: lakehouse compact failed:\n{out[-3000:]}"
        self.steps.append((label, {"*": "cli"}))

    def compare(self, label: str, workload: Workload, cli_table: str | None = None) -> None:
        problems: list[str] = []
        for table in TABLES:
            types, rows = pg_table(self.marker_conn, table)
            lake = visible_rows(str(self.state), table)
            problems += diff_table(table, types, rows, lake, workload.dropped[table])
            if table == cli_table:  # the same table through `lakehouse export`
                out = self.tmp / f"{table}.parquet"
                proc = subprocess.run([sys.executable, "-m", "lakehouse.cli", "export", "--state", str(self.state),
                                       "--table", table, "--out", str(out)], capture_output=True, text=True,
                                      timeout=120)
                assert proc.returncode == 0, proc.stdout + proc.stderr
                problems += [f"(lakehouse export) {p}" for p in
                             diff_table(table, types, rows, pq.read_table(out), workload.dropped[table])]
        self.compared += 1
        assert not problems, f"seed {self.seed}, after {label}:\n" + "\n".join(problems)

    # -- kill -9 in the middle of a large transaction ----------------------------------------------

    def kill_mid_write(self, workload: Workload) -> None:
        """A transaction of thousands of events; ``kill -9`` as soon as the capture has written
        the first objects of it (before it can mark them durable), more work while it is down,
        then a restart: Debezium re-emits everything after its last committed offset."""
        before = self.value_objects()
        workload.big_transaction()
        deadline = time.monotonic() + 60
        while self.value_objects() == before:
            self.capture.assert_alive()
            assert time.monotonic() < deadline, "the capture wrote nothing of the large transaction"
            time.sleep(0.002)
        self.capture.kill9()
        workload.run(25)
        self.start_capture()

    def lake_evidence(self) -> dict[str, int]:
        """Replays and TOAST placeholders really are in the lake (the test cannot pass vacuously)."""
        reader = LakeReader(LocalStore(self.lake))
        duplicates = placeholders_u = placeholders_c = events = 0
        for table, key in TABLES.items():
            ev = reader.read_changes(topic(table))
            events += ev.num_rows
            ident = ev.filter(pc.not_equal(ev.column("__op"), "t")).select(
                [*key, "__op", "__lsn", "__tx_id", "__snapshot"])
            duplicates += ident.num_rows - ident.group_by(ident.column_names).aggregate([]).num_rows
            if table == "chaos.docs":
                for col in ("body", "blob", "tags", "nums", "refs", "meta"):
                    ph = is_toast_placeholder(ev.column(col).combine_chunks())
                    placeholders_u += pc.sum(pc.and_(ph, pc.equal(ev.column("__op"), "u"))).as_py() or 0
                    placeholders_c += pc.sum(pc.and_(ph, pc.equal(ev.column("__op"), "c"))).as_py() or 0
        return {"events": events, "duplicates": duplicates, "toast_u": placeholders_u, "toast_c": placeholders_c}


# --------------------------------------------------------------------------------------------
# the test
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", _seeds())
def test_export_equals_postgres(seed, truth_db, tmp_path):
    started = time.monotonic()
    workload = Workload(truth_db, seed)
    run = Run(seed, truth_db, tmp_path)
    try:
        workload.setup()
        run.start_capture()
        run.catch_up()
        run.step("snapshot")
        run.compare("snapshot", workload)

        ddl_plan = workload.plan_ddl(PHASES)
        kill_phase, live_phase = run.rng.sample(range(PHASES - 1), 2)
        for phase in range(PHASES):
            workload.run(STATEMENTS_PER_PHASE, ddl_plan[phase])
            if phase == live_phase:  # compact while the capture is still writing a burst
                workload.burst()
                proc = run.step_cli(f"phase {phase} (live)")
                workload.run(20)
                run.finish_cli(proc, f"phase {phase} (live)")
            if phase == kill_phase:
                run.kill_mid_write(workload)
            if phase < PHASES - 1:
                run.catch_up()
                run.step(f"phase {phase}")
                run.compare(f"phase {phase}", workload)
        stats = run.capture.stop()
        run.step("final")
        cli_table = run.rng.choice(list(TABLES))
        run.compare("final", workload, cli_table=cli_table)

        evidence = run.lake_evidence()
        print(f"\nseed {seed}: {evidence['events']} events, {run.value_objects()} objects (flush size "
              f"{run.flush_size}), {evidence['duplicates']} replayed duplicates in the lake "
              f"({run.product_duplicates} dropped by compaction), {evidence['toast_u']}+{evidence['toast_c']} "
              f"TOAST placeholders (u+c), {len(run.steps)} steps ({run.incremental} incremental table steps), "
              f"{run.compared} comparisons, {workload.stats.statements} statements ({workload.stats.commits} "
              f"commits, {workload.stats.rollbacks} rollbacks), capture {stats['events']} events in its last run, "
              f"{time.monotonic() - started:.1f} s")
        assert evidence["duplicates"] > 0, "no replays in the lake: the kill -9 phase did not produce any"
        assert run.product_duplicates > 0, "compaction dropped no duplicates"
        assert evidence["toast_u"] > 0 and evidence["toast_c"] > 0, evidence
        assert run.incremental > 0, run.steps
    finally:
        workload.close()
        run.marker_conn.close()
