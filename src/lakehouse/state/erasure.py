"""Account closure: erase a closed account's personal data from every derived copy (issue 16).

An account is closed when its row is deleted from the accounts table (the configured table whose
primary key is its ``erasure.account_column``: ``auth.users``). PostgreSQL then no longer holds
it, but derived data may: a tombstone keeps the row as it was before its delete, history keeps
every version, dataset versions exported earlier hold it in their rows. For every table with an
``erasure`` entry, the personal columns of rows belonging to a closed account are set to null:

* state tombstones (and superseded pre-delete images), in the state and in the consistent root
  (whose published pointer moves to the new versions: visible rows are unchanged);
* history versions, except a row's current version while the source still holds it;
* old files: the tables are vacuumed with no retention, so no earlier Delta version keeps the
  values (the next warehouse load of the table is a full one);
* dataset versions holding a closed account's rows are listed in ``superseded.json`` beside them.

What the sources still hold stays (PostgreSQL wins: a scan service that keeps a closed user's
feedback shows it in ``SELECT *``, and so does the current state). The raw lake keeps everything:
it is the permanent, access-restricted record the state is rebuilt from (docs/erasure.md).
"""

from __future__ import annotations

import io
import json
import logging
import time
from dataclasses import dataclass, field

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from deltalake import DeltaTable, write_deltalake

from lakehouse.config import ColumnPolicy, TableConfig, TablesConfig
from lakehouse.lake.reader import LakeReader
from lakehouse.lake.store import ObjectStore, open_store
from lakehouse.state.compact import pseudonymise
from lakehouse.state.consistent import (
    CONSISTENT_DIR,
    Watermark,
    consistent_root,
    databases,
    pointer_key,
    published,
)
from lakehouse.state.export import visible_rows
from lakehouse.state.fold import POSITION, VERSION_FIELDS
from lakehouse.state.history import HISTORY_DIR, HistoryTable
from lakehouse.state.table import StateTable, stats_only_on

log = logging.getLogger("lakehouse.erasure")


@dataclass
class ErasureReport:
    closed_accounts: int = 0
    tombstones: dict[str, int] = field(default_factory=dict)  # table -> rows erased
    history_versions: dict[str, int] = field(default_factory=dict)
    superseded_versions: list[str] = field(default_factory=list)


def accounts_table(config: TablesConfig) -> TableConfig | None:
    """The table holding the accounts: its primary key is its own account column."""
    return next(
        (e for e in config.tables if e.erasure and tuple(e.primary_key or ()) == (e.erasure.account_column,)),
        None,
    )


def closed_accounts(state_uri: str, config: TablesConfig) -> list:
    """Accounts deleted from the accounts table (its tombstones)."""
    accounts = accounts_table(config)
    if accounts is None:
        return []
    st = StateTable(state_uri, accounts.table)
    if st.load() is None:
        return []
    rows = st.read(None, pc.field("__deleted") == True, columns=[accounts.erasure.account_column])  # type: ignore[union-attr]  # noqa: E712
    return sorted(set(rows.column(accounts.erasure.account_column).to_pylist()) - {None})  # type: ignore[union-attr]


def erase(state_uri: str, config: TablesConfig) -> ErasureReport:
    """Erase the closed accounts' personal columns from every derived copy (see the module doc)."""
    closed = closed_accounts(state_uri, config)
    report = ErasureReport(closed_accounts=len(closed))
    if not closed:
        return report
    for entry in (e for e in config.tables if e.erasure):
        report.tombstones[entry.table] = _erase_tombstones(state_uri, entry, closed)
        report.history_versions[entry.table] = _erase_history(state_uri, entry, closed)
    for database, entries in databases(config).items():
        for table, rows in _erase_consistent(state_uri, database, entries, closed).items():
            report.tombstones[table] = report.tombstones.get(table, 0) + rows
    log.info("erased %d closed accounts: %s", len(closed), report)
    return report


def _in(column: str, values: list) -> str:
    literals = ", ".join(
        str(int(v)) if isinstance(v, int) else "'" + str(v).replace("'", "''") + "'" for v in values
    )
    return f'"{column}" IN ({literals})'


