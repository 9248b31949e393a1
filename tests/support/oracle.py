"""Test oracle: the visible state of each table after applying a lake's change events, written as
plainly as possible (dicts, one event at a time) so tests can compare it with ``SELECT *``.

This is deliberately not the product's compaction (issue 4): it is the slow, obvious reference.
Rules (spec lake-format.md §5, §7): order by Kafka position; c/r/u upsert; a column holding the
unchanged-TOAST placeholder keeps the previous value (for the c half of a PK change: the old key's
value, found through the d with the same lsn and txId); d removes the key; t removes every change
below its LSN; a streamed change whose LSN is not above its key's previous one is a re-emission
(Debezium replay, overlapping sink files) and is skipped.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from pathlib import Path

import psycopg
import pyarrow as pa
import pyarrow.compute as pc

from lakehouse.config import TableConfig, TablesConfig, load_config
from lakehouse.lake.reader import INTERNAL_NAMES, POSITION, LakeReader
from lakehouse.lake.semantic import TOAST_PLACEHOLDER
from lakehouse.state.export import visible_rows


def lake_state(reader: LakeReader, topic: str, key: tuple[str, ...], keep=None) -> dict[tuple, dict]:
    """``keep``: only the events it accepts count (a consistent read's watermark)."""
    table = reader.read_changes(topic)
    if table.num_rows == 0:
        return {}
    table = table.sort_by([(c, "ascending") for c in POSITION])
    columns = [c for c in table.column_names if c not in INTERNAL_NAMES]
    events = table.to_pylist()
    if keep is not None:
        events = [ev for ev in events if keep(ev)]
    # TRUNCATE holds an exclusive lock: every change is below its LSN or after its commit
    truncate_lsns = [ev["__lsn"] for ev in events if ev["__op"] == "t" and ev["__lsn"] is not None]
    # the c half of a key change takes the old key's values before its d, wherever that d sits
    # (another Kafka partition may sort later): repeat the pass until the pairings settle
    halves: dict[tuple, dict] = {}
    previous_state = None
    for _ in range(10):
        state, found = _apply(events, key, columns, truncate_lsns, halves)
        if state == previous_state:
            break
        previous_state, halves = state, found
    return state


def _apply(
    events: list[dict],
    key: tuple[str, ...],
    columns: list[str],
    truncate_lsns: list[int],
    halves: dict[tuple, dict],
) -> tuple[dict[tuple, dict], dict[tuple, dict]]:
    state: dict[tuple, dict] = {}
    deleted_by_change: dict[tuple, dict] = {}
    streamed: dict[tuple, int] = {}  # per key: highest streamed change LSN applied
    for ev in events:
        op = ev["__op"]
        if op == "t":
            if ev["__lsn"] is None:
                state.clear()
            continue
        lsn = ev["__lsn"]
        if lsn is not None and any(lsn < t for t in truncate_lsns):
            continue  # removed by a later truncate (or a replay of a change it removed)
        k = tuple(ev[c] for c in key)
        if op in "cud" and lsn is not None:
            # one row's changes rise in LSN (row locks): a lower or equal one is a re-emission
            if lsn <= streamed.get(k, -1):
                continue
            streamed[k] = lsn
        if op == "d":
            old = state.pop(k, None)
            if old is not None:
                deleted_by_change.setdefault((ev["__lsn"], ev["__tx_id"]), old)
            continue
        row = {c: ev[c] for c in columns}
        pair = (ev["__lsn"], ev["__tx_id"])
        previous = (
            state.get(k) or (deleted_by_change.get(pair) or halves.get(pair) if op == "c" else None) or {}
        )
        for c, v in row.items():
            if _is_placeholder(v):
                row[c] = previous.get(c)
        state[k] = row
    return state, deleted_by_change


def _is_placeholder(v) -> bool:
    return v == TOAST_PLACEHOLDER or v == TOAST_PLACEHOLDER.encode() or v == [TOAST_PLACEHOLDER]


def pg_state(dsn: str, table: str, key: tuple[str, ...]) -> dict[tuple, dict]:
    with psycopg.connect(dsn) as conn:
        cur = conn.execute(f"SELECT * FROM {table}")
        names = [d.name for d in cur.description]
        rows = [dict(zip(names, r)) for r in cur.fetchall()]
    return {tuple(_norm(r[c]) for c in key): {c: _norm(v) for c, v in r.items()} for r in rows}


def _norm(v):
    if isinstance(v, uuid.UUID):
        return str(v)
    if isinstance(v, dt.datetime) and v.tzinfo is not None:
        return v.astimezone(dt.UTC)
    return v


def compare(lake: dict[tuple, dict], pg: dict[tuple, dict]) -> list[str]:
    """Differences, as readable lines (empty when equal). Only PostgreSQL's current columns count:
    the lake keeps dropped columns."""
    problems: list[str] = []
    for k in sorted(set(pg) - set(lake), key=str)[:5]:
        problems.append(f"missing in lake: {k}")
    for k in sorted(set(lake) - set(pg), key=str)[:5]:
        problems.append(f"not in PostgreSQL: {k}")
    for k in sorted(set(pg) & set(lake), key=str):
        for c, want in pg[k].items():
            got = _norm(lake[k].get(c))
            if isinstance(want, Decimal) and got is not None:
                got = Decimal(got)
            if isinstance(want, dt.datetime) and isinstance(got, dt.datetime) and got.tzinfo is None:
                got = got.replace(tzinfo=dt.UTC) if want.tzinfo else got
            if got != want:
                problems.append(f"{k}.{c}: lake {got!r} != PostgreSQL {want!r}")
                if len(problems) > 10:
                    return problems
    return problems


def op_counts(table: pa.Table) -> dict[str, int]:
    return {r["values"]: r["counts"] for r in pc.value_counts(table.column("__op")).to_pylist()}


# -- whole lakes: every configured table against the oracle ------------------------------------


def plain_config() -> TablesConfig:
    """The Eco2 tables without a personal-data policy (so every column can be compared)."""
    return TablesConfig(
        tables=tuple(TableConfig(topic=t.topic, primary_key=t.primary_key) for t in load_config().tables)
    )


def state_of(state: Path | str, table: str, key: tuple[str, ...]) -> dict[tuple, dict]:
    rows = visible_rows(str(state), table).to_pylist()
    return {tuple(r[c] for c in key): r for r in rows}


def assert_equals_oracle(lake: Path | str, state: Path | str, config: TablesConfig) -> None:
    reader = LakeReader(str(lake))
    topics = reader.scan().topics
    for entry in config.tables:
        if entry.topic not in topics:
            continue
        want = lake_state(reader, entry.topic, entry.primary_key)
        got = state_of(state, entry.table, entry.primary_key)
        assert set(got) == set(want), (
            f"{entry.table}: keys differ "
            f"(missing {list(set(want) - set(got))[:3]}, extra {list(set(got) - set(want))[:3]})"
        )
        for k, row in want.items():
            for c, v in row.items():
                assert got[k].get(c) == v, f"{entry.table} {k}.{c}: {got[k].get(c)!r} != {v!r}"


def committed_by(ends: list[dict], watermark: int):
    """Whether an event's transaction committed at or before ``watermark``, from END events
    (``{"id": "<txId>:<commit LSN>"}``): its txId's first END at or after its LSN; a snapshot
    read at its own LSN; a transaction whose END has not landed, never."""
    commits: dict[int, list[int]] = {}
    for end in ends:
        tx, lsn = (int(x) for x in end["id"].split(":"))
        commits.setdefault(tx, []).append(lsn)

    def keep(ev: dict) -> bool:
        if ev["__op"] == "r" or ev["__lsn"] is None:
            return (ev["__lsn"] or -1) <= watermark
        mine = [c for c in commits.get(ev["__tx_id"], []) if c >= ev["__lsn"]]
        return bool(mine) and min(mine) <= watermark

    return keep
