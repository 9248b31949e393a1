"""Every table of a source database at one transaction boundary: the consistent watermark.

Each table lands through its own topic, so the current-state tables (which compaction keeps as
fresh as the lake) can hold ``scan.scans`` up to 10:05 and ``scan.classification_results`` up to
10:01. Readers that join tables read the **consistent root** instead (``<state>/_consistent``):
the same compaction (:mod:`lakehouse.state.compact`, one fold) applied only up to the watermark
(:class:`~lakehouse.state.bound.EventBound`), and a published pointer per database
(``_watermarks/<transaction topic>.json``: the watermark and the Delta version of every table at it),
replaced in one write once every table has committed. Readers open each table at the version the
pointer names, so a run that fails halfway leaves them on the previous watermark.

The watermark of a database (one Debezium connector, one transaction topic) is the newest commit LSN
such that every transaction at or before it is complete in every configured table: for each END
event (:mod:`lakehouse.lake.transactions`), the distinct change events ``(lsn, op)`` landed per
table reach the END's count. An initial or repeated snapshot is a point of its own at its LSN,
complete in a table once its last read (``last_in_data_collection``/``last``) or a later event of
that table has landed; a table without snapshot reads counts as complete once the snapshot's
``last`` read has landed anywhere (an empty table; a topic that lags with no object at all cannot
be told from it: the one case the lake cannot prove). Without a transaction topic there is no
watermark: the lake cannot prove which transactions are whole (docs/consistency.md).

Assumption, as for Kafka: the transaction topic lands in order (one partition, the sink's
files in offset order), so no END is missing before one that has landed.
"""

from __future__ import annotations

import io
import json
import logging
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field, replace

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from lakehouse.config import TableConfig, TablesConfig
from lakehouse.lake.reader import INTERNAL_FIELDS, LakeListing, LakeReader
from lakehouse.lake.store import open_store
from lakehouse.lake.transactions import END_SCHEMA, TransactionLog, read_transaction_log
from lakehouse.state.bound import IDENTITY, UNKNOWN, EventBound, identities
from lakehouse.state.compact import CompactOptions, TableResult, compact
from lakehouse.state.export import as_exported
from lakehouse.state.redelivery import pending_objects
from lakehouse.state.table import StateError, StateTable

log = logging.getLogger("lakehouse.consistent")
CONSISTENT_DIR = "_consistent"
SNAPSHOT_ENDS = ("last", "last_in_data_collection")


class ConsistencyError(StateError):
    """No consistent read is possible (no transaction topic, nothing published yet)."""


@dataclass(frozen=True)
class Watermark:
    database: str  # the source database: its connector's transaction topic
    lsn: int  # commit LSN of the newest transaction complete in every table
    tx_id: int | None = None  # its PostgreSQL transaction id (None: a snapshot point)
    commit_ts_ms: int | None = None
    newest_lsn: int | None = None  # the newest commit whose END has landed
    newest_ts_ms: int | None = None
    tables: dict[str, int] = field(default_factory=dict)  # table -> Delta version at the watermark
    published_at: float | None = None
    # the next run reads the transaction topic from here (the object holding this watermark's END)
    # on, beside the ENDs kept in _watermarks/<topic>.ends.parquet
    transaction_offset: int | None = None
    first_begin_lsn: int | None = None  # the first transaction the topic showed (bound.py)

    @property
    def lag_seconds(self) -> float | None:
        """How far the watermark trails the newest landed commit (commit times)."""
        if self.commit_ts_ms is None or self.newest_ts_ms is None:
            return None
        return max(0.0, (self.newest_ts_ms - self.commit_ts_ms) / 1000)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


@dataclass
class ConsistentResult:
    database: str
    watermark: Watermark | None = None
    previous: Watermark | None = None
    tables: list[TableResult] = field(default_factory=list)
    error: str | None = None
    missing_topic: bool = False  # captured without transaction metadata: no watermark possible

    @property
    def failed(self) -> bool:
        return self.error is not None


