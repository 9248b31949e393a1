"""From ordered change rows to Kafka records to lake objects.

* :class:`Server` plays one PostgreSQL database + its Debezium connector: it assigns WAL
  positions (change LSNs, commit LSNs, ``sequence``), transaction ids, Debezium processing times
  and — with replays on — re-emits a suffix of its stream after a simulated crash.
* :class:`TopicWriter` plays the Kafka producer + the S3 sink for one topic: key hash →
  partition, offsets (a delete's tombstone consumes the next offset but never reaches a value
  file), the envelope in the physical layout of the value schema, and
  :class:`~lakehouse.lake.sink.SinkWriter` for the objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from lakehouse.generate import strings as S
from lakehouse.generate.domain import MS, OP_C, OP_D, OP_R, OP_T, OP_U, US, Batch
from lakehouse.generate.encode import RowEncoder, _null_struct
from lakehouse.generate.schemas import DEBEZIUM_VERSION, TableDef, transaction_value_schema
from lakehouse.lake.sink import SinkWriter

SNAPSHOT_VALUES = ["false", "true", "first", "first_in_data_collection", "last_in_data_collection", "last"]
SNAP_FALSE, SNAP_TRUE, SNAP_FIRST, SNAP_FIRST_TABLE, SNAP_LAST_TABLE, SNAP_LAST = range(6)
OPS = {OP_C: "c", OP_U: "u", OP_D: "d", OP_R: "r", OP_T: "t"}

# approximate WAL record sizes (bytes) per table; TOASTed inserts also write the out-of-line value
WAL_SIZE = {
    "users": 176,
    "scans": 232,
    "classification_results": 264,
    "rag_retrievals": 640,
    "llm_call_log": 168,
    "feedback": 200,
}


@dataclass
class Source:
    """Per-row ``source`` coordinates and the envelope processing time (all µs / ints)."""

    ts_us: np.ndarray
    snapshot: np.ndarray  # index into SNAPSHOT_VALUES
    tx_id: np.ndarray
    lsn: np.ndarray
    seq0: np.ndarray  # last commit LSN, -1 = null
    proc_us: np.ndarray

    def take(self, idx: np.ndarray) -> Source:
        return Source(
            self.ts_us[idx],
            self.snapshot[idx],
            self.tx_id[idx],
            self.lsn[idx],
            self.seq0[idx],
            self.proc_us[idx],
        )

    @staticmethod
    def concat(parts: list[Source]) -> Source:
        return Source(
            *(
                np.concatenate([getattr(p, f) for p in parts])
                for f in ("ts_us", "snapshot", "tx_id", "lsn", "seq0", "proc_us")
            )
        )


@dataclass
class Server:
    """One PostgreSQL database captured by one Debezium connector."""

    name: str
    db: str
    wal_pos: int
    next_txid: int
    crashes: list[int] = field(default_factory=list)  # commit times (µs) where the connector crashes
    last_commit_end: int = -1  # -1: no streamed transaction yet
    floor_us: int = 0  # WAL writes of later chunks start after this
    last_proc: int = 0
    replayed: int = 0
    # the transactions of the last ``stream`` call, for the transaction topic
    transactions: Transactions | None = None

    # -- snapshot -------------------------------------------------------------------------------

    def snapshot(
        self, rng: np.random.Generator, tables: list[tuple[str, int]], start_us: int
    ) -> dict[str, Source]:
        """Initial snapshot: one txId and LSN for all rows, markers first / first_in_data_collection /
        true / last_in_data_collection / last (spec §5.6)."""
        lsn = self.wal_pos
        txid = self.next_txid
        self.next_txid += 1 + int(rng.integers(1, 4))
        self.wal_pos += 8 * int(rng.integers(16, 256))
        ts_us = start_us - int(rng.integers(200, 900)) * MS + int(rng.integers(0, 1000))
        total = sum(n for _, n in tables)
        proc = ts_us + 350 * MS + np.cumsum(rng.integers(20, 120, total))  # ~ 15k rows/s
        out: dict[str, Source] = {}
        pos = 0
        nonempty = [t for t, n in tables if n]
        for table, n in tables:
            if not n:
                continue
            snap = np.full(n, SNAP_TRUE, dtype=np.int8)
            snap[0] = SNAP_FIRST_TABLE
            snap[-1] = SNAP_LAST_TABLE
            if table == nonempty[0]:
                snap[0] = SNAP_FIRST
            if table == nonempty[-1]:
                snap[-1] = SNAP_LAST
            out[table] = Source(
                np.full(n, ts_us, np.int64),
                snap,
                np.full(n, txid, np.int64),
                np.full(n, lsn, np.int64),
                np.full(n, -1, np.int64),
                proc[pos : pos + n],
            )
            pos += n
        self.last_proc = int(proc[-1]) if total else start_us
        self.floor_us = max(self.floor_us, start_us)
        return out

    # -- streaming ------------------------------------------------------------------------------

    def stream(
        self,
        rng: np.random.Generator,
        t: np.ndarray,
        b: np.ndarray,
        tx: np.ndarray,
        pk: np.ndarray,
        wal_size: np.ndarray,
    ) -> tuple[Source, np.ndarray]:
        """Source coordinates for rows in commit order (rows of one transaction contiguous).

        Returns the Source of the *emitted* sequence and the emission order (indices into the
        input; a replayed suffix appears twice)."""
        n = len(t)
        if n == 0:
            return Source(*(np.empty(0, np.int64) for _ in range(6))), np.empty(0, np.int64)
        new_tx = np.ones(n, dtype=bool)
        new_tx[1:] = tx[1:] != tx[:-1]
        starts = np.flatnonzero(new_tx)
        ntx = len(starts)
        tx_of = np.cumsum(new_tx) - 1
        sizes = np.diff(np.append(starts, n))
        j = np.arange(n) - starts[tx_of]
        cnt = sizes[tx_of]
        # write time of each change inside [begin, commit)
        w = b + ((t - b) * (j + 1)) // (cnt + 1)
        w = np.maximum(w, self.floor_us)
        commit_t = t[starts]
        last_row = starts + sizes - 1
        # WAL records: changes (not the second half of a PK change) and commit records
        rec_change = np.flatnonzero(~pk)
        keys = np.concatenate([w[rec_change], commit_t])
        pos = np.concatenate([rec_change.astype(np.float64), last_row + 0.5])
        order = np.lexsort((pos, keys))
        nrec = len(keys)
        size = np.concatenate([wal_size[rec_change], np.full(ntx, 40)])[order]
        gap = np.where(rng.random(nrec) < 0.2, rng.integers(0, 400, nrec) * 8, 0)
        step = size + gap
        start = self.wal_pos + np.cumsum(step) - size
        self.wal_pos = int(start[-1] + size[-1])
        rec_start = np.empty(nrec, dtype=np.int64)
        rec_start[order] = start
        lsn = np.empty(n, dtype=np.int64)
        lsn[rec_change] = rec_start[: len(rec_change)]
        pk_rows = np.flatnonzero(pk)
        lsn[pk_rows] = lsn[pk_rows - 1]  # d and c of a key change share the UPDATE's LSN
        commit_end = rec_start[len(rec_change) :] + 40
        seq0_tx = np.empty(ntx, dtype=np.int64)
        seq0_tx[0] = self.last_commit_end
        seq0_tx[1:] = commit_end[:-1]
        self.last_commit_end = int(commit_end[-1])
        self.floor_us = int(commit_t[-1]) + 1
        # xids are assigned at a transaction's first write, not at commit
        first_w = w[starts]
        rank = np.empty(ntx, dtype=np.int64)
        rank[np.lexsort((np.arange(ntx), first_w))] = np.arange(ntx)
        inc = 1 + np.where(rng.random(ntx) < 0.08, rng.integers(1, 6, ntx), 0)
        xid_by_rank = self.next_txid + np.cumsum(inc) - inc
        self.next_txid = int(xid_by_rank[-1] + inc[-1])
        txid_tx = xid_by_rank[rank]
        self.transactions = Transactions(txid_tx, lsn[starts], commit_end, commit_t, tx_of)
        # Debezium processing time (envelope ts_*): after the commit, non-decreasing
        lag = (40 * MS + rng.exponential(180 * MS, n)).astype(np.int64)
        proc = t + lag
        emit = np.arange(n)
        due = sorted(c for c in self.crashes if c <= int(t[-1]))
        added = 0
        for c in due:
            # the connector dies at commit time c and restarts from its last flushed offset
            # (offset.flush.interval.ms): everything committed in the last few seconds again
            self.crashes.remove(c)
            p = int(np.searchsorted(t, c))
            pe = p + added
            window = int(rng.uniform(10, 60) * US)
            first = min(int(np.searchsorted(t, c - window)), max(p - 3, 0))
            if first < n:
                first = int(starts[tx_of[first]])  # resume at a transaction boundary
            m = min(pe, p - first)
            if m <= 0:
                continue
            restart = int(proc[pe - 1]) + int(rng.integers(3, 20)) * US
            emit = np.concatenate([emit[:pe], emit[pe - m : pe], emit[pe:]])
            proc = np.concatenate([proc[:pe], restart + np.arange(m) * 2 * MS, proc[pe:]])
            added += m
            self.replayed += m
        idx = np.arange(len(emit), dtype=np.int64)
        proc = np.maximum(proc, self.last_proc + 1)
        proc = np.maximum.accumulate(proc - idx) + idx  # strictly increasing by >= 1 µs
        self.last_proc = int(proc[-1])
        src = Source(
            ts_us=t[emit],
            snapshot=np.zeros(len(emit), np.int8),
            tx_id=txid_tx[tx_of][emit],
            lsn=lsn[emit],
            seq0=seq0_tx[tx_of][emit],
            proc_us=proc,
        )
        return src, emit


@dataclass
class Transactions:
    """Per transaction of one ``Server.stream`` call (commit order), and each row's transaction."""

    txid: np.ndarray
    first_lsn: np.ndarray  # its first change: the LSN in the BEGIN event's id
    commit_lsn: np.ndarray  # the end of its commit record: the LSN in the END event's id
    commit_us: np.ndarray
    row_tx: np.ndarray  # index into the arrays above, per input row