def _erase_tombstones(root: str, entry: TableConfig, closed: list) -> int:
    st = StateTable(root, entry.table)
    if st.load() is None:
        return 0
    assert entry.erasure is not None
    present = [c for c in entry.erasure.columns if c in st.meta.row_schema.names]  # type: ignore[union-attr]
    if not present:
        return 0
    dt = DeltaTable(st.uri, storage_options=st.options)
    kept = '("__deleted" = true OR "__image" = true)'
    predicate = (
        f"{kept} AND {_in(entry.erasure.account_column, closed)} AND ("
        + " OR ".join(f'"{c}" IS NOT NULL' for c in present)
        + ")"
    )
    metrics = dt.update(updates={c: "NULL" for c in present}, predicate=predicate)
    updated = int(metrics.get("num_updated_rows", 0))
    if updated:  # no earlier version may keep the values
        dt.vacuum(retention_hours=0, dry_run=False, enforce_retention_duration=False)
    return updated


def _erase_history(state_uri: str, entry: TableConfig, closed: list) -> int:
    """Null the personal columns of a closed account's versions, but a live row's current one."""
    history = HistoryTable(state_uri, entry.table)
    if not history.exists():
        return 0
    assert entry.erasure is not None
    stored = DeltaTable(history.uri, storage_options=history.options).to_pyarrow_table()
    present = [c for c in entry.erasure.columns if c in stored.column_names]
    key = list(StateTable(state_uri, entry.table).require().key)
    frame = pl.from_arrow(stored.select([*key, *POSITION, "__op", entry.erasure.account_column, *present]))
    assert isinstance(frame, pl.DataFrame)
    # a key's newest version, unless a delete: the row the source still holds (deduplicated by
    # position like history_rows, so a version appended twice counts once)
    tops = (
        frame.sort([*key, *POSITION])
        .group_by(key, maintain_order=True)
        .last()
        .select(*key, *POSITION, pl.lit(True).alias("__newest"))
    )
    frame = (
        frame.with_row_index("__i").join(tops, on=[*key, *POSITION], how="left", nulls_equal=True).sort("__i")
    )
    live = pl.col("__newest").fill_null(False) & (pl.col("__op") != "d")
    target = (
        pl.col(entry.erasure.account_column).is_in(closed)
        & ~live
        & pl.any_horizontal([pl.col(c).is_not_null() for c in present])
    )
    mask = frame.select(target.fill_null(False)).to_series().to_arrow()
    hits = int(pc.sum(mask).as_py() or 0)
    if not hits:
        return 0
    for c in present:
        i = stored.schema.get_field_index(c)
        stored = stored.set_column(
            i,
            stored.schema.field(i),
            pc.if_else(mask, pa.nulls(stored.num_rows, stored.schema.field(i).type), stored.column(i)),
        )
    write_deltalake(
        history.uri,
        stored,
        mode="overwrite",
        storage_options=history.options,
        configuration=stats_only_on([*key, *VERSION_FIELDS]),
    )
    DeltaTable(history.uri, storage_options=history.options).vacuum(
        retention_hours=0, dry_run=False, enforce_retention_duration=False
    )
    return hits


def _erase_consistent(
    state_uri: str, database: str, entries: list[TableConfig], closed: list
) -> dict[str, int]:
    """The consistent copy's tombstones, then the pointer to the new versions (same visible rows).
    Only on tables whose newest version is the published one: a consistent run in progress
    would otherwise see its commits published early; then the next day's run erases them."""
    mark = published(state_uri, database)
    if mark is None:
        return {}
    root = consistent_root(state_uri)
    heads = {}
    for table in mark.tables:
        st = StateTable(root, table)
        st.load()
        heads[table] = st.version
    if heads != mark.tables:
        log.warning("%s: a consistent run is under way; its copy is erased on the next run", database)
        return {}
    erased = {
        e.table: _erase_tombstones(root, e, closed) for e in entries if e.erasure and e.table in mark.tables
    }
    if not any(erased.values()):
        return erased
    versions = {}
    for table in mark.tables:
        st = StateTable(root, table)
        st.load()
        versions[table] = st.version
    moved = Watermark(**{**mark.__dict__, "tables": versions, "published_at": time.time()})
    open_store(root).put_bytes(pointer_key(database), moved.to_json().encode())
    return erased


