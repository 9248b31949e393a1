"""A current-state table: a Delta table (``deltalake``) plus the metadata that makes it incremental.

Layout of ``<state>/<schema>.<table>/``::

    _delta_log/                     Delta commits (atomic; the only source of truth)
    __cluster=<n>/part-*.parquet    rows, clustered by key range
    _lakehouse/applied-*.parquet    manifest of applied raw objects, one per commit

Every commit carries ``lakehouse.meta`` (JSON) in its commit info: the manifest it belongs to,
the logical schema, the key, the cluster ranges and the truncates seen. A manifest written by a
run that died before its commit is never referenced, so a crash leaves the previous state.

Clusters: rows are grouped by a 64-bit cluster value (the key itself for one integer key column,
else a hash of the key) into disjoint ranges, one Delta partition each. A batch rewrites only
the clusters its keys fall into; new ids land at the top range, so an append-heavy change stream
touches the newest cluster only.
"""

from __future__ import annotations

import io
import json
import os
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError
from deltalake.transaction import CommitProperties

from lakehouse.lake.retry import delta_retry_options
from lakehouse.lake.store import ObjectStore, open_store
from lakehouse.settings import get_settings
from lakehouse.state.arrowfs import native_dataset
from lakehouse.state.fold import STATE_INTERNAL_NAMES, Truncate
from lakehouse.state.types import decode_schema, encode_schema, storage_schema, to_logical, to_storage

FORMAT_VERSION = 1
CLUSTER_COLUMN = "__cluster"
# how rows are clustered; a table written with another scheme is rebuilt
CLUSTERING = "v2: one integer key by range, else by arrival"
META_KEY = "lakehouse.meta"


class StateError(Exception):
    """The state table cannot be used as it is (names the table and what to do)."""


class ConcurrentWriteError(StateError):
    """Another writer committed to the table since this run read it; nothing of this commit
    landed (or it landed and was followed at once by another). Redo the work on the new version."""


@dataclass
class Cluster:
    id: int
    lo: int
    hi: int
    rows: int = 0
    live: int = 0

    def to_json(self) -> list[int]:
        return [self.id, self.lo, self.hi, self.rows, self.live]