class TransactionWriter:
    """Debezium's transaction topic of one connector (provide.transaction.metadata): a BEGIN and
    an END per transaction, the END counting the change events per table (``schema.table``)."""

    def __init__(self, topic: str, sink: SinkWriter):
        self.topic, self.sink = topic, sink
        self.schema = transaction_value_schema()
        self.arrow = pa.schema(list(self.schema.physical_arrow_type()))
        self.offset = 0
        self.events = 0

    def write(self, tx: Transactions, row_collection: np.ndarray, collections: list[str]) -> None:
        """``row_collection``: per input row, its table's index in ``collections``."""
        ntx = len(tx.txid)
        if not ntx:
            return
        k = len(collections)
        pairs, counts = np.unique(tx.row_tx * k + row_collection, return_counts=True)
        per_tx = np.bincount(pairs // k, minlength=ntx)
        structs = pa.StructArray.from_arrays(
            [pa.array([collections[c] for c in pairs % k]), pa.array(counts, pa.int64())],
            fields=list(self.arrow.field("data_collections").type.value_type),
        )
        offsets = np.zeros(2 * ntx + 1, np.int32)  # BEGIN rows hold none (null), END rows their tables
        offsets[2::2] = np.cumsum(per_tx)
        offsets[1::2] = offsets[0:-1:2]
        is_begin = np.tile([True, False], ntx)
        lists = pa.ListArray.from_arrays(pa.array(offsets), structs, mask=pa.array(is_begin))
        ids = [
            f"{t}:{lsn}"
            for t, b, e in zip(tx.txid.tolist(), tx.first_lsn.tolist(), tx.commit_lsn.tolist())
            for lsn in (b, e)
        ]
        totals = np.repeat(np.bincount(tx.row_tx, minlength=ntx), 2)
        ts = np.repeat(tx.commit_us // 1000, 2)
        table = pa.Table.from_arrays(
            [
                pa.array(np.where(is_begin, "BEGIN", "END")),
                pa.array(ids),
                pa.array(totals, pa.int64(), mask=is_begin),
                lists,
                pa.array(ts, pa.int64()),
            ],
            schema=self.arrow,
        )
        self.sink.write(self.topic, 0, table, self.schema, self.offset + np.arange(2 * ntx), timestamps_ms=ts)
        self.offset += 2 * ntx
        self.events += 2 * ntx


@dataclass
class Capture:
    """Records of one (topic, partition 0) kept for a sink-side rewrite (overlapping objects)."""

    start: int
    length: int
    seen: int = 0
    parts: list[tuple] = field(default_factory=list)


class TopicWriter:
    """Kafka producer + S3 sink of one topic."""

    def __init__(
        self,
        td: TableDef,
        prefix: str,
        partitions: int,
        encoder: RowEncoder,
        sink: SinkWriter,
        flush_size: int,
        store_keys: bool,
        capture: Capture | None = None,
    ):
        self.td = td
        self.prefix = prefix
        self.topic = td.topic(prefix)
        self.partitions = partitions
        self.enc = encoder
        self.sink = sink
        self.flush_size = flush_size
        self.store_keys = store_keys
        self.offsets = np.zeros(partitions, dtype=np.int64)
        self.counts = {"c": 0, "u": 0, "d": 0, "r": 0, "t": 0}
        self.tombstones = 0
        self.capture = capture
        self._schemas: dict[int, tuple] = {}

    def _schema(self, version_td: TableDef):
        key = id(version_td)
        if key not in self._schemas:
            env = version_td.envelope(self.prefix)
            value = version_td.value_schema(self.prefix)
            self._schemas[key] = (
                env,
                value,
                pa.schema(list(env.physical_arrow_type())),
                version_td.key_schema(self.prefix),
            )
        return self._schemas[key]

    def write(self, rows: Batch, src: Source, version_td: TableDef | None = None) -> None:
        """Rows in Kafka order (one schema version)."""
        n = len(rows)
        if n == 0:
            return
        td = version_td or self.td
        env, value, arrow_schema, key_schema = self._schema(td)
        op = rows.cols["op"]
        for code, name in OPS.items():
            self.counts[name] += int((op == code).sum())
        # -- Kafka: partition and offsets (the tombstone after a delete takes the next offset) --
        is_delete = op == OP_D
        self.tombstones += int(is_delete.sum())
        part = (self.enc.key_hash(self.td, rows) % np.uint64(self.partitions)).astype(np.int64)
        part[op == OP_T] = 0  # key-less truncate: the producer's partitioner picks one (here: 0)
        consumes = 1 + is_delete.astype(np.int64)
        offsets = np.empty(n, dtype=np.int64)
        for q in range(self.partitions):
            m = part == q
            if m.any():
                c = consumes[m]
                offsets[m] = self.offsets[q] + np.cumsum(c) - c
                self.offsets[q] += int(c.sum())
        # -- the envelope ----------------------------------------------------------------------
        before, after = self.enc.envelope_images(td, value, rows)
        source = self._source(src, n)
        proc = src.proc_us
        table = pa.Table.from_arrays(
            [
                before,
                after,
                source,
                _null_struct(arrow_schema.field("transaction").type, n),
                S.take(_OPS_ARR, _OP_INDEX[op]),
                pa.array(proc // 1000, pa.int64()),
                pa.array(proc, pa.int64()),
                pa.array(proc * 1000 + (proc % 997), pa.int64()),
            ],
            schema=arrow_schema,
        )
        keys = None
        if self.store_keys:
            keys = pa.table(dict(zip(self.td.key, self.enc.key_arrays(self.td, rows))))
        ts_ms = proc // 1000
        for q in range(self.partitions):
            idx = np.flatnonzero(part == q)
            if not len(idx):
                continue
            tq = table if len(idx) == n else table.take(pa.array(idx))
            kq = None if keys is None else (keys if len(idx) == n else keys.take(pa.array(idx)))
            oq, sq = offsets[idx], ts_ms[idx]
            if q == 0 and self.capture is not None:
                self._capture(tq, kq, oq, sq, env, key_schema)
            for s in range(0, len(idx), self.flush_size):
                e = s + self.flush_size
                self.sink.write(
                    self.topic,
                    q,
                    tq.slice(s, self.flush_size),
                    env,
                    oq[s:e],
                    keys=None if kq is None else kq.slice(s, self.flush_size),
                    key_schema=key_schema,
                    timestamps_ms=sq[s:e],
                )

    def _source(self, src: Source, n: int) -> pa.StructArray:
        td = self.td

        def const(v):
            return S.take(pa.array([v]), np.zeros(n, np.int64))

        st = pa.struct(list(self._schema(td)[2].field("source").type))
        has_lsn = src.lsn >= 0
        children = [
            const(DEBEZIUM_VERSION),
            const("postgresql"),
            const(self.prefix),
            pa.array(src.ts_us // 1000, pa.int64()),
            S.take(_SNAP_ARR, src.snapshot.astype(np.int64)),
            const(_DB[td.server]),
            S.sequence_strings(src.seq0, src.lsn),
            pa.array(src.ts_us, pa.int64()),
            pa.array(src.ts_us * 1000, pa.int64()),
            const(td.schema),
            const(td.table),
            pa.array(src.tx_id, pa.int64()),
            pa.array(src.lsn, pa.int64(), mask=None if has_lsn.all() else ~has_lsn),
            pa.nulls(n, pa.int64()),
            pa.nulls(n, pa.string()),
            pa.nulls(n, pa.int64()),
        ]
        return pa.StructArray.from_arrays(children, fields=list(st))

    def _capture(self, table: pa.Table, keys, offsets, ts, env, key_schema) -> None:
        cap = self.capture
        lo, hi = cap.seen, cap.seen + len(table)  # type: ignore[union-attr]
        cap.seen = hi  # type: ignore[union-attr]
        a, b = max(lo, cap.start), min(hi, cap.start + cap.length)  # type: ignore[union-attr]
        if a < b:
            s, e = a - lo, b - lo
            cap.parts.append(  # type: ignore[union-attr]
                (
                    table.slice(s, e - s),
                    None if keys is None else keys.slice(s, e - s),
                    offsets[s:e],
                    ts[s:e],
                    env,
                    key_schema,
                )
            )


_OPS_ARR = pa.array(["c", "u", "d", "r", "t"])
_OP_INDEX = np.zeros(256, dtype=np.int64)
for _i, _c in enumerate("cudrt"):
    _OP_INDEX[ord(_c)] = _i
_SNAP_ARR = pa.array(SNAPSHOT_VALUES)
_DB = {"auth": "auth", "scan": "scan"}
