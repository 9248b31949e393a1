"""The truth test of current-state compaction (issue 4): real capture, real PostgreSQL 15.

Per seed: a fresh database with the ``chaos`` schema and its first rows (``truth_workload.py``),
``lakehouse capture`` (flush size 7..50, a rotation every 0.3 s), then the seeded workload in five
phases (two interleaved connections, every comparable §4.4 type, TOAST, key changes,
delete-and-reinsert, ADD/DROP COLUMN, widening, REPLICA IDENTITY FULL, TRUNCATE). Compaction runs
in steps with random batch sizes: after the snapshot and after each phase once the capture has
caught up; in one phase through ``lakehouse compact`` while the capture is still writing a burst;
in another phase the capture is killed (``kill -9``) as soon as it has written the first objects
of a large transaction, the workload goes on while it is down, and after the restart one step
runs in the middle of the replay (Debezium re-emits everything after its last committed offset,
so the lake holds duplicates). After every quiescent step, and at the end after a clean stop, the
export of every table (the Python API; ``lakehouse export`` for one table) must equal
``SELECT *`` exactly: every key, every current column (``canonical`` below is the only place where
values are made comparable). Columns the export has beyond PostgreSQL's are allowed only if the
workload dropped them. On a difference, the plain test oracle (``oracle.lake_state``) is run too,
so the message tells a capture problem (the lake is wrong) from a compaction problem.

Catch-up (when is everything committed in PostgreSQL durable in the lake?): with the workload
idle, the test inserts a row ``m`` into ``chaos.marker`` and waits until the lake holds it as a
streamed ``c`` event (a snapshot ``r`` says nothing: another marker is taken), then does the same
with ``m + 1``. PostgreSQL streams whole transactions in commit order, so once ``m`` is visible the
capture has received everything committed before it. The capture writes objects only on its engine
thread; a marker object holds one row (two after a replay), far below the flush size, so ``m`` was
written by a scheduled rotation, which writes every open file before that engine call returns.
``m + 1`` was committed after ``m`` was seen, so it is received in a later engine call: once it is
visible, everything before ``m`` is written. (A clean stop does not wait for what PostgreSQL has
not sent yet, so the test catches up before stopping too.)

Seeds: ``TRUTH_SEEDS`` = a count (``10`` -> seeds 1..10) or a comma list (``3,17``); default 1,2
(about 45 s each on 2 cores); on the BigQuery engine ``TRUTH_BIGQUERY_SEEDS``, default 1 (about 100 s
each on the emulator: seed 2 is left out of CI for its time limit). ``pytest -s`` prints a line per seed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from support.bq_emulator import fold_engine
from support.capture_process import Capture, _no_capture_left_running  # noqa: F401 (autouse fixture)
from support.oracle import lake_state
from support.pgdb import drop_database
from support.truth_workload import TABLES, Workload

from lakehouse.config import TableConfig, TablesConfig
from lakehouse.lake.connect import parse_avro_schema
from lakehouse.lake.reader import LakeReader, SchemaConflictError
from lakehouse.lake.semantic import is_toast_placeholder
from lakehouse.lake.sink import SinkConfig, SinkWriter
from lakehouse.lake.store import LocalStore
from lakehouse.state.compact import CompactOptions, compact
from lakehouse.state.engine import FoldEngine
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


def _cases() -> list:
    """Every seed on the local engine; the BigQuery engine (the emulator) on TRUTH_BIGQUERY_SEEDS."""
    bigquery = [int(s) for s in os.environ.get("TRUTH_BIGQUERY_SEEDS", "1").split(",") if s.strip()]
    return [pytest.param(seed, "local", id=f"{seed}-local") for seed in _seeds()] + [
        pytest.param(seed, "bigquery", id=f"{seed}-bigquery") for seed in bigquery
    ]


def topic(table: str) -> str:
    return f"{PREFIX}.{table}"


CONFIG = TablesConfig(tables=tuple(TableConfig(topic=topic(t), primary_key=k) for t, k in TABLES.items()))
# the same lake into a second state whose evolve table keeps dropped columns (dropped_columns: keep)
KEEP_CONFIG = TablesConfig(
    tables=(
        TableConfig(topic=topic("chaos.evolve"), primary_key=TABLES["chaos.evolve"], dropped_columns="keep"),
    )
)


# --------------------------------------------------------------------------------------------
# comparison: PostgreSQL value <-> lake value
# --------------------------------------------------------------------------------------------

# How each PostgreSQL type is selected so psycopg returns the form Debezium starts from (every
# other column is selected as is). These are casts to PostgreSQL's own text output or an exact
# numeric, never a rounding.
# format('%s', x) is the type's output function: the text PostgreSQL sends to Debezium (x::text
# can differ from it, e.g. inet '1.2.3.4/32'::text keeps the /32 the output function omits).
_OUT = "CASE WHEN {c} IS NULL THEN NULL ELSE format('%s', {c}) END"
_SELECT_AS = {
    "json": _OUT,  # json keeps the client's text byte for byte; Debezium sends that text
    "jsonb": _OUT,  # jsonb's normalized text, which is also what Debezium sends
    "uuid": _OUT,
    "uuid[]": "{c}::text[]",
    "inet": _OUT,  # psycopg's ipaddress objects print differently (e.g. no /32)
    "cidr": _OUT,
    "int4range": _OUT,
    "tsrange": _OUT,
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
    if pg_type == "numeric":
        # unconstrained numeric (VariableScaleDecimal, exact decimal text in the export): the value
        # is exact, its display scale is not: Debezium drops trailing fractional zeros (PostgreSQL
        # 1.50 arrives as scale 1, 1.5); compared as plain text without trailing fractional zeros
        text = format(Decimal(v), "f")
        return text.rstrip("0").rstrip(".") if "." in text else text
    if pg_type.startswith("numeric") or pg_type == "money":
        # numeric(p,s), money (Decimal from psycopg, decimal128/256 or exact text from the export):
        # plain notation with every digit, the scale included ('1.50' != '1.5')
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
    return v


def pg_table(conn: psycopg.Connection, table: str) -> tuple[dict[str, str], list[dict]]:
    """PostgreSQL's current columns (name -> format_type) and all rows (``SELECT *`` with the
    casts above)."""
    cols = conn.execute(
        """SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute
           WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum""",
        [table],
    ).fetchall()
    types = dict(cols)
    exprs = ", ".join(f'{_select_expr(c, t)} AS "{c}"' for c, t in cols)
    cur = conn.execute(f"SELECT {exprs} FROM {table}")
    names = [d.name for d in cur.description]
    return types, [dict(zip(names, r)) for r in cur.fetchall()]


def _short(v: object) -> str:
    s = repr(v)
    return s if len(s) <= 90 else s[:60] + f"...<{len(s)} chars>"


def diff_table(
    table: str, types: dict[str, str], pg_rows: list[dict], lake: pa.Table | list[dict], dropped: set[str]
) -> list[str]:
    """Every difference between PostgreSQL's rows and the export (empty when equal)."""
    key = TABLES[table]
    problems: list[str] = []
    if isinstance(lake, pa.Table):
        columns, lake_rows = lake.column_names, lake.to_pylist()
    else:
        columns, lake_rows = list(dict.fromkeys(c for r in lake for c in r)) or list(types), lake
    missing_cols = [c for c in types if c not in columns]
    if missing_cols:
        problems.append(f"{table}: columns {missing_cols} missing in the export")
    extra = set(columns) - set(types)
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
    ex = by_key(lake_rows, "the export")
    for k in sorted(set(pg) - set(ex), key=repr)[:5]:
        problems.append(f"{table}: {k} missing in the export")
    for k in sorted(set(ex) - set(pg), key=repr)[:5]:
        problems.append(f"{table}: {k} in the export but not in PostgreSQL")
    for k in sorted(set(pg) & set(ex), key=repr):
        for c, t in types.items():
            want, got = canonical(t, pg[k][c]), canonical(t, ex[k][c])
            if want != got:
                problems.append(
                    f"{table} {k} {c} ({t}): export {_short(ex[k][c])} != PostgreSQL {_short(pg[k][c])}"
                )
                if len(problems) > 12:
                    return problems
    return problems


