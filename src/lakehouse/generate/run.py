"""``generate_lake``: write a realistic Eco2 lake as Debezium 3.6.3 + the Kafka Connect S3 sink would.

Generation is chunked and streaming: each chunk simulates a window of commit time (about
``chunk_events`` change events), sorts its transactions into commit order, emits everything that
committed inside the window and carries the rest (late follow-ups such as feedback updates) to
the next chunk. Between chunks only small state survives: id counters, per-user columns, WAL/txId
positions, Kafka offsets and the sink's open files.
"""

from __future__ import annotations

import gzip
import io
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from lakehouse.generate import vocab as V
from lakehouse.generate.domain import (
    OP_D,
    OP_T,
    US,
    Batch,
    DomainState,
    ScanFlags,
    expected_events_per_scan,
    history,
    make_vocab,
    pick_users,
    scan_lifecycles,
    user_events,
)
from lakehouse.generate.emit import WAL_SIZE, Capture, Server, Source, TopicWriter, TransactionWriter
from lakehouse.generate.encode import RowEncoder, Texts
from lakehouse.generate.options import GeneratorOptions
from lakehouse.generate.schemas import (
    FIELD_PARTITION_COLUMNS,
    LLM_VERSIONS,
    TABLES,
)
from lakehouse.lake.avrofile import AvroContainer
from lakehouse.lake.layout import Partitioner
from lakehouse.lake.sink import SinkConfig, SinkWriter, UnwrapConfig
from lakehouse.lake.store import ObjectInfo, ObjectStore, open_store

SNAPSHOT_ORDER = {  # Debezium snapshots the captured tables of a database in name order
    "auth": ["users"],
    "scan": ["classification_results", "feedback", "llm_call_log", "rag_retrievals", "scans"],
}
TABLE_INDEX = {t.table: i for i, t in enumerate(TABLES)}
SNAPSHOT_SLICE = 20_000


@dataclass
class GenerationReport:
    events: int  # Kafka value records (change events incl. Debezium replays; tombstones excluded)
    objects: int  # objects written to the lake (value files + key companions)
    bytes: int
    seconds: float
    per_topic: dict[str, dict[str, int]]  # topic -> {"c","u","d","r","t","objects"}
    tombstones: int = 0  # Kafka tombstones (offsets that never reach a value file)
    replayed: int = 0  # events Debezium re-emitted after a simulated crash (in `events`)
    rewritten_rows: int = 0  # rows the sink wrote a second time into overlapping objects
    rows: int = 0  # rows in value files (unwrap drops truncates; rewrites counted)
    snapshot_rows: int = 0
    transaction_events: int = 0  # BEGIN/END events (options.transactions)


class _CountingStore:
    """Wraps the lake's store: counts objects/bytes per topic, remembers the keys written."""

    def __init__(self, store: ObjectStore, topics_dir: str = "topics"):
        self.store = store
        self.root_uri = store.root_uri
        self.prefix = topics_dir + "/"
        self.keys: set[str] = set()
        self.objects: dict[str, int] = {}
        self.bytes = 0

    def put_bytes(self, key: str, data: bytes) -> None:
        self.store.put_bytes(key, data)
        if key not in self.keys:
            self.keys.add(key)
            topic = key[len(self.prefix) :].split("/", 1)[0]
            self.objects[topic] = self.objects.get(topic, 0) + 1
        self.bytes += len(data)

    def __getattr__(self, name):
        return getattr(self.store, name)


class _MemoryStore:
    def __init__(self):
        self.root_uri = "memory://"
        self.data: dict[str, bytes] = {}

    def put_bytes(self, key: str, data: bytes) -> None:
        self.data[key] = data

    def list(self, prefix: str = "", start_after: str | None = None):
        for k in sorted(self.data):
            if k.startswith(prefix) and (start_after is None or k > start_after):
                yield ObjectInfo(k, len(self.data[k]))


def _sink_config(options: GeneratorOptions, table: str) -> SinkConfig:
    if options.partitioner == "field":
        partitioner = Partitioner.named("field", fields=(FIELD_PARTITION_COLUMNS[table],))
    else:
        partitioner = Partitioner.named(options.partitioner)
    return SinkConfig(
        format=options.format,
        json_embed_schema=options.json_schemas,
        avro_codec=options.avro_codec,
        flush_size=options.flush_size,
        partitioner=partitioner,
        unwrap=UnwrapConfig() if options.shape == "unwrap" else None,
        store_keys=options.store_keys,
    )