@dataclass
class StateMeta:
    topic: str
    table: str
    key: tuple[str, ...]
    row_schema: pa.Schema  # logical types of the source columns
    clusters: list[Cluster] = field(default_factory=list)
    truncates: list[Truncate] = field(default_factory=list)
    manifest: str | None = None
    clustering: str = CLUSTERING
    format_version: int = FORMAT_VERSION
    newest_commit_us: int | None = None  # newest source commit time applied (epoch µs): lag
    # columns that left the table: name -> [lifetime start, drop] in commit µs (see state.columns)
    dropped: dict[str, list[int | None]] = field(default_factory=dict)
    snapshots: list[int] = field(default_factory=list)  # txIds of complete snapshots applied (re-snapshots)

    def to_json(self) -> str:
        return json.dumps(
            {
                "format_version": self.format_version,
                "topic": self.topic,
                "table": self.table,
                "key": list(self.key),
                "row_schema": encode_schema(self.row_schema),
                "clusters": [c.to_json() for c in self.clusters],
                "truncates": [t.to_json() for t in self.truncates],
                "manifest": self.manifest,
                "clustering": self.clustering,
                "newest_commit_us": self.newest_commit_us,
                "dropped": self.dropped,
                "snapshots": self.snapshots,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> StateMeta:
        d = json.loads(text)
        return cls(
            topic=d["topic"],
            table=d["table"],
            key=tuple(d["key"]),
            row_schema=decode_schema(d["row_schema"]),
            clusters=[Cluster(*c) for c in d["clusters"]],
            truncates=[Truncate.from_json(t) for t in d["truncates"]],
            manifest=d["manifest"],
            clustering=d.get("clustering", "v1"),
            format_version=d["format_version"],
            newest_commit_us=d.get("newest_commit_us"),
            dropped=d.get("dropped") or {},
            snapshots=d.get("snapshots") or [],
        )

    @property
    def live_rows(self) -> int:
        return sum(c.live for c in self.clusters)

    @property
    def tombstones(self) -> int:
        return sum(c.rows - c.live for c in self.clusters)


MANIFEST_SCHEMA = pa.schema(
    [
        pa.field("key", pa.string()),
        pa.field("size", pa.int64()),
        pa.field("kafka_partition", pa.int32()),
        pa.field("start_offset", pa.int64()),
        pa.field("rows", pa.int64()),  # rows of the version applied (a re-delivered object may grow)
    ]
)


def delta_storage_options(uri: str) -> dict[str, str] | None:
    """deltalake options for ``s3://`` from the environment (credentials never from code)."""
    if not uri.startswith("s3://"):
        return None
    opts: dict[str, str] = {}
    aws = get_settings()
    endpoint = aws.aws_endpoint_url
    if endpoint:
        opts["AWS_ENDPOINT_URL"] = endpoint
        if endpoint.startswith("http://"):
            opts["AWS_ALLOW_HTTP"] = "true"
    opts["AWS_REGION"] = aws.aws_region or "us-east-1"
    opts.update(delta_retry_options())
    # commits are put-if-absent (S3 conditional writes): concurrent writers are safe without a lock
    # or unsafe rename; a store without conditional writes needs AWS_S3_ALLOW_UNSAFE_RENAME=true set
    # by the operator (then only one writer per table at a time: Dagster's per-table pool)
    return opts


def table_uri(state_uri: str, table: str) -> str:
    return f"{state_uri.rstrip('/')}/{table}"


class StateTable:
    """One current-state table under a state root (local folder or ``s3://``)."""

    def __init__(self, state_uri: str, table: str):
        self.state_uri = state_uri
        self.table = table
        self.uri = (
            table_uri(state_uri, table)
            if "://" in state_uri
            else os.path.abspath(table_uri(state_uri, table))
        )
        self.options = delta_storage_options(self.uri)
        self._store: ObjectStore | None = None
        self._dt: DeltaTable | None = None
        self.meta: StateMeta | None = None
        self._dataset: tuple[DeltaTable, ds.Dataset] | None = None
        # stored columns reads leave out: a column begun anew (dropped and added again, maybe with
        # another type) whose old values the writer replaces
        self.discard: set[str] = set()

    @property
    def store(self) -> ObjectStore:
        if self._store is None:
            self._store = open_store(self.state_uri)
        return self._store

    # -- reading ---------------------------------------------------------------------------

    def exists(self) -> bool:
        return DeltaTable.is_deltatable(self.uri, storage_options=self.options)

    def load(self, version: int | None = None) -> StateMeta | None:
        """Open the newest version (or ``version``) and its metadata; None if there is no table."""
        if not self.exists():
            self._dt, self.meta = None, None
            return None
        self._dt = DeltaTable(self.uri, version=version, storage_options=self.options)
        at = self._dt.version()
        # maintenance commits (optimize, vacuum) carry no metadata of ours: take the newest that does
        text = next(
            (
                info[META_KEY]
                for v in range(at, max(-1, at - 20), -1)
                if META_KEY in (info := self.commit_info(v))
            ),
            None,
        )
        if text is None:
            raise StateError(
                f"{self.uri}: a Delta table without {META_KEY} in its recent commits: not written "
                "by lakehouse compact (or written by another tool since); rebuild with --full-refresh"
            )
        self.meta = StateMeta.from_json(text)
        if self.meta.format_version != FORMAT_VERSION:
            raise StateError(
                f"{self.uri}: state format {self.meta.format_version}, this version writes "
                f"{FORMAT_VERSION}; rebuild with --full-refresh"
            )
        return self.meta

    def commit_info(self, version: int) -> dict:
        """The commitInfo of one version, read from its log file. (``DeltaTable.history`` numbers
        the newest commits it lists relative to the loaded version, so a commit made meanwhile
        by another writer, or a table loaded at an older version, gets a wrong number.)"""
        try:
            log = self.store.get_bytes(f"{self.table}/_delta_log/{version:020d}.json")
        except (FileNotFoundError, KeyError):
            return {}
        except Exception as exc:  # noqa: BLE001 - a missing key on S3 (NoSuchKey)
            if "NoSuchKey" in str(exc) or "Not Found" in str(exc):
                return {}
            raise
        for line in log.splitlines():
            action = json.loads(line)
            if "commitInfo" in action:
                return action["commitInfo"]
        return {}

    def require(self, version: int | None = None) -> StateMeta:
        """Like :meth:`load`, but a missing table is a :class:`StateError` naming it."""
        meta = self.load(version)
        if meta is None:
            raise StateError(f"{self.uri}: no current-state table here (run lakehouse compact first)")
        return meta

    def has_rows(self) -> bool:
        return self._dt is not None and self.meta is not None

    def detach(self) -> None:
        """Forget the loaded table: the next write replaces it as a whole (rebuilds)."""
        self._dt, self.meta = None, None

    @property
    def version(self) -> int | None:
        return self._dt.version() if self._dt is not None else None

    def applied(self) -> pa.Table:
        if self.meta is None or self.meta.manifest is None:
            return MANIFEST_SCHEMA.empty_table()
        data = self.store.get_bytes(f"{self.table}/{self.meta.manifest}")
        table = pq.read_table(io.BytesIO(data))
        if "rows" not in table.column_names:  # written before row counts were recorded
            table = table.append_column("rows", pa.nulls(table.num_rows, pa.int64()))
        return table

    def read(
        self, clusters: list[int] | None = None, filter_=None, columns: list[str] | None = None
    ) -> pa.Table:
        """State rows (logical types, internal columns included) of some clusters, or all."""
        assert self._dt is not None and self.meta is not None
        ds = self.dataset()
        expr = None
        if clusters is not None:
            if not clusters:
                empty = self._empty()
                return empty.select(columns) if columns else empty
            expr = pc.field(CLUSTER_COLUMN).isin(clusters)
        if filter_ is not None:
            expr = filter_ if expr is None else expr & filter_
        table = ds.to_table(filter=expr, columns=columns)
        return to_logical(self._without_discarded(table), self.meta.row_schema)

    def _without_discarded(self, table: pa.Table) -> pa.Table:
        gone = [c for c in self.discard if c in table.column_names]
        return table.drop_columns(gone) if gone else table

    def _empty(self) -> pa.Table:
        assert self._dt is not None and self.meta is not None
        schema = pa.schema(self._dt.schema().to_arrow())
        return to_logical(self._without_discarded(schema.empty_table()), self.meta.row_schema)

    def tombstones_for(self, pairs: list[tuple[int, int]]) -> pa.Table:
        """Tombstones whose delete had one of these ``(lsn, txId)``: halves of key changes."""
        lsns = sorted({p[0] for p in pairs})
        t = self.read(None, (pc.field("__deleted") == True) & pc.field("__lsn").isin(lsns))  # noqa: E712
        if t.num_rows == 0:
            return t
        want = pl.DataFrame({"__lsn": [p[0] for p in pairs], "__tx_id": [p[1] for p in pairs]})
        ids = pl.from_arrow(t.select(["__lsn", "__tx_id"]))
        assert isinstance(ids, pl.DataFrame)
        hit = (
            ids.with_row_index("__i")
            .join(want.unique(), on=["__lsn", "__tx_id"], how="semi")
            .get_column("__i")
            .to_numpy()
        )
        return t.take(pa.array(hit))

    def dataset(self) -> ds.Dataset:
        """The loaded version as a pyarrow dataset (storage types; see ``to_logical``)."""
        assert self._dt is not None
        # through a native filesystem: deltalake's default (a Python one) leaves Python objects for
        # Arrow's threads to release, which aborts the process when that races interpreter exit
        # (lakehouse.state.arrowfs)
        # one per loaded version: building it lists every file (half the cost of a small read)
        if self._dataset is None or self._dataset[0] is not self._dt:
            self._dataset = (self._dt, native_dataset(self._dt, self.uri))
        return self._dataset[1]

    def files_by_cluster(self) -> dict[int, set[str]]:
        """Data files (paths in the table) of every cluster in the loaded version."""
        assert self._dt is not None
        actions = pa.table(self._dt.get_add_actions(flatten=True))
        out: dict[int, set[str]] = {}
        for path, cid in zip(
            actions.column("path").to_pylist(), actions.column(f"partition.{CLUSTER_COLUMN}").to_pylist()
        ):
            out.setdefault(int(cid), set()).add(path)
        return out

    def cluster_files(self, clusters: list[int]) -> dict[int, list[str]]:
        """Data files of each cluster in the current version (keys relative to the state root)."""
        assert self._dt is not None
        actions = pa.table(self._dt.get_add_actions(flatten=True))
        wanted = set(clusters)
        out: dict[int, list[str]] = {c: [] for c in clusters}
        for path, cid in zip(
            actions.column("path").to_pylist(), actions.column(f"partition.{CLUSTER_COLUMN}").to_pylist()
        ):
            if cid is not None and int(cid) in wanted:
                out[int(cid)].append(f"{self.table}/{path}")
        return out

    def read_files(self, files: list[str], cluster: int, schema: pa.Schema) -> pa.Table:
        """Rows of one cluster straight from its Parquet files through pyarrow (usable while a
        deltalake write is running: deltalake's own readers cannot nest in its runtime)."""
        parts = [pq.read_table(self.store.open_input(f)) for f in files]
        table = pa.concat_tables(parts, promote_options="permissive") if parts else schema.empty_table()
        table = table.append_column(CLUSTER_COLUMN, pa.array(np.full(table.num_rows, cluster, np.int64)))
        assert self.meta is not None
        return to_logical(self._without_discarded(table), self.meta.row_schema)

    def key_index(self, key: tuple[str, ...]) -> pa.Table:
        """Key columns and cluster of every row (two narrow columns, read by projection)."""
        assert self._dt is not None and self.meta is not None
        table = self.dataset().to_table(columns=[*key, CLUSTER_COLUMN])
        return to_logical(table, self.meta.row_schema)

    def visible(self) -> pa.Table:
        """The rows readers see: live rows, source columns only, logical types."""
        if self.meta is None:
            self.require()
        assert self.meta is not None
        t = self.read(None, pc.field("__deleted") == False)  # noqa: E712
        cols = [f.name for f in self.meta.row_schema]
        return t.select(cols).cast(self.meta.row_schema)

    # -- writing ---------------------------------------------------------------------------

    def write(
        self,
        content: pa.Table | pa.RecordBatchReader,
        replaced: list[int],
        meta: StateMeta,
        applied: pa.Table,
        overwrite_all: bool,
    ) -> None:
        """Atomically replace the ``replaced`` clusters by ``content`` (or everything, when
        ``overwrite_all``), recording the applied objects. ``content`` has a ``__cluster`` column."""
        # the time in the name lets maintenance drop manifests of old or crashed runs
        name = f"applied-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:12]}.parquet"
        buf = io.BytesIO()
        pq.write_table(applied.cast(MANIFEST_SCHEMA), buf, compression="zstd")
        self.store.put_bytes(f"{self.table}/_lakehouse/{name}", buf.getvalue())
        meta.manifest = f"_lakehouse/{name}"
        data = to_storage(content) if isinstance(content, pa.Table) else storage_reader(content)
        # no retries inside delta-rs: the content and metadata were derived from the version read, so
        # a commit that lost a race must be redone on the new version (ConcurrentWriteError), never
        # rebased onto it (that is how a second copy of the rows would be appended)
        props = CommitProperties(custom_metadata={META_KEY: meta.to_json()}, max_commit_retries=0)
        base = self._dt
        if base is None and self.exists():  # a rebuild replaces the newest version as a whole
            base = DeltaTable(self.uri, storage_options=self.options)
        # taken now: a write moves the DeltaTable it was given to the version it committed
        first = 0 if base is None else base.version() + 1
        try:
            if overwrite_all or self._dt is None:
                write_deltalake(
                    base if base is not None else self.uri,
                    _reader(data),
                    mode="overwrite",
                    schema_mode="overwrite",
                    partition_by=[CLUSTER_COLUMN],
                    storage_options=self.options,
                    commit_properties=props,
                    target_file_size=256 << 20,
                    configuration=stats_only_on([*meta.key, *STATE_INTERNAL_NAMES]),
                )
            else:
                # no cluster replaced (every event of the batch was a copy): an empty write still
                # commits the manifest and metadata; -1 names no cluster
                ids = ", ".join(str(i) for i in sorted(set(replaced))) or "-1"
                write_deltalake(
                    self._dt,
                    _reader(data),
                    mode="overwrite",
                    predicate=f"{CLUSTER_COLUMN} IN ({ids})",
                    partition_by=[CLUSTER_COLUMN],
                    storage_options=self.options,
                    commit_properties=props,
                    target_file_size=256 << 20,
                )
        except CommitFailedError as exc:
            raise ConcurrentWriteError(f"{self.uri}: another writer committed version {first} first") from exc
        self._dt = self._own_commit(meta, first)
        self.meta = meta

    def _own_commit(self, meta: StateMeta, first: int) -> DeltaTable:
        """The version just committed, found by this run's manifest in the log: the next batch
        builds on exactly that version, never on a newer one another writer made without ``meta``
        knowing. (It is the base's next version; a table created by this run may have been
        created first by another writer, then this run's overwrite is the version after.)"""
        for version in range(first, first + 10):
            info = self.commit_info(version)
            if not info:
                break
            if META_KEY in info and json.loads(info[META_KEY]).get("manifest") == meta.manifest:
                return DeltaTable(self.uri, version=version, storage_options=self.options)
        raise ConcurrentWriteError(
            f"{self.uri}: the commit of this run is not where it was written "
            f"(version {first}); other writers committed around it"
        )


def stats_only_on(columns: list[str]) -> dict[str, str]:
    """Delta keeps min/max statistics of these columns only: the key and the bookkeeping reads
    filter on; source values (personal data among them) never reach the transaction log, which
    no vacuum removes (docs/erasure.md)."""
    return {"delta.dataSkippingStatsColumns": ",".join(dict.fromkeys(columns))}


def _reader(data: pa.Table | pa.RecordBatchReader) -> pa.RecordBatchReader:
    # delta-rs streams a reader; handing it a whole table makes it buffer a second copy
    return data.to_reader(max_chunksize=65_536) if isinstance(data, pa.Table) else data


def storage_reader(reader: pa.RecordBatchReader) -> pa.RecordBatchReader:
    """The same stream in storage types (see :mod:`lakehouse.state.types`)."""
    target = storage_schema(reader.schema)

    def converted():
        for batch in reader:
            if batch.num_rows:
                yield from to_storage(pa.Table.from_batches([batch])).cast(target).to_batches()

    return pa.RecordBatchReader.from_batches(target, converted())


# -- clusters --------------------------------------------------------------------------------


def ranged(key: tuple[str, ...], schema: pa.Schema) -> bool:
    """One integer key column: clusters are ranges of it (ids grow, so new rows meet few files).
    Any other key (uuid, text, composite) clusters by arrival: new keys fill the newest cluster,
    and a key-to-cluster index (the key and ``__cluster`` columns) finds the clusters of old keys."""
    return len(key) == 1 and key[0] in schema.names and pa.types.is_integer(schema.field(key[0]).type)


def cluster_values(table: pa.Table, key: tuple[str, ...]) -> np.ndarray:
    """The int64 a row is clustered by, for ranged tables: the key itself."""
    return table.column(key[0]).cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)


def assign(values: np.ndarray, clusters: list[Cluster]) -> np.ndarray:
    """Cluster index (into ``clusters``, sorted by ``lo``) of each value; values in a gap go to
    the cluster below the gap (the first cluster when below every range)."""
    if not clusters:
        return np.zeros(len(values), np.int64)
    los = np.array([c.lo for c in clusters], np.int64)
    return np.clip(np.searchsorted(los, values, side="right") - 1, 0, len(clusters) - 1)
