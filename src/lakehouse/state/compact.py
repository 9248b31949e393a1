"""Compaction: apply the lake's new raw objects to the current-state tables.

Per table: list the topic's value files, skip the ones the state's manifest already holds, read
the rest in batches (Kafka order per partition), fold each batch with the state rows of the keys
it touches (:mod:`lakehouse.state.fold`) and commit the clusters it changed together with the new
manifest (:mod:`lakehouse.state.table`). One Delta commit per batch; each commit is a complete,
consistent state, so a run killed at any point resumes from the last commit.

A new object that sorts before an applied one of the same Kafka partition (a late file) would
have to be folded *under* events already applied; the table is then rebuilt from all its objects,
which gives the same state as if the files had arrived in order.
"""

from __future__ import annotations

import copy
import errno
import hashlib
import hmac
import logging
import os
import random
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from lakehouse.config import (
    ColumnPolicy,
    ConfigError,
    DroppedColumns,
    TableConfig,
    TablesConfig,
    resolve_primary_key,
)
from lakehouse.lake.layout import LakeObjectError
from lakehouse.lake.reader import INTERNAL_FIELDS, LakeListing, LakeObject, LakeReader, SchemaConflictError
from lakehouse.lake.retry import StorageUnavailableError, is_transient
from lakehouse.lake.semantic import is_toast_placeholder
from lakehouse.settings import PSEUDONYM_KEY_ENV, get_settings
from lakehouse.state.bound import EventBound
from lakehouse.state.columns import (
    DEFAULT,
    Life,
    ObjectColumns,
    Timeline,
    fill_column,
    lives_of,
    newest_time,
    walk,
)
from lakehouse.state.engine import EngineStats, FoldEngine, LocalEngine
from lakehouse.state.fold import STATE_INTERNAL_NAMES, LateEventError, fold, placeholders
from lakehouse.state.history import HistoryTable
from lakehouse.state.redelivery import (
    Redelivery,
    carry_shrunk,
    drop_copies,
    latest_per_key,
    manifest_rows,
    pending_objects,
)
from lakehouse.state.snapshots import Snapshot, completed_snapshot, retire_unread
from lakehouse.state.table import (
    CLUSTER_COLUMN,
    CLUSTERING,
    Cluster,
    ConcurrentWriteError,
    StateError,
    StateMeta,
    StateTable,
    assign,
    cluster_values,
    ranged,
)

log = logging.getLogger(__name__)

DEFAULT_BATCH_EVENTS = 250_000
DEFAULT_BATCH_BYTES = 16 << 20  # stored (compressed) object bytes per batch: bounds memory
DEFAULT_CLUSTER_BYTES = 64 << 20  # in memory (Arrow); a rewrite of one cluster stays cheap
COMMIT_RACE_ATTEMPTS = 8  # commits lost to concurrent writers before a table gives up


@dataclass
class TableResult:
    table: str
    topic: str
    status: str = "up-to-date"  # up-to-date | applied | rebuilt | failed
    objects: int = 0
    events: int = 0
    duplicates: int = 0
    inserts: int = 0
    updates: int = 0
    deletes: int = 0
    rows: int = 0
    tombstones: int = 0
    commits: int = 0
    redelivered: int = 0  # objects read again that repeat applied Kafka records (re-delivered, re-cut)
    seconds: float = 0.0
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    ops: dict[str, int] = field(default_factory=dict)  # events read per Debezium op (r c u d t)
    newest_commit_us: int | None = None  # newest source commit applied so far (epoch µs)
    engine: EngineStats = field(default_factory=EngineStats)  # what the folds cost on the engine
    retryable: bool = False  # failed on storage or other writers only: the same run later can succeed

    @property
    def failed(self) -> bool:
        return self.status == "failed"


@dataclass(frozen=True)
class CompactOptions:
    full_refresh: bool = False
    batch_events: int = DEFAULT_BATCH_EVENTS
    batch_bytes: int = DEFAULT_BATCH_BYTES
    cluster_bytes: int = DEFAULT_CLUSTER_BYTES
    # tables compacted at once; by default one per usable core, at most 4 (each adds a table's
    # batch to the peak memory): a table alone keeps about 1.2 cores busy (Python-side decoding),
    # two overlap (measured 1.7x faster on 2 cores, +13 % peak memory)
    workers: int = field(default_factory=lambda: min(4, len(os.sched_getaffinity(0))))
    pseudonym_key: str | None = field(default=None, repr=False)  # HMAC key; default: $LAKEHOUSE_PSEUDONYM_KEY
    engine: FoldEngine = field(default_factory=LocalEngine)  # what runs the fold (state.engine)
    # only events of transactions committed at or before this bound (the consistent root)
    until: EventBound | None = None