# --------------------------------------------------------------------------------------------
# fixtures and helpers
# --------------------------------------------------------------------------------------------


@pytest.fixture
def truth_db(pg_cluster, request):
    """A fresh, empty database; replication slots dropped and the database removed afterwards."""
    name = (
        "truth_"
        + re.sub(r"[^a-z0-9]", "_", request.node.callspec.id.lower())[:20]
        + "_"
        + uuid.uuid4().hex[:6]
    )
    with psycopg.connect(pg_cluster.dsn(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield pg_cluster.dsn(name)
    drop_database(pg_cluster, name)


class Run:
    """One seed's lake, state, capture and bookkeeping."""

    def __init__(self, seed: int, dsn: str, tmp: Path, engine: FoldEngine, engine_env: dict[str, str]):
        self.seed, self.dsn, self.tmp = seed, dsn, tmp
        self.engine, self.engine_env = engine, engine_env
        # each BigQuery fold is a few jobs: batches of 10 events would take the emulator too long
        self.batch_sizes = (
            [10, 37, 150, 1000, 1_000_000] if engine.kind == "local" else [150, 1000, 1_000_000]
        )
        self.rng = random.Random(f"truth-test-{seed}")  # the test's own choices, apart from the workload's
        self.lake, self.state, self.capture_state = tmp / "lake", tmp / "state", tmp / "capture"
        self.state_keep = tmp / "state_keep"
        self.resnapshots = 0
        self.flush_size = self.rng.randint(7, 50)
        self.capture: Capture | None = None
        self.marker_conn = psycopg.connect(dsn, autocommit=True)
        self.next_marker = 1
        self._marker_files: set[str] = set()
        self._markers_seen: dict[int, set[str]] = {}
        self.steps: list[tuple[str, dict[str, str]]] = []  # (label, table -> status)
        self.incremental = 0  # table steps that applied new objects onto an existing state
        self.product_duplicates = 0
        self.engine_folds = 0  # batches the engine folded (BigQuery: each one a script)
        self.compared = 0
        self.config_file = tmp / "tables.yaml"
        self.config_file.write_text(
            "tables:\n"
            + "".join(
                f"  - topic: {topic(t)}\n    primary_key: [{', '.join(k)}]\n" for t, k in TABLES.items()
            )
        )

    def start_capture(self) -> None:
        # a rotation every 0.3 s (the last --rotate-interval wins): quicker catch-ups, more objects
        self.capture = Capture(
            self.dsn,
            self.lake,
            self.capture_state,
            "--topic-prefix",
            PREFIX,
            "--flush-size",
            str(self.flush_size),
            "--rotate-interval",
            "0.3",
        ).start()

    def value_objects(self, table: str | None = None) -> int:
        base = self.lake / "topics"
        dirs = [base / topic(table) / "partition=0"] if table else [d / "partition=0" for d in base.glob("*")]
        n = 0
        for d in dirs:
            with contextlib.suppress(FileNotFoundError):
                n += sum(
                    1
                    for e in os.scandir(d)
                    if e.name.endswith(".parquet") and ".keys." not in e.name and ".headers." not in e.name
                )
        return n

    # -- catch-up ----------------------------------------------------------------------------

    def _marker_ops(self) -> dict[int, set[str]]:
        """marker id -> ops, from the marker topic's objects not read before (each read once)."""
        folder = self.lake / "topics" / topic("chaos.marker") / "partition=0"
        if folder.exists():
            for e in os.scandir(folder):
                if (
                    e.name.endswith(".parquet")
                    and ".headers." not in e.name
                    and e.name not in self._marker_files
                ):
                    self._marker_files.add(e.name)
                    t = pq.read_table(e.path, columns=["op", "after"])
                    ids = pc.struct_field(t.column("after"), "id").to_pylist()
                    for i, op in zip(ids, t.column("op").to_pylist()):
                        if i is not None:
                            self._markers_seen.setdefault(i, set()).add(op)
        return self._markers_seen

    def _marker(self) -> str:
        """Insert the next marker; wait until the lake holds it; its op (``c`` or snapshot ``r``)."""
        m = self.next_marker
        self.next_marker += 1
        self.marker_conn.execute("INSERT INTO chaos.marker (id) VALUES (%s)", [m])
        deadline = time.monotonic() + 120
        while m not in self._marker_ops():
            self.capture.assert_alive()
            assert time.monotonic() < deadline, f"seed {self.seed}: marker {m} never reached the lake"
            time.sleep(0.05)
        return "c" if "c" in self._markers_seen[m] else "r"

    def catch_up(self) -> None:
        """Everything committed so far is in the lake (see the module docstring)."""
        while self._marker() != "c":  # a marker read by the snapshot says nothing about streaming
            pass
        self._marker()

    # -- compaction and comparison --------------------------------------------------------------

    def step(self, label: str) -> None:
        had_state = {t: (self.state / t / "_delta_log").exists() for t in TABLES}
        options = CompactOptions(batch_events=self.rng.choice(self.batch_sizes), engine=self.engine)
        results = compact(str(self.lake), str(self.state), CONFIG, options=options)
        failed = [f"{r.table}: {r.error}" for r in results if r.status == "failed"]
        assert not failed, f"seed {self.seed} step {label}: compaction failed: {failed}"
        self.engine_folds += sum(r.engine.folds for r in results)
        for r in results:
            self.product_duplicates += r.duplicates
            if r.status == "applied" and had_state[r.table]:
                self.incremental += 1
        self.steps.append((label, {r.table: r.status for r in results}))
        kept = compact(str(self.lake), str(self.state_keep), KEEP_CONFIG, options=options)
        assert not [r for r in kept if r.failed], [r.error for r in kept]

    def step_cli(self, label: str) -> subprocess.Popen:
        """Start ``lakehouse compact`` (the CLI) in the background; see ``finish_cli``."""
        batch = self.rng.choice([25, 200, 1_000_000])
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "lakehouse.cli",
                "compact",
                "--lake",
                str(self.lake),
                "--state",
                str(self.state),
                "--tables-config",
                str(self.config_file),
                "--batch-events",
                str(batch),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **self.engine_env},
        )

    def finish_cli(self, proc: subprocess.Popen, label: str) -> None:
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, (
            f"seed {self.seed} step {label}: lakehouse compact failed:\n{out[-3000:]}"
        )
        # the CLI folded on this run's engine (it names a non-local engine in its summary)
        assert ("engine bigquery:" in out) == (self.engine.kind == "bigquery"), out[-3000:]
        self.steps.append((label, {"*": "cli"}))

    def compare(self, label: str, workload: Workload, cli_table: str | None = None) -> None:
        problems: list[str] = []
        for table in TABLES:
            types, rows = pg_table(self.marker_conn, table)
            lake = visible_rows(str(self.state), table)
            problems += diff_table(table, types, rows, lake, set())  # exactly PostgreSQL's columns
            if table == "chaos.evolve":  # dropped columns kept: PostgreSQL's columns and values, plus those
                kept = visible_rows(str(self.state_keep), table)
                problems += [
                    f"(dropped_columns: keep) {p}"
                    for p in diff_table(table, types, rows, kept, workload.dropped[table])
                ]
                absent = workload.dropped[table] - set(kept.column_names)
                if absent:
                    problems.append(
                        f"(dropped_columns: keep) {table}: dropped columns {sorted(absent)} not kept"
                    )
            if table == cli_table:  # the same table through `lakehouse export`
                out = self.tmp / f"{table}.parquet"
                proc = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "lakehouse.cli",
                        "export",
                        "--state",
                        str(self.state),
                        "--table",
                        table,
                        "--out",
                        str(out),
                    ],
                    capture_output=True,
                    text=True,
                    timeout=120,
                )
                assert proc.returncode == 0, proc.stdout + proc.stderr
                problems += [
                    f"(lakehouse export) {p}"
                    for p in diff_table(table, types, rows, pq.read_table(out), set())
                ]
        self.compared += 1
        if problems:  # tell a capture problem from a compaction problem: the plain test oracle
            reader = LakeReader(LocalStore(self.lake))
            for table in TABLES:
                types, rows = pg_table(self.marker_conn, table)
                try:
                    plain = diff_table(
                        table,
                        types,
                        rows,
                        list(lake_state(reader, topic(table), TABLES[table]).values()),
                        workload.dropped[table],
                    )
                except SchemaConflictError as exc:  # the plain oracle merges one schema per topic
                    problems.append(f"(oracle) {table}: cannot apply the lake plainly: {exc}")
                    continue
                problems.append(
                    f"(oracle) {table}: "
                    + (
                        "the lake applied plainly equals PostgreSQL"
                        if not plain
                        else "the lake applied plainly differs too: " + plain[0]
                    )
                )
        assert not problems, f"seed {self.seed}, after {label}:\n" + "\n".join(problems)

    # -- kill -9 in the middle of a large transaction ----------------------------------------------

    def kill_mid_write(self, workload: Workload) -> None:
        """A transaction of thousands of events; ``kill -9`` as soon as the capture has written
        the first objects of it (before it can mark them durable), more work while it is down,
        then a restart: Debezium re-emits everything after its last committed offset."""
        self.catch_up()  # nothing else left to write: the next objects are the transaction's
        before = self.value_objects("chaos.pairs")
        workload.big_transaction()
        deadline = time.monotonic() + 60
        while self.value_objects("chaos.pairs") == before:
            self.capture.assert_alive()
            assert time.monotonic() < deadline, "the capture wrote nothing of the large transaction"
            time.sleep(0.002)
        self.capture.kill9()
        workload.run(25)
        before = self.value_objects()
        self.start_capture()
        # one compaction step in the middle of the replay (the rest of it comes in later steps)
        deadline = time.monotonic() + 120
        while self.value_objects() == before:
            self.capture.assert_alive()
            assert time.monotonic() < deadline, "the restarted capture wrote nothing"
            time.sleep(0.01)
        self.step("mid-replay")

    # -- the S3 sink writing the same records again ---------------------------------------------

    def redeliver(self) -> int:
        """Sink sessions that resume from earlier offsets with other flush sizes, as after a crash
        before the offset commit or a connector config change (spec §2.5): one overwrites an applied
        object with a superset, one cuts the records anew from inside an object (nested and spanning
        re-cuts). Returns how many objects they wrote."""
        written = 0
        for table in TABLES:
            folder = self.lake / "topics" / topic(table) / "partition=0"
            names = sorted(
                (
                    e.name
                    for e in os.scandir(folder)
                    if e.name.endswith(".parquet") and ".keys." not in e.name and ".headers." not in e.name
                ),
                key=lambda n: int(n.rsplit("+", 1)[1].split(".")[0]),
            )
            runs = []
            for name in names:
                pf = pq.ParquetFile(folder / name)
                start = int(name.rsplit("+", 1)[1].split(".")[0])
                if runs and runs[-1][2] + runs[-1][0].num_rows != start:
                    break  # offsets not contiguous here: the records' own offsets are unknown
                footer = pf.metadata.metadata[b"parquet.avro.schema"].decode()
                runs.append((pf.read(), footer, start))
            if len(runs) < 4:
                continue
            superset_from = runs[len(runs) // 2][2]  # an object's own start: PUT again, bigger
            inside = runs[len(runs) * 3 // 4]
            recut_from = inside[2] + inside[0].num_rows // 2  # inside an object: nested and spanning
            for first, flush in ((superset_from, self.flush_size * 3), (recut_from, 7)):
                sink = SinkWriter(LocalStore(self.lake), SinkConfig(flush_size=flush))
                for records, footer, start in runs:
                    offsets = np.arange(start, start + records.num_rows)
                    keep = np.flatnonzero(offsets >= first)
                    if len(keep):
                        sink.write(
                            topic(table),
                            0,
                            records.take(pa.array(keep)),
                            parse_avro_schema(footer),
                            offsets[keep],
                            avro_json=footer,
                        )
                sink.close()
                written += len(sink.objects_written)
        return written

    # -- a new snapshot after deletes Debezium never saw -----------------------------------------

    def resnapshot(self, workload: Workload) -> None:
        """Stop the capture, change rows while nothing streams (deletes among them), drop the
        replication slot and the capture's offsets, capture again: Debezium takes a new full
        snapshot, and the deleted rows produce no delete events (spec §5.6)."""
        self.catch_up()
        self.capture.stop()
        for _ in range(3):
            for op in (
                "op_item_delete",
                "op_pair_delete",
                "op_doc_delete",
                "op_evolve_delete",
                "op_item_insert",
                "op_item_update",
                "op_pair_insert",
            ):
                getattr(workload, op)(workload.a)
        self.marker_conn.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
            "WHERE database = current_database()"
        )
        shutil.rmtree(self.capture_state, ignore_errors=True)
        self.start_capture()
        self.resnapshots += 1

    def lake_evidence(self) -> dict[str, int]:
        """Replays and TOAST placeholders really are in the lake (the test cannot pass vacuously)."""
        reader = LakeReader(LocalStore(self.lake))
        duplicates = placeholders_u = placeholders_c = events = 0
        snapshots: set[int] = set()
        for table, key in TABLES.items():
            ev = _read_events(
                reader,
                topic(table),
                [*key, "__op", "__lsn", "__tx_id", "__snapshot"]
                + (["body", "blob", "tags", "nums", "refs", "meta"] if table == "chaos.docs" else []),
            )
            events += ev.num_rows
            ident = ev.filter(pc.not_equal(ev.column("__op"), "t")).select(
                [*key, "__op", "__lsn", "__tx_id", "__snapshot"]
            )
            duplicates += ident.num_rows - ident.group_by(ident.column_names).aggregate([]).num_rows
            reads = ev.filter(pc.equal(ev.column("__op"), "r"))
            snapshots |= set(reads.column("__tx_id").to_pylist())
            if table == "chaos.docs":
                for col in ("body", "blob", "tags", "nums", "refs", "meta"):
                    ph = is_toast_placeholder(ev.column(col).combine_chunks())
                    placeholders_u += pc.sum(pc.and_(ph, pc.equal(ev.column("__op"), "u"))).as_py() or 0
                    placeholders_c += pc.sum(pc.and_(ph, pc.equal(ev.column("__op"), "c"))).as_py() or 0
        return {
            "events": events,
            "duplicates": duplicates,
            "toast_u": placeholders_u,
            "toast_c": placeholders_c,
            "snapshots": len(snapshots),
        }


def _read_events(reader: LakeReader, name: str, columns: list[str]) -> pa.Table:
    """Some columns of every event of a topic, object by object (a column dropped and added again
    with another type cannot share one merged schema)."""
    parts = []
    for obj in reader.scan(name).objects.get(name, []):
        plan = reader.plan(name, [obj])
        parts.append(
            pa.Table.from_batches(list(reader.iter_changes(plan)), schema=plan.schema).select(
                [c for c in columns if c in plan.schema.names]
            )
        )
    return pa.concat_tables(parts, promote_options="permissive")


# --------------------------------------------------------------------------------------------
# the test
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("seed", "engine"), _cases())
def test_export_equals_postgres(seed, engine, truth_db, tmp_path, request):
    started = time.monotonic()
    workload = Workload(truth_db, seed)
    run = Run(seed, truth_db, tmp_path, *fold_engine(engine, request))
    workload.before_set_default = run.catch_up
    try:
        workload.setup()
        run.start_capture()
        run.catch_up()
        run.step("snapshot")
        run.compare("snapshot", workload)

        ddl_plan = workload.plan_ddl(PHASES)
        kill_phase, live_phase, resnap_phase = run.rng.sample(range(PHASES - 1), 3)
        for phase in range(PHASES):
            workload.run(STATEMENTS_PER_PHASE, ddl_plan[phase])
            if phase == live_phase:  # compact while the capture is still writing a burst
                workload.burst()
                proc = run.step_cli(f"phase {phase} (live)")
                workload.run(20)
                run.finish_cli(proc, f"phase {phase} (live)")
            if phase == kill_phase:
                run.kill_mid_write(workload)
            if phase == resnap_phase:
                run.resnapshot(workload)
            run.catch_up()  # also before the stop: a stop does not wait for what PostgreSQL has not sent yet
            if phase < PHASES - 1:
                run.step(f"phase {phase}")
                run.compare(f"phase {phase}", workload)
        stats = run.capture.stop()
        run.step("final")
        cli_table = run.rng.choice(list(TABLES))
        run.compare("final", workload, cli_table=cli_table)
        # the sink writes applied records again (superset overwrite, re-cuts): no rebuild, still equal
        if os.environ.get("TRUTH_DEBUG"):  # keep lake and state as they were, to replay a failure
            shutil.copytree(run.lake, tmp_path / "before-lake")
            shutil.copytree(run.state, tmp_path / "before-state")
        recut = run.redeliver()
        results = compact(
            str(run.lake), str(run.state), CONFIG, options=CompactOptions(batch_events=150, engine=run.engine)
        )
        assert not [r.error for r in results if r.failed]
        assert not [r.notes for r in results if r.status == "rebuilt"], "a re-delivery rebuilt a table"
        redelivered = sum(r.redelivered for r in results)
        assert recut and redelivered, (recut, [(r.table, r.redelivered) for r in results])
        run.compare("re-delivered", workload)

        evidence = run.lake_evidence()
        print(
            f"\nseed {seed}: {evidence['events']} events, {run.value_objects()} objects (flush size "
            f"{run.flush_size}), {evidence['duplicates']} replayed duplicates in the lake "
            f"({run.product_duplicates} dropped by compaction), {evidence['toast_u']}+{evidence['toast_c']} "
            f"TOAST placeholders (u+c), {len(run.steps)} steps ({run.incremental} incremental table steps, "
            f"{sum(st == 'rebuilt' for _, s in run.steps for st in s.values())} rebuilds), "
            f"{run.compared} comparisons, {workload.stats.statements} statements ({workload.stats.commits} "
            f"commits, {workload.stats.rollbacks} rollbacks), {recut} objects written again ({redelivered} "
            f"re-read with copies), capture {stats['events']} events in its last run, "
            f"{time.monotonic() - started:.1f} s"
        )
        assert evidence["duplicates"] > 0, "no replays in the lake: the kill -9 phase did not produce any"
        assert run.resnapshots == 1 and evidence["snapshots"] >= 2, evidence
        assert evidence["toast_u"] > 0 and evidence["toast_c"] > 0, evidence
        assert run.incremental > 0, run.steps
        assert run.engine_folds >= run.incremental, (engine, run.engine_folds)
    finally:
        workload.close()
        run.marker_conn.close()
