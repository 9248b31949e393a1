"""Row history (issue 16, SCD type 2) against real PostgreSQL 15 and the real Debezium engine.

Feedback given, changed and withdrawn, classifications re-scored (their TOASTed rationale
untouched: Debezium's placeholder) and re-keyed (a primary-key change), one transaction at a
time. After every commit the test records PostgreSQL's clock and ``SELECT *`` of both tables.
The captured objects reach the lake with one object late (compaction rebuilds, the history with
it) and one replayed (Debezium's re-emission at new offsets). At each step
``export --as-of T`` equals the table at every recorded T the lake already covers, the current
versions equal ``export``, and a replay adds no version.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import psycopg
import pytest
from support.capture_process import Capture, _no_capture_left_running, wait_for  # noqa: F401 (autouse fixture)
from support.oracle import compare, pg_state

from lakehouse.config import TableConfig, TablesConfig
from lakehouse.lake.reader import LakeReader
from lakehouse.lake.store import LocalStore
from lakehouse.state.compact import compact
from lakehouse.state.export import table_history, visible_rows

pytestmark = pytest.mark.slow

TABLES = ("scan.feedback", "scan.classification_results")
CONFIG = TablesConfig(
    tables=tuple(TableConfig(topic=f"eco2.{t}", primary_key=["id"], history=True) for t in TABLES)
)
# > 2 KB and incompressible: stored out of line (TOAST), so updates that leave it carry the placeholder
LONG = "'분리수거 근거 ' || (SELECT string_agg(md5(g::text || i::text), '') FROM generate_series(1, 120) i)"


def workload(dsn: str) -> list[tuple[str, dict]]:
    """Transactions one at a time; after each: (PostgreSQL's clock, SELECT * of both tables)."""
    steps = [
        "INSERT INTO scan.feedback (scan_id, user_id, thumbs_up, created_at) "
        "SELECT gen_random_uuid(), g, true, now() FROM generate_series(1, 6) g",
        "INSERT INTO scan.classification_results (scan_id, category, confidence, rationale, model, created_at) "
        f"SELECT gen_random_uuid(), 'plastic', 0.9, {LONG}, 'gpt-4o', now() FROM generate_series(1, 4) g",
        "UPDATE scan.feedback SET thumbs_up = false, corrected_category = 'glass', updated_at = now() WHERE id = 2",
        "UPDATE scan.classification_results SET confidence = 0.55 WHERE id = 1",  # rationale: the placeholder
        "DELETE FROM scan.feedback WHERE id = 3",  # withdrawn
        "UPDATE scan.feedback SET corrected_category = 'can', updated_at = now() WHERE id = 2",
        "UPDATE scan.classification_results SET id = 100 WHERE id = 2",  # a key change, TOAST untouched
        "INSERT INTO scan.feedback (scan_id, user_id, thumbs_up, created_at) VALUES (gen_random_uuid(), 9, false, now())",
        "UPDATE scan.feedback SET thumbs_up = true, corrected_category = NULL, updated_at = now() WHERE id = 2",
        "DELETE FROM scan.classification_results WHERE id = 3",
    ]
    out = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        for sql in steps:
            conn.execute(sql)
            at = conn.execute(
                "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US')"
            ).fetchone()[0]
            out.append((at + "+00:00", {t: pg_state(dsn, t, ("id",)) for t in TABLES}))
            time.sleep(0.02)
    return out


def copy_objects(source: Path, target: Path, keep=lambda key: True) -> list[str]:
    copied = []
    for info in LocalStore(source).list("topics/"):
        dest = target / info.key
        if keep(info.key) and not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / info.key, dest)
            copied.append(info.key)
    return copied


def check(state: Path, moments: list[tuple[str, dict]], upto: int) -> None:
    for i, (at, want) in enumerate(moments[:upto]):
        for table in TABLES:
            got = {(r["id"],): r for r in table_history(str(state), table, at).to_pylist()}
            assert not compare(got, want[table]), (
                f"as of step {i} ({at}), {table}: {compare(got, want[table])}"
            )
    for table in TABLES:
        history = table_history(str(state), table).to_pylist()
        current = {
            (r["id"],): {k: v for k, v in r.items() if not k.startswith(("valid_", "is_", "previous_"))}
            for r in history
            if r["is_current"]
        }
        now = {(r["id"],): r for r in visible_rows(str(state), table).to_pylist()}
        assert current == now, table