def consistent_root(state: str) -> str:
    return f"{state.rstrip('/')}/{CONSISTENT_DIR}"


def is_consistent_root(uri: str) -> bool:
    return uri.rstrip("/").rsplit("/", 1)[-1] == CONSISTENT_DIR


def read_point(state: str, entry: TableConfig) -> tuple[str, int | None, Watermark | None]:
    """Where a consistent reader reads a table: the consistent root at the version its database's
    published watermark names, or (nothing published for it) the newest current state."""
    mark = published(state, entry.transactions)
    if mark is None or entry.table not in mark.tables:
        return state, None, None
    return consistent_root(state), mark.tables[entry.table], mark


def pointer_key(database: str) -> str:
    return f"_watermarks/{database}.json"


def published(state: str, database: str) -> Watermark | None:
    store = open_store(consistent_root(state))
    try:
        text = store.get_bytes(pointer_key(database))
    except Exception as exc:  # noqa: BLE001 - FileNotFoundError locally, NoSuchKey on S3
        if isinstance(exc, FileNotFoundError) or "NoSuchKey" in str(exc) or "Not Found" in str(exc):
            return None
        raise
    return Watermark(**json.loads(text))


def databases(config: TablesConfig) -> dict[str, list[TableConfig]]:
    """Configured tables per source database, named by its connector's transaction topic."""
    out: dict[str, list[TableConfig]] = defaultdict(list)
    for entry in config.tables:
        out[entry.transactions].append(entry)
    return dict(out)


def compact_consistent(
    lake: str | LakeReader,
    state: str,
    config: TablesConfig,
    options: CompactOptions = CompactOptions(),
    only: list[str] | None = None,
) -> list[ConsistentResult]:
    """Move every database's consistent root to its current watermark and publish it."""
    reader = lake if isinstance(lake, LakeReader) else LakeReader(lake)
    listing = reader.scan()
    reader.require_objects(listing)
    out = []
    for database, entries in sorted(databases(config).items()):
        if only and database not in only:
            continue
        result = ConsistentResult(database, previous=published(state, database))
        try:
            _advance(reader, listing, state, config, entries, options, result)
        except ConsistencyError as exc:
            result.error = str(exc)
            log.error("%s", exc)
        out.append(result)
    return out


def _advance(
    reader: LakeReader,
    listing: LakeListing,
    state: str,
    config: TablesConfig,
    entries: list[TableConfig],
    options: CompactOptions,
    result: ConsistentResult,
) -> None:
    root = consistent_root(state)
    txlog = _transaction_log(reader, root, result.database, result.previous)
    if txlog is None:
        result.missing_topic = True
        tables = ", ".join(e.table for e in entries)
        raise ConsistencyError(
            f"{result.database}: no such topic in the lake, so no transaction of {tables} can be proven "
            "complete; capture with provide.transaction.metadata=true (lakehouse capture does)"
        )
    previous = result.previous.lsn if result.previous else None
    read: dict[str, pa.Table] = {}
    landed = {e.table: _pending_events(reader, listing, root, e, read) for e in entries}
    lsn = find_watermark(txlog, landed, previous)
    if lsn is None:
        raise ConsistencyError(f"{result.database}: no transaction is complete in every table yet")
    bound = EventBound(lsn, txlog, read)
    tables = compact(reader, root, config, [e.topic for e in entries], replace(options, until=bound))  # type: ignore[assignment]
    result.tables = tables  # type: ignore[assignment]
    failed = [t for t in tables if t.failed]  # type: ignore[attr-defined]
    if failed:
        raise ConsistencyError(
            f"{result.database}: watermark not published, {len(failed)} table(s) failed: "
            + "; ".join(t.error or t.table for t in failed)  # type: ignore[attr-defined]
        )
    versions = {}
    for e in entries:
        st = StateTable(root, e.table)
        if st.load() is not None:
            versions[e.table] = st.version
    result.watermark = _describe(result.database, lsn, txlog, versions)  # type: ignore[arg-type]
    newer = published(state, result.database)
    if newer is not None and newer.lsn > lsn:  # another run got further meanwhile: never move back
        result.watermark = newer
        return
    store = open_store(root)
    buffer = io.BytesIO()  # the ENDs read so far, before the pointer that says where reading resumes
    pq.write_table(txlog.ends.to_arrow(), buffer, compression="zstd")
    store.put_bytes(_ends_cache(result.database), buffer.getvalue())
    store.put_bytes(pointer_key(result.database), result.watermark.to_json().encode())
    log.info(
        "%s: consistent at LSN %d (%s behind the newest landed commit)",
        result.database,
        lsn,
        result.watermark.lag_seconds,
    )