def compact(
    lake: str | LakeReader,
    state: str,
    config: TablesConfig,
    tables: list[str] | None = None,
    options: CompactOptions = CompactOptions(),
    on_progress: Callable[[TableResult], None] | None = None,
) -> list[TableResult]:
    """Compact every configured table (or those named in ``tables``: topic or schema.table).
    A failing table is reported and skipped; the others go on. Raises
    :class:`~lakehouse.lake.reader.LakeNotFoundError` when the lake holds nothing at all."""
    _require_state_folder(state)
    reader = lake if isinstance(lake, LakeReader) else LakeReader(lake)
    entries = _select(config, tables)
    listing = reader.scan(entries[0].topic) if len(entries) == 1 else reader.scan()
    reader.require_objects(listing)  # a wrong lake path fails here, it does not look up to date

    def one(entry: TableConfig) -> TableResult:
        result = TableResult(entry.table, entry.topic)
        started = time.perf_counter()
        try:
            key = resolve_primary_key(config, entry.topic, reader)
            _compact_racing(reader, listing, state, entry, key, options, result)
        except SchemaConflictError as exc:
            result.status, result.error = "failed", f"{entry.table}: {exc}. {_retype_help(entry, exc)}"
            log.error("%s", result.error)
        except (LakeObjectError, ConfigError, StateError, StorageUnavailableError) as exc:
            result.status, result.error = "failed", f"{entry.table}: {exc}"
            result.retryable = isinstance(exc, StorageUnavailableError | ConcurrentWriteError)
            log.error("%s", result.error)
        except Exception as exc:  # an unexpected error stops this table only; nothing was committed
            if _disk_full(exc):
                result.status, result.error = (
                    "failed",
                    (
                        f"{entry.table}: no space left on device writing {state} ({' '.join(str(exc).split())[:200]}); "
                        "nothing of the failed batch was committed: free space and run again"
                    ),
                )
                log.error("%s", result.error)
            else:
                result.status, result.error = "failed", f"{entry.table}: {type(exc).__name__}: {exc}"
                log.exception("%s", result.error)
        result.seconds = time.perf_counter() - started
        if on_progress:
            on_progress(result)
        return result

    # tables are independent: overlap one table's Parquet decoding and Delta writes with
    # another's fold (Arrow, Polars and deltalake release the GIL for their heavy parts)
    with ThreadPoolExecutor(max_workers=max(1, min(options.workers, len(entries) or 1))) as pool:
        return list(pool.map(one, entries))


def _disk_full(exc: BaseException) -> bool:
    """ENOSPC from Python or from delta-rs (whose message carries the OS error)."""
    return (
        (isinstance(exc, OSError) and exc.errno == errno.ENOSPC)
        or "No space left on device" in str(exc)
        or "os error 28" in str(exc)
    )


def _require_state_folder(state: str) -> None:
    """A local state root must be a folder (or not exist yet): caught before anything is read."""
    if "://" not in state and os.path.exists(state) and not os.path.isdir(state):
        raise StateError(
            f"state {state}: a file, not a folder; --state names the folder that holds the "
            "current-state tables"
        )