def test_history_as_of_equals_postgres_through_late_and_replayed_objects(eco2_db, tmp_path):
    captured, lake, state = tmp_path / "captured", tmp_path / "lake", tmp_path / "state"
    with psycopg.connect(eco2_db, autocommit=True) as conn:  # a snapshot row: the capture has started
        conn.execute(
            "INSERT INTO auth.users (username, email, password_hash) VALUES ('u', 'u@eco2.test', 'x')"
        )
    cap = Capture(eco2_db, captured, tmp_path / "capture", "--flush-size", "4").start()
    wait_for(
        lambda: (captured / "topics" / "eco2.auth.users").exists() or "no snapshot yet", cap, what="snapshot"
    )
    moments = workload(eco2_db)
    reader = LakeReader(str(captured))

    def caught_up():
        rows = (
            reader.read_changes("eco2.scan.classification_results").to_pylist()
            if "eco2.scan.classification_results" in reader.scan().topics
            else []
        )
        return any(r["__op"] == "d" and r["id"] == 3 for r in rows) or "capture behind"

    wait_for(caught_up, cap, what="the last transaction")
    cap.stop()

    feedback = sorted(
        k
        for k in (i.key for i in LocalStore(captured).list("topics/eco2.scan.feedback/"))
        if ".headers." not in k
    )
    late = feedback[1]  # the second feedback object arrives after the later ones
    copy_objects(captured, lake, keep=lambda k: not k.startswith(late.split(".snappy")[0]))
    compact(str(lake), str(state), CONFIG)
    # without the late object the first insert shows only the rows the lake has
    assert table_history(str(state), "scan.feedback", moments[0][0]).num_rows < len(
        moments[0][1]["scan.feedback"]
    )

    copy_objects(captured, lake)  # the late object: compaction rebuilds, the history in place
    results = compact(str(lake), str(state), CONFIG)
    assert any(r.status == "rebuilt" for r in results), [(r.table, r.status, r.notes) for r in results]
    check(state, moments, len(moments))
    versions = table_history(str(state), "scan.feedback").num_rows
    changed = [
        r for r in table_history(str(state), "scan.classification_results").to_pylist() if r["id"] == 100
    ]
    assert changed and changed[0]["previous_key"] is not None and "2" in changed[0]["previous_key"]

    # Debezium replays the last feedback object after a restart: the same events at new offsets
    last = feedback[-1]
    head, tail = last.rsplit("+", 1)
    replay = f"{head}+{int(tail.split('.')[0]) + 1000:010d}.{tail.split('.', 1)[1]}"
    shutil.copy2(captured / last, lake / replay)
    compact(str(lake), str(state), CONFIG)
    assert table_history(str(state), "scan.feedback").num_rows == versions, "a replay added versions"
    check(state, moments, len(moments))


def test_history_is_the_same_on_the_bigquery_engine(tmp_path, request):
    """The state folds on BigQuery (the emulator), the versions come from the same fold run here
    on each batch: replays, key changes and TOAST give the history the local engine gives."""
    from support.bq_emulator import fold_engine

    from lakehouse.generate.options import GeneratorOptions
    from lakehouse.generate.run import generate_lake
    from lakehouse.state.compact import CompactOptions

    lake = tmp_path / "lake"
    generate_lake(
        str(lake), GeneratorOptions(events=4_000, seed=12, flush_size=300, replays=True, pk_changes=True)
    )
    config = TablesConfig(
        tables=tuple(TableConfig(topic=f"eco2.{t}", primary_key=["id"], history=True) for t in TABLES)
    )
    histories = {}
    for engine in ("local", "bigquery"):
        state = str(tmp_path / engine)
        results = compact(
            str(lake),
            state,
            config,
            options=CompactOptions(engine=fold_engine(engine, request)[0], batch_events=900),
        )
        assert not [r.error for r in results if r.failed]
        histories[engine] = {
            t: sorted(table_history(state, t).to_pylist(), key=lambda r: (r["id"], r["valid_from"]))
            for t in TABLES
        }
    assert histories["local"] == histories["bigquery"]
    assert sum(len(v) for v in histories["local"].values()) > sum(
        len(visible_rows(str(tmp_path / "local"), t)) for t in TABLES
    ), "no row changed: nothing to compare"


def test_turning_history_on_rebuilds_the_versions_from_the_lake(tmp_path):
    """A table folded without history, then configured with it: the next compaction rebuilds it from
    the raw lake (the permanent record), so its history equals one kept from the start."""
    from lakehouse.generate.options import GeneratorOptions
    from lakehouse.generate.run import generate_lake

    lake = str(tmp_path / "lake")
    generate_lake(lake, GeneratorOptions(events=3_000, seed=14, flush_size=300, pk_changes=True))

    def config(history: bool) -> TablesConfig:
        return TablesConfig(
            tables=tuple(TableConfig(topic=f"eco2.{t}", primary_key=["id"], history=history) for t in TABLES)
        )

    def history_of(state: str) -> dict:
        return {
            t: sorted(table_history(state, t).to_pylist(), key=lambda r: (r["id"], r["valid_from"]))
            for t in TABLES
        }

    later, always = str(tmp_path / "later"), str(tmp_path / "always")
    assert not [r.error for r in compact(lake, later, config(False)) if r.failed]
    results = compact(lake, later, config(True))
    assert not [r.error for r in results if r.failed]
    assert all("rebuilt: history turned on" in " ".join(r.notes) for r in results), [r.notes for r in results]
    assert not [r.error for r in compact(lake, always, config(True)) if r.failed]
    assert history_of(later) == history_of(always) and sum(map(len, history_of(always).values())) > 0
    again = compact(lake, later, config(True))  # once built, nothing is rebuilt
    assert not any("rebuilt" in " ".join(r.notes) for r in again)