def _ends_cache(database: str) -> str:
    return f"_watermarks/{database}.ends.parquet"


def _transaction_log(
    reader: LakeReader, root: str, database: str, previous: Watermark | None
) -> TransactionLog | None:
    """The transaction topic: the ENDs kept at the last publication, plus the topic read from the
    object that held that watermark's END (every later transaction's END is there or after)."""
    since = previous.transaction_offset if previous and previous.first_begin_lsn is not None else None
    fresh = read_transaction_log(reader, database, since) if since is not None else None
    if fresh is None:
        return read_transaction_log(reader, database)
    try:
        kept = pl.read_parquet(io.BytesIO(open_store(root).get_bytes(_ends_cache(database))))
    except Exception:  # noqa: BLE001 - no cache (an older pointer): read the whole topic
        return read_transaction_log(reader, database)
    ends = (
        pl.concat([kept.cast(END_SCHEMA), fresh.ends]).unique("commit_lsn", keep="first").sort("commit_lsn")  # type: ignore[arg-type]
    )
    assert previous is not None
    return TransactionLog(ends, fresh.counts, previous.first_begin_lsn, fresh.objects)


def _describe(database: str, lsn: int, txlog: TransactionLog, versions: dict[str, int]) -> Watermark:
    at = txlog.ends.filter(pl.col("commit_lsn") == lsn)
    newest = txlog.newest
    return Watermark(
        database,
        lsn,
        tx_id=at.get_column("tx_id")[0] if at.height else None,
        commit_ts_ms=at.get_column("ts_ms")[0] if at.height else None,
        newest_lsn=newest["commit_lsn"] if newest else None,
        newest_ts_ms=newest["ts_ms"] if newest else None,
        tables=versions,
        published_at=time.time(),
        transaction_offset=txlog.offset_holding(lsn),
        first_begin_lsn=txlog.first_begin_lsn,
    )


def _pending_events(
    reader: LakeReader, listing: LakeListing, root: str, entry: TableConfig, read: dict[str, pa.Table]
) -> pl.DataFrame:
    """Identity columns of the table's events not yet wholly in the consistent root (everything
    at or before the published watermark is; objects the bound cut are read again). ``read``
    keeps each object's, for the bound to reuse."""
    objects = listing.objects.get(entry.topic, [])
    st = StateTable(root, entry.table)
    if st.load() is not None:
        objects, _ = pending_objects(objects, st.applied())
    for o in objects:
        read[o.key] = identities(reader, o)
    parts = [read[o.key] for o in objects]
    empty = pa.schema(INTERNAL_FIELDS).empty_table().select(IDENTITY)
    frame = pl.from_arrow(pa.concat_tables(parts) if parts else empty)
    assert isinstance(frame, pl.DataFrame)
    return frame