def _compact_racing(
    reader: LakeReader,
    listing: LakeListing,
    state_uri: str,
    entry: TableConfig,
    key: tuple[str, ...],
    options: CompactOptions,
    result: TableResult,
) -> None:
    """Compact one table, starting again from the newest committed version when a commit lost a
    race to another writer (a second run, a person with the CLI, another deployment: the objects
    it applied are skipped, so the outcome equals one run after the other) or when storage failed
    transiently beyond the clients' own retries (until the storage retry budget is spent)."""
    races, outage_since = 0, None
    while True:
        try:
            _compact_table(reader, listing, state_uri, entry, key, options, result)
            if result.commits and result.status == "up-to-date":  # an earlier attempt applied them
                result.status = "applied"
            return
        except ConcurrentWriteError as exc:
            races += 1
            if races >= COMMIT_RACE_ATTEMPTS:
                raise ConcurrentWriteError(
                    f"{exc}; gave up after {races} attempts (another writer keeps committing "
                    "to this table: nothing of this run's last batch landed; run again later)"
                ) from exc
            result.notes.append(f"lost a commit race to another writer, retried on its version ({exc})")
            log.warning("%s: %s; retrying on the new version", entry.table, exc)
            time.sleep(random.uniform(0.05, 0.5) * races)
        except Exception as exc:
            if not is_transient(exc):
                raise
            outage_since = outage_since or time.monotonic()
            waited = time.monotonic() - outage_since
            if waited > get_settings().storage_retry_seconds:
                raise StorageUnavailableError(
                    f"storage unavailable for {waited:.0f} s ({type(exc).__name__}: {str(exc)[:200]}); "
                    "nothing of the failed batch was committed; run again"
                ) from exc
            log.warning(
                "%s: transient storage error, resuming from the last commit: %s", entry.table, str(exc)[:200]
            )
            time.sleep(min(8.0, random.uniform(0.2, 1.0) * 2 ** min(5, int(waited // 5))))


def _retype_help(entry: TableConfig, exc: SchemaConflictError) -> str:
    return (
        f"Nothing of {entry.table} was committed; the other tables go on. PostgreSQL rewrote the column in "
        f"place without change events (ALTER COLUMN ... TYPE), so the rows not changed since cannot be "
        f"derived from the lake. To recover: take a new Debezium snapshot of the table (an execute-snapshot "
        f"signal, or a blocking snapshot), move the objects of {exc.topic} older than it out of the lake, "
        f"then run `lakehouse compact --full-refresh --table {entry.table}`"
    )


def _select(config: TablesConfig, tables: list[str] | None) -> list[TableConfig]:
    if not tables:
        return list(config.tables)
    out = []
    for name in tables:
        entry = next((t for t in config.tables if name in (t.topic, t.table)), None)
        if entry is None:
            raise ConfigError(
                f"{name!r} is not in {config.source} (known: {', '.join(t.table for t in config.tables)})"
            )
        out.append(entry)
    return out


def _compact_table(
    reader: LakeReader,
    listing: LakeListing,
    state_uri: str,
    entry: TableConfig,
    key: tuple[str, ...],
    options: CompactOptions,
    result: TableResult,
) -> None:
    errors = listing.errors_for(entry.topic)
    if errors:
        raise errors[0]
    objects = listing.objects.get(entry.topic, [])
    st = StateTable(state_uri, entry.table)
    meta = st.load()
    rebuild_reason = None
    if options.full_refresh:
        rebuild_reason, meta = ("--full-refresh" if meta is not None else None), None
    if meta is not None and (meta.key != key or meta.clustering != CLUSTERING):
        rebuild_reason = (
            f"primary key changed from {list(meta.key)} to {list(key)}"
            if meta.key != key
            else "written with an older clustering scheme"
        )
        meta = None
    if (
        meta is not None
        and entry.history
        and options.until is None
        and not HistoryTable(state_uri, entry.table).exists()
    ):
        # history turned on for a table folded without it: its versions exist only in the raw lake
        rebuild_reason, meta = "history turned on: every version rebuilt from the lake", None
    applied = st.applied() if meta is not None else None
    pending: list[LakeObject] = objects
    overlaps: dict[str, int] = {}
    carried: dict[str, tuple[int, int, int]] = {}
    if applied is not None and applied.num_rows:
        pending, overlaps = pending_objects(objects, applied)
        carried = carry_shrunk(reader, pending, overlaps, applied)
    if rebuild_reason:
        result.notes.append(f"rebuilt: {rebuild_reason}")
        log.warning("%s: rebuilding from all %d objects: %s", entry.table, len(objects), rebuild_reason)
    if not pending:
        if meta is not None:
            result.rows, result.tombstones = meta.live_rows, meta.tombstones
            result.newest_commit_us = meta.newest_commit_us
        return
    try:
        _apply(
            reader,
            st,
            entry,
            key,
            meta,
            applied,
            pending,
            options,
            result,
            fresh=meta is None,
            redelivery=Redelivery(overlaps, applied, {o.key: o for o in objects}, carried),
        )
    except LateEventError as exc:
        # keys whose events moved partition (e.g. partition count changed): only a rebuild is exact
        result.notes.append(f"rebuilt: {exc}")
        for name in (
            "objects",
            "events",
            "duplicates",
            "inserts",
            "updates",
            "deletes",
            "commits",
            "redelivered",
        ):
            setattr(result, name, 0)
        result.ops = {}
        _apply(reader, st, entry, key, None, None, objects, options, result, fresh=True)
        rebuild_reason = str(exc)
    result.status = "rebuilt" if rebuild_reason else "applied"


def _batches(objects: list[LakeObject], limit: int, byte_limit: int) -> list[list[LakeObject]]:
    """Consecutive objects (Kafka order per partition) up to ``limit`` events and ``byte_limit``
    stored bytes (decoded, a batch takes roughly ten times its stored size in memory)."""
    out: list[list[LakeObject]] = []
    current: list[LakeObject] = []
    size = stored = 0
    for obj in sorted(objects, key=lambda o: (o.ref.kafka_partition, o.ref.start_offset, o.key)):
        rows = obj.rows or 0
        if current and (size + rows > limit or stored + obj.size > byte_limit):
            out.append(current)
            current, size, stored = [], 0, 0
        current.append(obj)
        size += rows
        stored += obj.size
    if current:
        out.append(current)
    return out


def _apply(
    reader: LakeReader,
    st: StateTable,
    entry: TableConfig,
    key: tuple[str, ...],
    meta: StateMeta | None,
    applied: pa.Table | None,
    objects: list[LakeObject],
    options: CompactOptions,
    result: TableResult,
    fresh: bool,
    redelivery: Redelivery | None = None,
) -> None:
    redelivery = redelivery if redelivery is not None and not fresh else Redelivery()
    cuts: dict[str, int] = {}
    if options.until is not None:
        objects, cuts = options.until.select(reader, objects)
    _precheck(reader, entry, key, None if fresh else meta, objects, redelivery)
    if fresh:
        st.detach()
        meta, applied = None, None
    applied_parts = [applied] if applied is not None and applied.num_rows else []
    # with several Kafka partitions a key change's halves may be compacted far apart (see fold)
    partitions = {o.ref.kafka_partition for o in objects}
    if applied is not None and applied.num_rows:
        partitions |= set(applied.column("kafka_partition").to_pylist())
    keep_images = len(partitions) > 1
    keep_dropped = entry.dropped_columns == DroppedColumns.keep
    first = True
    for batch in _batches(objects, options.batch_events, options.batch_bytes):
        with _uncounted_unless_committed(result):
            lives = lives_of(meta.row_schema, meta.dropped) if meta is not None else {}
            events, timeline = _read(
                reader,
                batch,
                key,
                entry,
                options.pseudonym_key,
                lives,
                keep_dropped,
                redelivery,
                result,
                cuts,
            )
            row_schema = pa.schema(timeline.row_fields(keep_dropped))
            resets = {c: v for c, v in timeline.resets().items() if c in row_schema.names and c not in key}
            if meta is None:
                meta = StateMeta(entry.topic, entry.table, key, row_schema)
                overwrite_all = True
            else:  # a column added, dropped, widened or begun anew: every row is rewritten
                overwrite_all = bool(resets) or not row_schema.equals(meta.row_schema)
            meta.row_schema, meta.dropped = row_schema, timeline.dropped(keep_dropped)
            _count_ops(events, meta, result)
            st.discard = set(resets)  # their stored values belong to an older column of the name
            write = _apply_batch(
                st,
                meta,
                events,
                key,
                row_schema,
                overwrite_all,
                options,
                result,
                keep_images,
                resets,
                versions=entry.history and options.until is None,
            )
            if write.versions is not None:  # before the state commit: a rerun appends the same positions
                HistoryTable(st.state_uri, entry.table).append(write.versions, key, replace=fresh and first)
                first = False
            applied_parts = [
                latest_per_key(
                    pa.concat_tables(
                        [*applied_parts, manifest_rows(batch, cuts)], promote_options="permissive"
                    )
                )
            ]
            st.write(write.content, write.replaced, meta, applied_parts[0], overwrite_all)
            st.discard = set()
            result.objects += len(batch)
            result.commits += 1
    if meta is not None:
        result.rows, result.tombstones = meta.live_rows, meta.tombstones
        result.newest_commit_us = meta.newest_commit_us


@contextmanager
def _uncounted_unless_committed(result: TableResult) -> Iterator[None]:
    """A batch that fails to be redone (lost race, storage outage) takes its counts back."""
    before = copy.deepcopy(result)
    try:
        yield
    except Exception as exc:
        if isinstance(exc, ConcurrentWriteError) or is_transient(exc):
            notes = result.notes  # notes stay: they say what happened
            result.__dict__.update(before.__dict__)
            result.notes = notes
        raise


def _precheck(
    reader: LakeReader,
    entry: TableConfig,
    key: tuple[str, ...],
    meta: StateMeta | None,
    objects: list[LakeObject],
    redelivery: Redelivery,
) -> None:
    """Every pending footer first: a schema conflict or a missing key fails before any commit.
    New objects are taken in Kafka order after the state's timeline (their commit times come with
    reading them); objects the sink wrote again are placed by their real first commit, which may
    lie before a column's drop and re-add."""
    lives = lives_of(meta.row_schema, meta.dropped) if meta is not None else {}
    start = newest_time(lives)
    views = []
    for i, obj in enumerate(
        sorted(objects, key=lambda o: (o.ref.kafka_partition, o.ref.start_offset, o.key))
    ):
        reader.describe(obj)
        t = _object_first_commit(reader, obj) if obj.key in redelivery.overlaps else None
        views.append(ObjectColumns(obj.key, start + 1 + i if t is None else t, _object_fields(obj, entry)))
    whole = walk(entry.topic, lives, views, key)
    missing = [c for c in key if c not in whole.lives]
    if missing:
        raise ConfigError(
            f"primary key column(s) {missing} of {entry.topic} are not in its change events "
            f"(columns: {list(whole.lives)}); fix primary_key in the tables config"
        )


def _count_ops(events: pa.Table, meta: StateMeta, result: TableResult) -> None:
    for item in pc.value_counts(events.column("__op")).to_pylist():
        result.ops[item["values"]] = result.ops.get(item["values"], 0) + item["counts"]
    newest = pc.max(events.column("__commit_ts")).as_py()
    if newest is not None:
        us = int(newest.timestamp() * 1_000_000)
        meta.newest_commit_us = max(meta.newest_commit_us or us, us)


def _object_fields(obj: LakeObject, entry: TableConfig) -> list[pa.Field]:
    """An object's source columns, less those that never leave the raw lake."""
    dropped = {c for c, p in entry.columns.items() if p == ColumnPolicy.drop}
    return [
        f
        for f in obj.row_fields
        if f.name not in STATE_INTERNAL_NAMES
        and f.name not in ("__table", "__topic")
        and f.name not in dropped
    ]


def _read(
    reader: LakeReader,
    batch: list[LakeObject],
    key: tuple[str, ...],
    entry: TableConfig,
    secret: str | None,
    lives: dict[str, Life],
    keep_dropped: bool,
    redelivery: Redelivery,
    result: TableResult,
    cuts: dict[str, int] | None = None,
) -> tuple[pa.Table, Timeline]:
    """The batch's events in the table's columns after the batch: each object is read in its own
    schema, placed on the column timeline by its first commit, then conformed (columns it predates
    take their default, columns dropped before it null)."""
    tables: dict[str, pa.Table] = {}
    views = []
    for obj in batch:
        schema = pa.schema([*INTERNAL_FIELDS, *_object_fields(obj, entry)])
        parts = list(reader.iter_object(obj, schema, batch_size=262_144))
        table = pa.Table.from_batches(parts, schema=schema) if parts else schema.empty_table()
        if cuts and obj.key in cuts:  # the rows after it belong to transactions after the bound
            table = table.slice(0, cuts[obj.key])
        views.append(ObjectColumns(obj.key, _first_commit_us(table), _object_fields(obj, entry)))
        if obj.key in redelivery.overlaps:
            table, copies = drop_copies(reader, table, obj, key, redelivery)
            result.duplicates += copies
            result.redelivered += 1 if copies else 0
        tables[obj.key] = table
    timeline = walk(entry.topic, lives, views, key)
    out = pa.schema([*INTERNAL_FIELDS, *timeline.row_fields(keep_dropped)])
    events = (
        pa.concat_tables(
            [
                _conform_events(tables.pop(obj.key), out, timeline.fills.get(obj.key, {}), timeline)
                for obj in batch
            ]
        )
        if batch
        else out.empty_table()
    )
    _check_keys(events, key, batch)
    return _apply_policy(events, entry, secret), timeline


def _object_first_commit(reader: LakeReader, obj: LakeObject) -> int | None:
    schema = pa.schema(INTERNAL_FIELDS)
    parts = list(reader.iter_object(obj, schema, batch_size=262_144))
    return _first_commit_us(pa.Table.from_batches(parts, schema=schema)) if parts else None


def _first_commit_us(events: pa.Table) -> int | None:
    if not events.num_rows:
        return None
    return pc.min(pc.cast(events.column("__commit_ts"), pa.int64())).as_py()  # µs, exact


def _conform_events(
    table: pa.Table, schema: pa.Schema, fills: dict[str, str], timeline: Timeline
) -> pa.Table:
    arrays = []
    for f in schema:
        mode = fills.get(f.name)
        if f.name in table.column_names and mode is None:
            col = table.column(f.name)
            arrays.append(col if col.type == f.type else col.cast(f.type))
        else:
            # absent and not on the timeline when the object was: the object predates the column
            value = timeline.lives[f.name].default() if mode in (DEFAULT, None) else None
            arrays.append(fill_column(table.num_rows, value, f.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _check_keys(events: pa.Table, key: tuple[str, ...], batch: list[LakeObject]) -> None:
    not_t = pc.not_equal(events.column("__op"), "t")
    for c in key:
        bad = pc.and_(not_t, pc.is_null(events.column(c)))
        if pc.any(bad).as_py():
            i = pc.index(bad, True).as_py()
            obj = events.column("__source_object")[i].as_py()
            row = events.column("__row_index")[i].as_py()
            raise LakeObjectError(
                obj,
                f"row {row}: primary key column {c!r} is null (a table without a "
                "primary key, or the wrong primary_key in the tables config)",
            )


def _apply_policy(events: pa.Table, entry: TableConfig, secret: str | None = None) -> pa.Table:
    for column, policy in entry.columns.items():
        if column not in events.column_names:
            continue
        if policy == ColumnPolicy.drop:
            events = events.drop_columns([column])
        elif policy == ColumnPolicy.pseudonymise:
            events = events.set_column(
                events.schema.get_field_index(column),
                events.schema.field(column),
                pseudonymise(events.column(column).combine_chunks(), entry.topic, column, secret),
            )
    return events


def pseudonymise(arr: pa.Array, topic: str, column: str, secret: str | None = None) -> pa.Array:
    """Keyed HMAC-SHA256 (hex) of each value: stable, so joins on it still work; the key comes
    from the environment only. TOAST placeholders pass through so they still mean 'unchanged'."""
    secret = secret or get_settings().pseudonym_key_value()
    if not secret:
        raise ConfigError(
            f"{topic}: column {column!r} is to be pseudonymised but {PSEUDONYM_KEY_ENV} is not set "
            "(the HMAC key comes from the environment only)"
        )
    key = secret.encode()
    ph = is_toast_placeholder(arr).to_numpy(zero_copy_only=False)
    values = arr.cast(pa.string()).to_pylist()
    out = [
        v if v is None or ph[i] else hmac.new(key, v.encode(), hashlib.sha256).hexdigest()
        for i, v in enumerate(values)
    ]
    return pa.array(out, pa.string())


def _key_mask(table: pa.Table, keys: pl.DataFrame, key: tuple[str, ...]) -> np.ndarray:
    """Which rows of ``table`` have a key in ``keys``."""
    if table.num_rows == 0:
        return np.zeros(0, bool)
    frame = pl.from_arrow(table.select(list(key)))
    assert isinstance(frame, pl.DataFrame)
    keys = keys.cast(frame.schema)
    hit = frame.with_row_index("__i").join(keys, on=list(key), how="semi", nulls_equal=False)
    mask = np.zeros(table.num_rows, bool)
    mask[hit.get_column("__i").to_numpy()] = True
    return mask


@dataclass
class _BatchWrite:
    content: pa.Table | pa.RecordBatchReader  # new rows of the replaced clusters, with __cluster
    replaced: list[int]  # cluster ids whose rows ``content`` replaces (old and new ids)
    versions: pa.Table | None = None  # the batch's row versions (tables keeping history)


def _apply_batch(
    st: StateTable,
    meta: StateMeta,
    events: pa.Table,
    key: tuple[str, ...],
    row_schema: pa.Schema,
    overwrite_all: bool,
    options: CompactOptions,
    result: TableResult,
    keep_images: bool,
    resets: dict[str, pa.Array | None],
    versions: bool = False,
) -> _BatchWrite:
    """Fold one batch with the state rows of the clusters its keys fall into. ``resets``: columns
    every state row takes anew (added, or begun again after a drop: see state.columns)."""
    has_truncate = bool(pc.any(pc.equal(events.column("__op"), "t")).as_py())
    keyed = events.select([*key, "__op"]).filter(pc.not_equal(events.column("__op"), "t"))
    keys_frame = pl.from_arrow(keyed.select(list(key))).unique()
    assert isinstance(keys_frame, pl.DataFrame)
    waiting = _waiting_for_halves(st, events, key)
    if waiting is not None:  # c halves of key changes whose d half is in this batch
        keys_frame = pl.concat([keys_frame, waiting.cast(keys_frame.schema)]).unique()
    snapshot = completed_snapshot(events, meta)
    everything = has_truncate or snapshot is not None  # both reach every row of the table
    by_range = ranged(key, row_schema)
    clusters = sorted(meta.clusters, key=lambda c: c.lo if by_range else c.id)
    # a newest cluster at least half full is closed: new keys open the next one instead of
    # rewriting it, so appends cost their own rows, not the newest cluster's
    closed = bool(clusters) and clusters[-1].rows >= _target_rows(options, events) // 2
    if everything or overwrite_all:
        affected = clusters  # a truncate reaches every row; a full overwrite rewrites them all
    elif by_range:
        values = cluster_values(keys_frame.to_arrow(), key) if keys_frame.height else np.zeros(0, np.int64)
        if closed and len(values) and values.max() > clusters[-1].hi:
            top = clusters[-1]
            clusters = [*clusters, Cluster(max(c.id for c in clusters) + 1, top.hi + 1, top.hi + 1)]
        affected = [clusters[i] for i in np.unique(assign(values, clusters))] if clusters else []
    else:
        affected = _arrival_clusters(st, keys_frame, key, clusters, closed)
    return _rewrite(
        st,
        meta,
        events,
        key,
        row_schema,
        options,
        result,
        keep_images,
        keys_frame,
        clusters,
        affected,
        by_range,
        everything=everything,
        resets=resets,
        snapshot=snapshot,
        versions=versions,
    )


def _fold(
    engine: FoldEngine,
    events: pa.Table,
    prior: pa.Table | None,
    key: tuple[str, ...],
    row_schema: pa.Schema,
    meta: StateMeta,
    pairing: pa.Table | None,
    keep_images: bool,
    result: TableResult,
    versions: bool = False,
):
    if versions and engine.kind == "local":  # the same fold, also returning every version
        result.engine.folds += 1
        folded = fold(
            events, prior, key, list(row_schema), meta.truncates, pairing, keep_images, versions=True
        )
    else:
        folded = engine.fold(
            meta.table,
            events,
            prior,
            key,
            list(row_schema),
            meta.truncates,
            pairing,
            keep_images,
            result.engine,
        )
        if versions:  # the versions of a batch another engine folds: the reference fold here
            folded.versions = fold(
                events, prior, key, list(row_schema), meta.truncates, pairing, keep_images, versions=True
            ).versions
    meta.truncates = folded.truncates
    result.events += folded.events
    result.duplicates += folded.duplicates
    result.inserts += folded.inserts
    result.updates += folded.updates
    result.deletes += folded.deletes
    if folded.unresolved_toast:
        result.notes.append(f"{folded.unresolved_toast} unchanged-TOAST values had no earlier value (null)")
    return folded


def _target_rows(options: CompactOptions, sample: pa.Table) -> int:
    return max(1_000, int(options.cluster_bytes / max(1.0, sample.nbytes / max(1, sample.num_rows))))


def _rewrite(
    st: StateTable,
    meta: StateMeta,
    events: pa.Table,
    key: tuple[str, ...],
    row_schema: pa.Schema,
    options: CompactOptions,
    result: TableResult,
    keep_images: bool,
    keys_frame: pl.DataFrame,
    clusters: list[Cluster],
    affected: list[Cluster],
    by_range: bool,
    everything: bool,
    resets: dict[str, pa.Array | None],
    snapshot: Snapshot | None = None,
    versions: bool = False,
) -> _BatchWrite:
    """Memory bounded by one cluster: read only the batch keys' rows for the fold (every row when
    a truncate reaches them all), plan the new clusters from the touched clusters' keys (narrow),
    then let the Delta write pull the touched clusters one at a time, minus the batch keys, plus
    the fold's rows."""
    ids = [c.id for c in affected]
    k = key[0]
    image = pc.field("__image")
    not_image = (image == False) | image.is_null()  # noqa: E712  (an expression, not a bool)
    prior = images = None
    narrow = pa.table({c: pa.array([], pa.null()) for c in (*key, "__deleted", "__image", CLUSTER_COLUMN)})
    if ids:
        narrow = st.read(ids, columns=[*key, "__deleted", "__image", CLUSTER_COLUMN])
        # one key column narrows the read; the exact (composite) key match follows in memory
        wanted = (
            not_image if everything else pc.field(k).isin(keys_frame.get_column(k).to_arrow()) & not_image
        )
        prior = st.read(ids, filter_=wanted)
        if not everything and len(key) > 1:
            prior = prior.filter(pa.array(_key_mask(prior, keys_frame, key)))
        images = st.read(ids, filter_=image == True)  # noqa: E712
        prior, images = _reset(prior, resets, row_schema), _reset(images, resets, row_schema)
    in_batch = _in_batch(narrow, keys_frame, key, everything)
    pairing = _concat_optional(
        [images, _reset(_pairing_candidates(st, events, prior, key), resets, row_schema)]
    )
    folded = _fold(
        options.engine, events, prior, key, row_schema, meta, pairing, keep_images, result, versions
    )
    rows = _conform(folded.rows, folded.rows.schema)
    if snapshot is not None:
        rows, retired = retire_unread(rows, snapshot)
        if retired:
            result.deletes += retired
            result.notes.append(f"re-snapshot (txId {snapshot.tx}): {retired} rows it no longer read deleted")
    plan_columns = rows.select([*key, "__deleted"]).schema
    plan = pa.concat_tables(
        [
            rows.select(plan_columns.names),
            narrow.filter(pa.array(~in_batch)).select(plan_columns.names).cast(plan_columns),
        ]
    )
    sample = rows if rows.num_rows else prior
    target_rows = _target_rows(options, sample) if sample is not None and sample.num_rows else 100_000
    if by_range:
        new_clusters, assigned = _recluster(plan, key, clusters, affected, target_rows)
    else:
        new_clusters, assigned = _recluster_arrival(
            plan, key, clusters, affected, narrow.select([*key, CLUSTER_COLUMN]), target_rows
        )
    gone = {c.id for c in affected}
    meta.clusters = sorted([c for c in clusters if c.id not in gone] + new_clusters, key=lambda c: c.lo)
    final = sorted(meta.clusters, key=lambda c: c.lo)
    schema = rows.schema.append(pa.field(CLUSTER_COLUMN, pa.int64()))
    fold_ids = assigned[: rows.num_rows]
    files = st.cluster_files(ids) if ids else {}
    del narrow, plan, prior

    def pieces():
        yield rows.append_column(CLUSTER_COLUMN, pa.array(fold_ids, pa.int64()))
        for cid in ids:
            old = st.read_files(files[cid], cid, rows.schema)
            keep = ~_in_batch(old, keys_frame, key, everything)
            kept = _conform(_reset(old.filter(pa.array(keep)), resets, row_schema), rows.schema)
            if kept.num_rows == 0:
                continue
            if by_range:  # a split cluster's rows go to the piece whose range holds them
                where = np.array([c.id for c in final], np.int64)[assign(cluster_values(kept, key), final)]
            else:  # arrival order never moves existing rows
                where = np.full(kept.num_rows, cid, np.int64)
            yield kept.append_column(CLUSTER_COLUMN, pa.array(where, pa.int64()))

    return _BatchWrite(
        pa.RecordBatchReader.from_batches(schema, _batches_of(pieces())),
        sorted(gone | {c.id for c in new_clusters}),
        folded.versions,
    )


def _reset(
    rows: pa.Table | None, resets: dict[str, pa.Array | None], row_schema: pa.Schema
) -> pa.Table | None:
    """State rows with the ``resets`` columns set to their new lifetime's default."""
    if rows is None or not resets:
        return rows
    for name, value in resets.items():
        f = row_schema.field(name)
        col = fill_column(rows.num_rows, value, f.type)
        i = rows.schema.get_field_index(name)
        rows = rows.set_column(i, f, col) if i >= 0 else rows.append_column(f, col)
    return rows


def _in_batch(rows: pa.Table, keys: pl.DataFrame, key: tuple[str, ...], everything: bool) -> np.ndarray:
    """State rows the fold replaces: the batch keys' rows (all rows for a truncate), never images."""
    if rows.num_rows == 0:
        return np.zeros(0, bool)
    not_image = ~rows.column("__image").fill_null(False).to_numpy(zero_copy_only=False)
    return not_image if everything else not_image & _key_mask(rows, keys, key)


def _batches_of(tables):
    for t in tables:
        yield from t.to_batches(max_chunksize=65_536)


def _concat_optional(tables: list[pa.Table | None]) -> pa.Table | None:
    present = [
        t.drop_columns([CLUSTER_COLUMN]) if CLUSTER_COLUMN in t.column_names else t
        for t in tables
        if t is not None and t.num_rows
    ]
    if not present:
        return None
    return pa.concat_tables(present, promote_options="permissive")


def _waiting_for_halves(st: StateTable, events: pa.Table, key: tuple[str, ...]) -> pl.DataFrame | None:
    """Keys of state rows still waiting for the d half of their key change, when it is here."""
    if not st.has_rows():
        return None
    deletes = events.filter(pc.equal(events.column("__op"), "d"))
    if deletes.num_rows == 0:
        return None
    lsns = pc.unique(deletes.column("__lsn").drop_null())
    if len(lsns) == 0:
        return None
    rows = st.read(None, pc.field("__pair_lsn").isin(lsns))
    if rows.num_rows == 0:
        return None
    # a key change without txId is recorded as waiting for txId -1 (fold's coordinates)
    delete_coords = pl.from_arrow(deletes.select(["__lsn", "__tx_id"]))
    assert isinstance(delete_coords, pl.DataFrame)
    halves = delete_coords.with_columns(pl.col("__tx_id").fill_null(-1)).unique()
    frame = pl.from_arrow(rows.select([*key, "__pair_lsn", "__pair_tx"]))
    assert isinstance(frame, pl.DataFrame)
    hit = frame.join(halves, left_on=["__pair_lsn", "__pair_tx"], right_on=["__lsn", "__tx_id"], how="semi")
    return hit.select(list(key)) if hit.height else None


def _conform(t: pa.Table, schema: pa.Schema) -> pa.Table:
    arrays = []
    for f in schema:
        if f.name in t.column_names:
            col = t.column(f.name)
            arrays.append(col if col.type == f.type else col.cast(f.type))
        else:
            arrays.append(pa.nulls(t.num_rows, f.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _pairing_candidates(
    st: StateTable, events: pa.Table, prior: pa.Table | None, key: tuple[str, ...]
) -> pa.Table | None:
    """State tombstones that may be the ``d`` half of a key change whose ``c`` is in this batch
    with unchanged-TOAST placeholders (only looked up when such a ``c`` exists)."""
    if not st.has_rows():
        return None
    coords = events.select(["__op", "__lsn", "__tx_id"])
    is_c = pc.equal(coords.column("__op"), "c").to_numpy(zero_copy_only=False)
    if not is_c.any():
        return None
    has_ph = np.zeros(events.num_rows, bool)
    for f in events.schema:
        if f.name.startswith("__") or f.name in key:
            continue
        mask = placeholders(events.column(f.name), np.where(is_c, 0, 1).astype(np.int8))
        if mask is not None:
            has_ph |= mask
    if not has_ph.any():
        return None
    c_rows = coords.filter(pa.array(has_ph))
    pairs = {
        (a, b)
        for a, b in zip(c_rows.column("__lsn").to_pylist(), c_rows.column("__tx_id").to_pylist())
        if a is not None and b is not None
    }
    deletes = coords.filter(pc.equal(coords.column("__op"), "d"))
    pairs -= set(zip(deletes.column("__lsn").to_pylist(), deletes.column("__tx_id").to_pylist()))
    if not pairs:
        return None
    found = st.tombstones_for(sorted(pairs))
    if found.num_rows and prior is not None and prior.num_rows:
        # a key's own row is in the batch already; images of it are candidates all the same
        frame = pl.from_arrow(prior.select(list(key))).unique()
        assert isinstance(frame, pl.DataFrame)
        is_image = found.column("__image").fill_null(False).to_numpy(zero_copy_only=False)
        found = found.filter(pa.array(is_image | ~_key_mask(found, frame, key)))
    return found.drop_columns([CLUSTER_COLUMN]) if found.num_rows else None


def _arrival_clusters(
    st: StateTable, keys: pl.DataFrame, key: tuple[str, ...], clusters: list[Cluster], closed: bool
) -> list[Cluster]:
    """Clusters holding the batch's keys (through the key index), plus the newest cluster, which
    new keys fill unless it is ``closed`` (then they open a new one)."""
    if not clusters:
        return []
    index = pl.from_arrow(st.key_index(key))
    assert isinstance(index, pl.DataFrame)
    hit = index.join(keys.cast({c: index.schema[c] for c in key}), on=list(key), how="semi")
    ids = set(hit.get_column(CLUSTER_COLUMN).unique().to_list()) | (set() if closed else {clusters[-1].id})
    return [c for c in clusters if c.id in ids]


def _recluster_arrival(
    content: pa.Table,
    key: tuple[str, ...],
    clusters: list[Cluster],
    affected: list[Cluster],
    old: pa.Table | None,
    target_rows: int,
) -> tuple[list[Cluster], np.ndarray]:
    """Rows keep their key's cluster; new keys fill the newest cluster up to the target size, then
    open new clusters."""
    n = content.num_rows
    assigned = np.full(n, -1, np.int64)
    if n == 0:
        return [], assigned
    if old is not None and old.num_rows:
        old_keys = pl.from_arrow(old.select([*key, CLUSTER_COLUMN]))
        assert isinstance(old_keys, pl.DataFrame)
        where = old_keys.unique(subset=list(key), keep="first")
        new_keys = pl.from_arrow(content.select(list(key)))
        assert isinstance(new_keys, pl.DataFrame)
        frame = new_keys.with_row_index("__i")
        known = frame.join(where.cast({c: frame.schema[c] for c in key}), on=list(key), how="inner")
        assigned[known.get_column("__i").to_numpy()] = known.get_column(CLUSTER_COLUMN).to_numpy()
    new_rows = np.flatnonzero(assigned < 0)
    next_id = max((c.id for c in clusters), default=-1) + 1
    top = clusters[-1].id if clusters and clusters[-1] in affected else None  # else closed: left as it is
    if len(new_rows):
        fill = 0 if top is None else max(0, target_rows - int((assigned == top).sum()))
        if top is not None and fill:
            assigned[new_rows[:fill]] = top
            new_rows = new_rows[fill:]
        for start in range(0, len(new_rows), target_rows):
            assigned[new_rows[start : start + target_rows]] = next_id
            next_id += 1
    live = ~content.column("__deleted").to_numpy(zero_copy_only=False)
    out = []
    for cid in np.unique(assigned):
        sel = assigned == cid
        out.append(Cluster(int(cid), 0, 0, int(sel.sum()), int(live[sel].sum())))
    return out, assigned


def _recluster(
    content: pa.Table,
    key: tuple[str, ...],
    clusters: list[Cluster],
    affected: list[Cluster],
    target_rows: int,
) -> tuple[list[Cluster], np.ndarray]:
    """Clusters for the new content of the affected clusters: each keeps its range (extended to
    the new keys that fell next to it) and splits past twice the target size."""
    n = content.num_rows
    if n == 0:
        return [], np.zeros(0, np.int64)
    values = cluster_values(content, key)
    next_id = max((c.id for c in clusters), default=-1) + 1
    if clusters:
        owner = np.array([c.id for c in clusters], np.int64)[assign(values, clusters)]
        groups = affected
    else:
        groups = [Cluster(next_id, int(values.min()), int(values.max()))]
        owner = np.full(n, next_id, np.int64)
        next_id += 1
    live = ~content.column("__deleted").to_numpy(zero_copy_only=False)
    out: list[Cluster] = []
    assigned = np.empty(n, np.int64)
    for c in groups:
        sel = np.flatnonzero(owner == c.id)
        if len(sel) == 0:
            continue  # emptied by deletes or a truncate: the range is free again
        v = values[sel]
        lo, hi = min(c.lo, int(v.min())), max(c.hi, int(v.max()))
        if len(sel) <= 2 * target_rows:
            out.append(Cluster(c.id, lo, hi, len(sel), int(live[sel].sum())))
            assigned[sel] = c.id
            continue
        order = sel[np.argsort(v, kind="stable")]
        sv = values[order]
        pieces = max(2, round(len(sel) / target_rows))
        cuts = [0]
        for b in np.linspace(0, len(sel), pieces + 1).astype(int)[1:-1]:
            while 0 < b < len(sv) and sv[b] == sv[b - 1]:  # one cluster value never spans two clusters
                b += 1
            if cuts[-1] < b < len(sv):
                cuts.append(int(b))
        cuts.append(len(sel))
        for i in range(len(cuts) - 1):
            piece = order[cuts[i] : cuts[i + 1]]
            p_lo = lo if i == 0 else int(sv[cuts[i]])
            p_hi = hi if i == len(cuts) - 2 else int(sv[cuts[i + 1] - 1])
            cid = c.id if i == 0 else next_id
            if i:
                next_id += 1
            out.append(Cluster(cid, p_lo, p_hi, len(piece), int(live[piece].sum())))
            assigned[piece] = cid
    return out, assigned