def _transaction_sink_config(options: GeneratorOptions) -> SinkConfig:
    """The transaction topic's sink: BEGIN/END events have no envelope to unwrap and no business
    column to partition by (a field partitioner falls back to Kafka partitions)."""
    config = replace(_sink_config(options, "scans"), unwrap=None)
    return (
        replace(config, partitioner=Partitioner.named("default"))
        if options.partitioner == "field"
        else config
    )


@dataclass
class _Run:
    options: GeneratorOptions
    store: _CountingStore
    rng: np.random.Generator
    state: DomainState = field(default_factory=DomainState)
    writers: dict[str, TopicWriter] = field(default_factory=dict)
    sinks: dict[str, SinkWriter] = field(default_factory=dict)
    servers: dict[str, Server] = field(default_factory=dict)
    transactions: dict[str, TransactionWriter] = field(default_factory=dict)  # per server
    emitted: int = 0  # original change events emitted (budget)

    # special moments of the stream (µs commit times)
    t_add: int = 1 << 62
    t_widen: int = 1 << 62
    t_truncate: int | None = None

    def llm_version(self, t: np.ndarray) -> np.ndarray:
        return (t >= self.t_add).astype(np.int8) + (t >= self.t_widen).astype(np.int8)


def generate_lake(
    lake: str | Path | ObjectStore,
    options: GeneratorOptions,
    progress: Callable[[int, int], None] | None = None,
    *,
    chunk_events: int = 100_000,
) -> GenerationReport:
    """Write an Eco2 lake; ``progress(events_done, events_total)`` is called after every chunk."""
    options.validate()
    t_start = time.perf_counter()
    base = open_store(lake) if isinstance(lake, (str, Path)) else lake
    store = _CountingStore(base)
    rng = np.random.default_rng(options.seed)
    N = options.events
    report_progress = progress or (lambda done, total: None)
    report_progress(0, N)

    # -- vocabularies ------------------------------------------------------------------------
    rationales, r_owner = V.build_rationales(rng, long=options.toast)
    docs, chunk_ids, chunk_texts, c_owner = V.build_chunks(rng)
    texts = Texts.build(rationales, (docs, chunk_ids, chunk_texts), options.seed)
    vocab = make_vocab(r_owner, c_owner)
    encoder = RowEncoder(texts, options.seed)
    flags = ScanFlags(pk_changes=options.pk_changes, deletes=options.deletes, long_rationale=options.toast)

    run = _Run(options, store, rng)
    run.servers = {
        "auth": Server(
            "auth",
            "auth",
            wal_pos=0x2_1000_0000 + int(rng.integers(0, 1 << 20)) * 8,
            next_txid=1_000 + int(rng.integers(0, 500)),
        ),
        "scan": Server(
            "scan",
            "scan",
            wal_pos=0x5_4000_0000 + int(rng.integers(0, 1 << 20)) * 8,
            next_txid=40_000 + int(rng.integers(0, 5_000)),
        ),
    }
    E = expected_events_per_scan(options.pk_changes, options.deletes)
    expected_share = {"scans": 3 / E, "llm_call_log": 3 / E}  # topics with a sink rewrite
    for td in TABLES:
        config = _sink_config(options, td.table)
        sink = SinkWriter(store, config)
        capture = None
        if options.replays and td.table in ("scans", "llm_call_log"):
            exp = max(1, int(N * expected_share[td.table] / options.partitions))
            length = max(3, min(options.flush_size + options.flush_size // 2, exp // 4))
            capture = Capture(start=int(exp * 0.45) + max(1, options.flush_size // 3), length=length)
        run.sinks[td.table] = sink
        run.writers[td.table] = TopicWriter(
            td,
            options.topic_prefix,
            options.partitions,
            encoder,
            sink,
            options.flush_size,
            options.store_keys,
            capture,
        )

    if options.transactions:
        for name in run.servers:
            topic = f"{options.topic_prefix}.transaction_{name}"
            run.transactions[name] = TransactionWriter(
                topic, SinkWriter(store, _transaction_sink_config(options))
            )

    # -- initial snapshot ------------------------------------------------------------------------
    # the database before capture: ~0.4 % users, ~0.33 % scans (~4 % of the events), capped so
    # memory stays bounded at any volume
    n_users0 = max(1, min(N, max(5, N // 250), 100_000))
    n_scans0 = min(N // 300, 50_000) if N >= 1_000 else 0
    hist = history(rng, run.state, vocab, options.start_us, n_users0, n_scans0, flags)
    snapshot_rows = 0
    for server_name, tables in SNAPSHOT_ORDER.items():
        server = run.servers[server_name]
        sizes = [(t, len(hist.get(t, ()))) for t in tables]
        sources = server.snapshot(rng, sizes, options.start_us)
        for table, n in sizes:
            for s in range(0, n, SNAPSHOT_SLICE):
                idx = np.arange(s, min(n, s + SNAPSHOT_SLICE))
                _write_table(run, table, hist[table].take(idx), sources[table].take(idx))
            snapshot_rows += n
        for table, _ in sizes:
            hist.pop(table, None)
    run.emitted = snapshot_rows
    report_progress(min(run.emitted, N), N)

    # -- streaming -----------------------------------------------------------------------------
    eps = options.events_per_second
    scan_rate = eps / E  # scans per second
    stream_start = options.start_us + 2 * US
    duration_us = max(N - snapshot_rows, 1) / eps * US
    if options.schema_change:
        run.t_add = stream_start + int(0.35 * duration_us)
        run.t_widen = stream_start + int(0.65 * duration_us)
    if options.truncates:
        run.t_truncate = stream_start + int(0.5 * duration_us)
    if options.replays:
        run.servers["scan"].crashes = [stream_start + int(f * duration_us) for f in (0.3, 0.7)]
        run.servers["auth"].crashes = [stream_start + int(0.55 * duration_us)]
    carried: dict[str, Batch] = {t.table: Batch.empty(t.table) for t in TABLES}
    T = stream_start
    while run.emitted < N:
        remaining = N - run.emitted
        n_scans = max(1, round(min(chunk_events, remaining * 1.05 + 20) / E))
        W = int(n_scans / scan_rate * US)
        fresh = _chunk(run, vocab, flags, T, W, n_scans)
        pending = {t: Batch.concat(t, [carried[t], fresh.get(t, Batch.empty(t))]) for t in carried}
        carried = _emit_window(run, pending, T + W, N)
        T += W
        report_progress(min(run.emitted, N), N)

    for sink in [*run.sinks.values(), *(w.sink for w in run.transactions.values())]:
        sink.close()
    rewritten = _sink_rewrites(run) if options.replays else 0
    per_topic = {}
    events = tombstones = 0
    for td in TABLES:
        w = run.writers[td.table]
        per_topic[w.topic] = {**w.counts, "objects": store.objects.get(w.topic, 0)}
        events += sum(w.counts.values())
        tombstones += w.tombstones
    rows = sum(s.rows_written for s in run.sinks.values()) + rewritten
    return GenerationReport(
        events=events,
        objects=sum(store.objects.values()),
        bytes=store.bytes,
        seconds=time.perf_counter() - t_start,
        per_topic=per_topic,
        tombstones=tombstones,
        replayed=sum(s.replayed for s in run.servers.values()),
        rewritten_rows=rewritten,
        rows=rows,
        snapshot_rows=snapshot_rows,
        transaction_events=sum(w.events for w in run.transactions.values()),
    )


def _chunk(run: _Run, vocab, flags: ScanFlags, T: int, W: int, n_scans: int) -> dict[str, Batch]:
    rng, state = run.rng, run.state
    t0 = T + np.sort((rng.random(n_scans) * W).astype(np.int64))
    users = pick_users(rng, state, T, n_scans)
    np.maximum.at(state.user("last"), users - 1, t0)
    u_rows, _closed = user_events(rng, state, T, T + W, n_scans, run.options.deletes, users)
    scan_no = state.next_id["scans"] + np.arange(n_scans, dtype=np.int64)
    state.next_id["scans"] += n_scans
    parts = scan_lifecycles(rng, state, vocab, scan_no, t0, users, flags)
    out = {t: Batch.concat(t, b) for t, b in parts.items()}
    out["users"] = u_rows
    if run.t_truncate is not None and T <= run.t_truncate < T + W:
        # TRUNCATE scan.llm_call_log (log retention): one key-less 't' event
        tr = Batch.make(
            "llm_call_log", 1, t=run.t_truncate, b=run.t_truncate - 3_000, tx=state.new_tx_keys(1), op=OP_T
        )
        out["llm_call_log"] = Batch.concat("llm_call_log", [out["llm_call_log"], tr])
    return out


def _emit_window(run: _Run, pending: dict[str, Batch], t_end: int, budget: int) -> dict[str, Batch]:
    """Emit rows committed before ``t_end`` (and within the event budget); return the rest."""
    names = list(pending)
    t = np.concatenate([pending[n].cols["t"] for n in names])
    tx = np.concatenate([pending[n].cols["tx"] for n in names])
    st = np.concatenate([pending[n].cols["st"] for n in names])
    tab = np.concatenate([np.full(len(pending[n]), TABLE_INDEX[n], np.int8) for n in names])
    row = np.concatenate([np.arange(len(pending[n])) for n in names])
    order = np.lexsort((st, tx, t))
    t, tx, tab, row = t[order], tx[order], tab[order], row[order]
    cut = int(np.searchsorted(t, t_end))
    final = False
    if run.emitted + cut >= budget:
        final = True
        want = budget - run.emitted
        new_tx = np.flatnonzero(np.r_[True, tx[1:] != tx[:-1]])
        k = int(np.searchsorted(new_tx, want))
        cut = int(new_tx[k]) if k < len(new_tx) else len(t)
    for server_name in ("auth", "scan"):
        is_auth = tab[:cut] == TABLE_INDEX["users"]
        sel = np.flatnonzero(is_auth if server_name == "auth" else ~is_auth)
        if len(sel):
            _emit_server(run, server_name, pending, tab[sel], row[sel])
    run.emitted += cut
    if final:
        return {n: Batch.empty(n) for n in names}
    carried = {}
    for n in names:
        rest = row[cut:][tab[cut:] == TABLE_INDEX[n]]
        carried[n] = pending[n].take(np.sort(rest))
    return carried


_TABLE_NAMES = [t.table for t in TABLES]


def _emit_server(
    run: _Run, server_name: str, pending: dict[str, Batch], tab: np.ndarray, row: np.ndarray
) -> None:
    rng = run.rng
    n = len(tab)
    cols = {
        k: np.empty(n, dtype=dt)
        for k, dt in (("t", np.int64), ("b", np.int64), ("tx", np.int64), ("pk", np.bool_))
    }
    wal = np.empty(n, dtype=np.int64)
    for ti in np.unique(tab):
        name = _TABLE_NAMES[ti]
        m = tab == ti
        b = pending[name]
        r = row[m]
        for k, arr in cols.items():
            arr[m] = b.cols[k][r]
        size = WAL_SIZE[name] + rng.integers(0, 8, int(m.sum())) * 8
        if name == "classification_results" and run.options.toast:
            size = size + np.where(b.cols["op"][r] != OP_D, 2_400, 0)
        wal[m] = size
    server = run.servers[server_name]
    src, emit = server.stream(rng, cols["t"], cols["b"], cols["tx"], cols["pk"], wal)
    if server_name in run.transactions and server.transactions is not None:
        names = [f"{t.schema}.{t.table}" for t in TABLES]
        run.transactions[server_name].write(server.transactions, tab.astype(np.int64), names)
    tab_e, row_e = tab[emit], row[emit]
    for ti in np.unique(tab_e):
        name = _TABLE_NAMES[ti]
        m = tab_e == ti
        rows = pending[name].take(row_e[m])
        _write_table(run, name, rows, src.take(np.flatnonzero(m)))


def _write_table(run: _Run, name: str, rows: Batch, src: Source) -> None:
    writer = run.writers[name]
    if name != "llm_call_log":
        writer.write(rows, src)
        return
    version = run.llm_version(rows.cols["t"])
    bounds = np.flatnonzero(np.r_[True, version[1:] != version[:-1], True])
    for s, e in itertools.pairwise(bounds):
        idx = np.arange(s, e)
        writer.write(rows.take(idx), src.take(idx), LLM_VERSIONS[int(version[s])])


def _sink_rewrites(run: _Run) -> int:
    """The sink re-consumed an already-written range after a task restart with a different cut
    point (schedule-based rotation / conditional-write skip-ahead): objects whose offset ranges
    overlap earlier ones, same rows again (spec §2.5). Existing keys are never overwritten."""
    rewritten = 0
    for td in TABLES:
        cap = run.writers[td.table].capture
        if cap is None or not cap.parts:
            continue
        mem = _MemoryStore()
        config = replace(run.sinks[td.table].config, flush_size=max(1, (run.options.flush_size * 2) // 3 + 1))
        sink = SinkWriter(mem, config)  # type: ignore[arg-type]
        for table, keys, offsets, ts, env, key_schema in cap.parts:
            sink.write(
                td.topic(run.options.topic_prefix),
                0,
                table,
                env,
                offsets,
                keys=keys,
                key_schema=key_schema,
                timestamps_ms=ts,
            )
        sink.close()
        added = []
        for key in sorted(mem.data):
            if key in run.store.keys:  # If-None-Match: the existing object stays
                continue
            run.store.put_bytes(key, mem.data[key])
            added.append(key)
        rewritten += sum(_rows_in(key, mem.data[key]) for key in added if ".keys." not in key)
    return rewritten


def _rows_in(key: str, data: bytes) -> int:
    if key.endswith(".parquet"):
        return pq.ParquetFile(io.BytesIO(data)).metadata.num_rows
    if key.endswith(".avro"):
        with AvroContainer(io.BytesIO(data)) as avro:
            return avro.count_rows()
    if key.endswith(".gz"):
        data = gzip.decompress(data)
    return sum(1 for ln in data.split(b"\n") if ln.strip())