def find_watermark(
    txlog: TransactionLog, landed: dict[str, pl.DataFrame], previous: int | None
) -> int | None:
    """The newest commit LSN after ``previous`` up to which every transaction and snapshot is
    complete in every table (``landed``: table -> events not yet in the consistent root), or
    ``previous`` when none is."""
    bound = EventBound(UNKNOWN - 1, txlog)
    events = {
        t: f.with_columns(__commit=pl.Series(bound.commits(f.to_arrow()), dtype=pl.Int64))
        for t, f in landed.items()
    }
    # END names tables schema.table as the source does: configured names and those the events carry
    names = set(landed) | {n for f in events.values() for n in f.get_column("__table").unique().drop_nulls()}
    floor = -1 if previous is None else previous
    need = txlog.counts.filter(pl.col("collection").is_in(list(names)) & (pl.col("commit_lsn") > floor))
    short = (
        need.join(
            _landed_counts(events),
            left_on=["commit_lsn", "collection"],
            right_on=["__commit", "__table"],
            how="left",
        )
        .filter(pl.col("n").fill_null(0) < pl.col("event_count"))
        .get_column("commit_lsn")
    )
    stop = short.min() if len(short) else None  # the first transaction not whole in some table
    commits = txlog.ends.get_column("commit_lsn")
    points = [(c, "tx") for c in commits.filter((commits > floor) & (commits <= (stop or UNKNOWN))).to_list()]
    snaps = sorted(
        {
            p
            for f in events.values()
            for p in f.filter((pl.col("__op") == "r") & (pl.col("__lsn") > floor)).get_column("__lsn")
        }
    )
    points += [(p, "snapshot") for p in snaps]
    watermark = previous
    for point, kind in sorted(points):
        if point == stop or (kind == "snapshot" and not _snapshot_landed(point, events)):
            break
        watermark = point
    return watermark


def _landed_counts(events: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """Distinct change events (lsn, op) landed per transaction (commit LSN) and table."""
    frames = [
        f.filter((pl.col("__op") != "r") & (pl.col("__commit") < UNKNOWN) & (pl.col("__commit") >= 0))
        for f in events.values()
        if f.height
    ]
    if not frames:
        return pl.DataFrame(schema={"__commit": pl.Int64, "__table": pl.Utf8, "n": pl.UInt32})
    return (
        pl.concat(frames)
        .group_by("__commit", "__table")
        .agg(pl.struct("__lsn", "__op").n_unique().alias("n"))
    )


def _snapshot_landed(point: int, events: dict[str, pl.DataFrame]) -> bool:
    reads = {t: f.filter((pl.col("__op") == "r") & (pl.col("__lsn") == point)) for t, f in events.items()}
    ended = any(r.filter(pl.col("__snapshot") == "last").height for r in reads.values())
    for table, f in events.items():
        later = f.filter(pl.col("__commit") > point).height > 0
        if reads[table].height:
            if not (later or reads[table].filter(pl.col("__snapshot").is_in(SNAPSHOT_ENDS)).height):
                return False
        elif not (ended or later):
            return False
    return True


def consistent_rows(state: str, table: str, database: str | None = None) -> tuple[pa.Table, Watermark]:
    """A table's visible rows at its database's published watermark."""
    database = database or _database_of(state, table)
    mark = published(state, database)
    if mark is None:
        raise ConsistencyError(
            f"no consistent watermark published for {database} under {state}: "
            "run lakehouse compact --consistent first"
        )
    if table not in mark.tables:
        raise ConsistencyError(
            f"{table}: no rows at {database}'s watermark (LSN {mark.lsn}): the table "
            "had no events then, or it is not in the tables config"
        )
    st = StateTable(consistent_root(state), table)
    st.require(mark.tables[table])
    return as_exported(st.visible()), mark


def _database_of(state: str, table: str) -> str:
    store = open_store(consistent_root(state))
    marks = [i.key for i in store.list("_watermarks/") if i.key.endswith(".json")]
    for key in marks:
        name = key.rsplit("/", 1)[-1].removesuffix(".json")
        mark = published(state, name)
        if mark is not None and table in mark.tables:
            return name
    raise ConsistencyError(
        f"{table}: in no published consistent watermark under {state} (run lakehouse compact --consistent)"
    )