def supersede(store: ObjectStore, name: str, closed: list, account_column: str = "user_id") -> list[str]:
    """List the versions of dataset ``name`` holding rows of closed accounts in its
    ``superseded.json`` (kept: consumers pinned to a version read why not to use it)."""
    prefix = f"datasets/{name}/"
    path = f"{prefix}superseded.json"
    try:
        listed = json.loads(store.get_bytes(path))
    except Exception:  # noqa: BLE001 - none yet (FileNotFoundError, NoSuchKey)
        listed = {}
    closed_set = set(closed)
    added = []
    for info in store.list(prefix):
        if not info.key.endswith("/data.parquet"):
            continue
        version = info.key[len(prefix) :].split("/", 1)[0].removeprefix("version=")
        if version in listed:
            continue
        ids = pq.read_table(store.open_input(info.key), columns=[account_column]).column(account_column)
        hit = len(closed_set & set(ids.to_pylist()))
        if hit:
            listed[version] = {
                "reason": "account closure: holds rows of closed accounts",
                "accounts": hit,
                "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            added.append(version)
    if added:
        store.put_bytes(path, json.dumps(listed, indent=1, sort_keys=True).encode())
    return added


def personal_values(
    lake: str, state_uri: str, config: TablesConfig, closed: list, secret: str | None = None
) -> dict[str, set[str]]:
    """Per table, the closed accounts' personal values the raw lake holds (pseudonymised where the
    policy says so, as derived copies hold them) that its current rows no longer hold."""
    reader = LakeReader(lake)
    out: dict[str, set[str]] = {}
    for entry in (e for e in config.tables if e.erasure):
        assert entry.erasure is not None
        events = reader.read_changes(entry.topic)
        mine = events.filter(pc.is_in(events.column(entry.erasure.account_column), pa.array(closed)))
        now = visible_rows(state_uri, entry.table)
        values: set[str] = set()
        for column in entry.erasure.columns:
            if column not in mine.column_names or entry.policy(column) == ColumnPolicy.drop:
                continue
            col = mine.column(column).combine_chunks()
            if entry.policy(column) == ColumnPolicy.pseudonymise:
                col = pseudonymise(col, entry.topic, column, secret)
            held = (
                set(now.column(column).cast(pa.string()).to_pylist()) if column in now.column_names else set()
            )
            values |= {v for v in col.cast(pa.string()).to_pylist() if v} - held
        out[entry.table] = values
    return out


def leftovers(state_uri: str, config: TablesConfig, values: dict[str, set[str]]) -> list[str]:
    """Where any of ``values`` (personal_values) still is below the state root: every Parquet file
    of the table, its history and its consistent copy, old versions' files included."""
    store = open_store(state_uri)
    found = []
    for entry in config.tables:
        wanted = values.get(entry.table)
        if not wanted or entry.erasure is None:
            continue
        for folder in (entry.table, f"{HISTORY_DIR}/{entry.table}", f"{CONSISTENT_DIR}/{entry.table}"):
            for info in store.list(f"{folder}/"):
                if "/_delta_log/" in info.key:  # statistics, checkpoints: searched as text
                    data = store.get_bytes(info.key)
                    text = (
                        str(pq.read_table(io.BytesIO(data)).to_pylist())
                        if info.key.endswith(".parquet")
                        else data.decode("utf-8", "replace")
                    )
                    hit = {v for v in wanted if json.dumps(v)[1:-1] in text}
                    if hit:
                        found.append(f"{info.key}: {len(hit)} value(s) of closed accounts in the Delta log")
                    continue
                if not info.key.endswith(".parquet") or "/_lakehouse/" in info.key:
                    continue
                schema = pq.read_schema(store.open_input(info.key))
                columns = [c for c in entry.erasure.columns if c in schema.names]
                if not columns:
                    continue
                data = pq.read_table(store.open_input(info.key), columns=columns)
                for c in columns:
                    hit = wanted & set(data.column(c).cast(pa.string()).to_pylist())
                    if hit:
                        found.append(f"{info.key}: {c} ({len(hit)} value(s) of closed accounts)")
    return found
