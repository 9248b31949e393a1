"""The Eco2 domain as columnar change rows (numpy only, no strings yet).

A chunk of simulated time produces, per table, a :class:`Batch` of change rows: each row carries
its transaction (key ``tx``, begin time ``b``, commit time ``t`` in µs, statement order ``st``), its
operation and the row image as small integers (vocabulary indices, ids, µs timestamps). Strings
are only built when rows are written (:mod:`lakehouse.generate.emit`).

Scan pipeline (scan database), one transaction per step::

    tx0  INSERT scans (pending)
    tx1  UPDATE scans SET image_path_processed           (preprocessing done)
    tx2  INSERT llm_call_log (vision) + INSERT classification_results
         | vision error/timeout: INSERT llm_call_log + UPDATE scans SET status='failed'
    tx3  INSERT llm_call_log (embedding) + INSERT rag_retrievals x 3..5     (| failure)
    tx4  INSERT llm_call_log (answer) + UPDATE scans SET status='completed', completed_at (| failure)
    follow-ups: classification re-calibration (UPDATE confidence: TOAST placeholder), rationale
    rewrite, re-run with another model (new classification row), primary-key renumbering,
    feedback INSERT / UPDATE (user changes mind) / DELETE.

Users (auth database): sign-ups, profile updates (password rotation, e-mail change), account
closures. Scans only use users that exist and are not being closed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lakehouse.generate import vocab as V

OP_C, OP_U, OP_D, OP_R, OP_T = (ord(c) for c in "cudrt")
US = 1_000_000
MS = 1_000

META_COLUMNS: dict[str, tuple[type, object]] = {
    "t": (np.int64, 0),
    "b": (np.int64, 0),
    "tx": (np.int64, 0),
    "st": (np.int32, 0),
    "op": (np.uint8, OP_C),
    "pk": (np.bool_, False),
    "toast": (np.bool_, False),
}
TABLE_COLUMNS: dict[str, dict[str, tuple[type, object]]] = {
    "users": {
        "id": (np.int64, 0),
        "ev": (np.int16, 0),
        "pv": (np.int16, 0),
        "created": (np.int64, 0),
        "updated": (np.int64, -1),
    },
    "scans": {
        "id": (np.int64, 0),
        "user_id": (np.int64, 0),
        "status": (np.int8, 0),
        "processed": (np.bool_, False),
        "created": (np.int64, 0),
        "completed": (np.int64, -1),
    },
    "classification_results": {
        "id": (np.int64, 0),
        "scan": (np.int64, 0),
        "category": (np.int8, 0),
        "item": (np.int16, -1),
        "conf": (np.int32, -1),
        "rationale": (np.int16, -1),
        "model": (np.int8, 0),
        "pver": (np.int8, -1),
        "created": (np.int64, 0),
    },
    "rag_retrievals": {
        "id": (np.int64, 0),
        "scan": (np.int64, 0),
        "rank": (np.int32, 0),
        "chunk": (np.int16, 0),
        "relevance": (np.float64, np.nan),
        "created": (np.int64, 0),
    },
    "llm_call_log": {
        "id": (np.int64, 0),
        "scan": (np.int64, -1),
        "stage": (np.int8, 0),
        "model": (np.int8, 0),
        "latency": (np.int64, 0),
        "ptok": (np.int32, -1),
        "ctok": (np.int32, -1),
        "status": (np.int8, 0),
        "created": (np.int64, 0),
        "cached": (np.int32, -1),
    },
    "feedback": {
        "id": (np.int64, 0),
        "scan": (np.int64, 0),
        "user_id": (np.int64, 0),
        "thumbs": (np.bool_, False),
        "ccat": (np.int8, -1),
        "citem": (np.int16, -1),
        "comment": (np.int16, -1),
        "created": (np.int64, 0),
        "updated": (np.int64, -1),
    },
}
TABLE_NAMES = tuple(TABLE_COLUMNS)

# -- behaviour (probabilities per scan / per row) ------------------------------------------------
P_VISION_FAIL = 0.025
P_EMBED_FAIL = 0.004
P_ANSWER_FAIL = 0.012
P_CLS_UPDATE = 0.08  # re-calibration: UPDATE confidence (rationale untouched -> TOAST placeholder)
P_CLS_REWRITE = 0.02  # rationale rewritten (full value in the update)
P_RERUN = 0.05  # classification re-run with another model (new row)
P_PK_CHANGE = 0.03  # classification id renumbered (option pk_changes)
P_FEEDBACK = 0.30  # of completed scans
P_FB_UPDATE = 0.22  # user changes mind
P_FB_DELETE = 0.06  # feedback withdrawn (option deletes)
RAG_K = (3, 5)
SIGNUPS_PER_SCAN = 1 / 25
USER_UPDATES_PER_SCAN = 1 / 40
CLOSURES_PER_SCAN = 1 / 250
MAX_FOLLOWUP_S = 3_600
CLOSURE_QUIET_US = 4 * 3_600 * US  # a user is closed only after 4 h without scans


def expected_events_per_scan(pk_changes: bool, deletes: bool) -> float:
    ok_v = 1 - P_VISION_FAIL
    ok_e = ok_v * (1 - P_EMBED_FAIL)
    completed = ok_e * (1 - P_ANSWER_FAIL)
    scans = 3
    llm = 1 + ok_v + ok_e + ok_v * P_RERUN
    cls = ok_v * (1 + P_CLS_UPDATE + P_CLS_REWRITE + P_RERUN + (2 * P_PK_CHANGE if pk_changes else 0))
    rag = ok_e * (RAG_K[0] + RAG_K[1]) / 2
    fb = completed * P_FEEDBACK * (1 + P_FB_UPDATE + (P_FB_DELETE if deletes else 0))
    users = SIGNUPS_PER_SCAN + USER_UPDATES_PER_SCAN + (CLOSURES_PER_SCAN if deletes else 0)
    return scans + llm + cls + rag + fb + users


@dataclass
class Batch:
    """Columnar change rows of one table (all arrays share one length)."""

    table: str
    cols: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.cols["t"])

    @classmethod
    def empty(cls, table: str) -> Batch:
        spec = {**META_COLUMNS, **TABLE_COLUMNS[table]}
        return cls(table, {k: np.empty(0, dtype=d) for k, (d, _) in spec.items()})

    @classmethod
    def make(cls, table: str, n: int, **values) -> Batch:
        spec = {**META_COLUMNS, **TABLE_COLUMNS[table]}
        unknown = set(values) - set(spec)
        if unknown:
            raise KeyError(f"{table}: unknown columns {sorted(unknown)}")
        cols: dict[str, np.ndarray] = {}
        for k, (dtype, default) in spec.items():
            v = values.get(k, default)
            arr = np.asarray(v, dtype=dtype)  # type: ignore[var-annotated]
            cols[k] = np.broadcast_to(arr, (n,)).copy() if arr.ndim == 0 else arr.astype(dtype, copy=False)
            if len(cols[k]) != n:
                raise ValueError(f"{table}.{k}: {len(cols[k])} values for {n} rows")
        return cls(table, cols)

    def take(self, idx: np.ndarray) -> Batch:
        return Batch(self.table, {k: v[idx] for k, v in self.cols.items()})

    @staticmethod
    def concat(table: str, parts: list[Batch]) -> Batch:
        parts = [p for p in parts if len(p)]
        if not parts:
            return Batch.empty(table)
        if len(parts) == 1:
            return parts[0]
        return Batch(table, {k: np.concatenate([p.cols[k] for p in parts]) for k in parts[0].cols})


class _Growable:
    """A dense per-id numpy column that grows (ids are 1-based)."""

    def __init__(self, dtype, fill):
        self.dtype, self.fill = dtype, fill
        self.data = np.full(1024, fill, dtype=dtype)

    def ensure(self, n: int) -> None:
        if n > len(self.data):
            new = np.full(max(n, 2 * len(self.data)), self.fill, dtype=self.dtype)
            new[: len(self.data)] = self.data
            self.data = new


@dataclass
class DomainState:
    """Everything that survives from one chunk to the next (small: ids and per-user columns)."""

    next_id: dict[str, int] = field(default_factory=lambda: {t: 1 for t in TABLE_NAMES})
    n_users: int = 0
    users: dict[str, _Growable] = field(
        default_factory=lambda: {
            "created": _Growable(np.int64, 0),
            "updated": _Growable(np.int64, -1),
            "ev": _Growable(np.int16, 0),
            "pv": _Growable(np.int16, 0),
            "alive": _Growable(np.bool_, False),
            "last": _Growable(np.int64, 0),
        }
    )
    tx_counter: int = 0  # transaction keys for non-scan transactions

    def alloc(self, table: str, n: int) -> np.ndarray:
        start = self.next_id[table]
        self.next_id[table] = start + n
        return np.arange(start, start + n, dtype=np.int64)

    def user(self, name: str) -> np.ndarray:
        return self.users[name].data

    def new_tx_keys(self, n: int) -> np.ndarray:
        # scan transactions use scan_no * 16 + step; everything else lives above 2**60
        start = self.tx_counter
        self.tx_counter += n
        return (1 << 60) + np.arange(start, start + n, dtype=np.int64)


@dataclass
class Vocab:
    rationale_owner: np.ndarray  # category of each rationale text
    rationale_by_cat: list[np.ndarray]
    chunk_by_cat: list[np.ndarray]
    n_comments: int


def make_vocab(rationale_owner: np.ndarray, chunk_owner: np.ndarray) -> Vocab:
    return Vocab(
        rationale_owner,
        [np.flatnonzero(rationale_owner == c).astype(np.int16) for c in range(len(V.CATEGORIES))],
        [np.flatnonzero(chunk_owner == c).astype(np.int16) for c in range(len(V.CATEGORIES))],
        len(V.COMMENTS),
    )


# -------------------------------------------------------------------------------------------------
# helpers
# -------------------------------------------------------------------------------------------------


def _choice(rng: np.random.Generator, options: list[int], p: list[float], n: int) -> np.ndarray:
    return np.asarray(options)[rng.choice(len(options), size=n, p=p)]


def _tx_duration(rng: np.random.Generator, n: int) -> np.ndarray:
    """Begin -> commit of a transaction (µs): mostly a few ms, sometimes slow (interleaving)."""
    d = 1_500 + rng.exponential(12_000, n)
    slow = rng.random(n) < 0.05
    d[slow] += rng.exponential(400_000, int(slow.sum()))
    return d.astype(np.int64)


def _delay(rng: np.random.Generator, mean_s: float, n: int, min_s: float = 1.0) -> np.ndarray:
    return (np.minimum(min_s + rng.exponential(mean_s, n), MAX_FOLLOWUP_S) * US).astype(np.int64)


def _by_category(rng: np.random.Generator, pools: list[np.ndarray], cats: np.ndarray) -> np.ndarray:
    out = np.empty(len(cats), dtype=np.int16)
    for c, pool in enumerate(pools):
        m = cats == c
        k = int(m.sum())
        if k:
            out[m] = pool[rng.integers(0, len(pool), k)]
    return out


def _items(rng: np.random.Generator, cats: np.ndarray) -> np.ndarray:
    return _by_category(rng, V.CATEGORY_ITEMS, cats)


def _confidence(rng: np.random.Generator, n: int) -> np.ndarray:
    """numeric(5,4) unscaled (0..10000), mostly high."""
    return np.clip(np.round(rng.beta(8, 1.6, n) * 10_000), 500, 10_000).astype(np.int32)


def _comment(rng: np.random.Generator, thumbs_up: np.ndarray) -> np.ndarray:
    n = len(thumbs_up)
    pos = rng.integers(0, len(V.POSITIVE_COMMENTS), n)
    neg = len(V.POSITIVE_COMMENTS) + rng.integers(0, len(V.NEGATIVE_COMMENTS), n)
    return np.where(thumbs_up, pos, neg)


def _latency_ms(rng: np.random.Generator, median: float, sigma: float, n: int) -> np.ndarray:
    return np.maximum(1, np.round(rng.lognormal(np.log(median), sigma, n))).astype(np.int64)


# -------------------------------------------------------------------------------------------------
# scans and everything hanging off them
# -------------------------------------------------------------------------------------------------


@dataclass
class ScanFlags:
    pk_changes: bool
    deletes: bool
    long_rationale: bool


def scan_lifecycles(
    rng: np.random.Generator,
    state: DomainState,
    vocab: Vocab,
    scan_no: np.ndarray,
    t0: np.ndarray,
    user_id: np.ndarray,
    flags: ScanFlags,
) -> dict[str, list[Batch]]:
    """All change rows caused by the scans ``scan_no`` started at ``t0`` (µs)."""
    n = len(scan_no)
    out: dict[str, list[Batch]] = {t: [] for t in TABLE_NAMES}
    if n == 0:
        return out
    txk = scan_no * 16  # + step

    def tx_times(begin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return begin, begin + _tx_duration(rng, len(begin))

    # tx0: INSERT scans (pending)
    b0, c0 = tx_times(t0)
    out["scans"].append(
        Batch.make("scans", n, t=c0, b=b0, tx=txk, op=OP_C, id=scan_no, user_id=user_id, status=0, created=b0)
    )
    # tx1: preprocessing done
    b1, c1 = tx_times(c0 + (rng.uniform(0.3, 2.5, n) * US).astype(np.int64))
    out["scans"].append(
        Batch.make(
            "scans",
            n,
            t=c1,
            b=b1,
            tx=txk + 1,
            op=OP_U,
            id=scan_no,
            user_id=user_id,
            status=0,
            processed=True,
            created=b0,
        )
    )

    # tx2: vision call (+ classification)
    v_fail = rng.random(n) < P_VISION_FAIL
    v_status = np.where(v_fail, np.where(rng.random(n) < 0.6, 1, 2), 0).astype(np.int8)
    v_lat = np.where(v_status == 2, 30_000, _latency_ms(rng, 1_400, 0.45, n))
    b2, c2 = tx_times(c1 + v_lat * MS)
    v_model = _choice(rng, *V.STAGE_MODELS["vision"], n)
    v_ptok = np.where(
        v_status == 0, rng.integers(900, 1_700, n), np.where(v_status == 1, rng.integers(900, 1_700, n), -1)
    )
    v_ctok = np.where(v_status == 0, rng.integers(60, 260, n), -1)
    llm_ids = state.alloc("llm_call_log", n)
    out["llm_call_log"].append(
        Batch.make(
            "llm_call_log",
            n,
            t=c2,
            b=b2,
            tx=txk + 2,
            st=0,
            op=OP_C,
            id=llm_ids,
            scan=scan_no,
            stage=0,
            model=v_model,
            latency=v_lat,
            ptok=v_ptok,
            ctok=v_ctok,
            status=v_status,
            created=b2,
        )
    )
    ok = ~v_fail
    k_ok = int(ok.sum())
    cat = np.asarray(rng.choice(len(V.CATEGORIES), size=n, p=V.CATEGORY_P), dtype=np.int8)
    item = np.where(rng.random(n) < 0.9, _items(rng, cat), -1).astype(np.int16)
    conf = _confidence(rng, n)
    rationale = np.where(rng.random(n) < 0.97, _by_category(rng, vocab.rationale_by_cat, cat), -1).astype(
        np.int16
    )
    pver = np.where(rng.random(n) < 0.95, _choice(rng, [1, 2], [0.3, 0.7], n), -1).astype(np.int8)
    cls_id = np.zeros(n, dtype=np.int64)
    cls_id[ok] = state.alloc("classification_results", k_ok)
    cls_cols = {
        "scan": scan_no,
        "category": cat,
        "item": item,
        "conf": conf,
        "rationale": rationale,
        "model": v_model,
        "pver": pver,
        "created": b2,
    }
    out["classification_results"].append(
        Batch.make(
            "classification_results", n, t=c2, b=b2, tx=txk + 2, st=1, op=OP_C, id=cls_id, **cls_cols
        ).take(ok)
    )
    # vision failure: the scan fails in the same transaction
    out["scans"].append(
        Batch.make(
            "scans",
            n,
            t=c2,
            b=b2,
            tx=txk + 2,
            st=1,
            op=OP_U,
            id=scan_no,
            user_id=user_id,
            status=2,
            processed=True,
            created=b0,
        ).take(v_fail)
    )

    # tx3: embedding + retrievals
    e_fail = ok & (rng.random(n) < P_EMBED_FAIL)
    e_status = np.where(e_fail, 1, 0).astype(np.int8)
    e_lat = _latency_ms(rng, 180, 0.5, n)
    b3, c3 = tx_times(c2 + e_lat * MS)
    llm_ids = state.alloc("llm_call_log", k_ok)
    out["llm_call_log"].append(
        Batch.make(
            "llm_call_log",
            n,
            t=c3,
            b=b3,
            tx=txk + 3,
            st=0,
            op=OP_C,
            scan=scan_no,
            stage=1,
            model=_choice(rng, *V.STAGE_MODELS["embedding"], n),
            latency=e_lat,
            ptok=rng.integers(12, 90, n),
            ctok=-1,
            status=e_status,
            created=b3,
        ).take(ok)
    )
    out["llm_call_log"][-1].cols["id"][:] = llm_ids
    out["scans"].append(
        Batch.make(
            "scans",
            n,
            t=c3,
            b=b3,
            tx=txk + 3,
            st=1,
            op=OP_U,
            id=scan_no,
            user_id=user_id,
            status=2,
            processed=True,
            created=b0,
        ).take(e_fail)
    )
    e_ok = ok & ~e_fail
    k = rng.integers(RAG_K[0], RAG_K[1] + 1, n)
    k[~e_ok] = 0
    rows = np.repeat(np.arange(n), k)
    rank = (np.arange(len(rows)) - np.repeat(np.cumsum(k) - k, k) + 1).astype(np.int32)
    top = rng.uniform(0.55, 0.97, n)
    rel = np.round(top[rows] * np.power(rng.uniform(0.82, 0.98, len(rows)), rank - 1), 6)
    out["rag_retrievals"].append(
        Batch.make(
            "rag_retrievals",
            len(rows),
            t=c3[rows],
            b=b3[rows],
            tx=txk[rows] + 3,
            st=rank,
            op=OP_C,
            id=state.alloc("rag_retrievals", len(rows)),
            scan=scan_no[rows],
            rank=rank,
            chunk=_by_category(rng, vocab.chunk_by_cat, cat[rows]),
            relevance=rel,
            created=b3[rows],
        )
    )

    # tx4: answer + scan completed / failed
    a_fail = e_ok & (rng.random(n) < P_ANSWER_FAIL)
    a_status = np.where(a_fail, np.where(rng.random(n) < 0.5, 1, 2), 0).astype(np.int8)
    a_lat = np.where(a_status == 2, 30_000, _latency_ms(rng, 1_100, 0.5, n))
    b4, c4 = tx_times(c3 + a_lat * MS)
    llm_ids = state.alloc("llm_call_log", int(e_ok.sum()))
    out["llm_call_log"].append(
        Batch.make(
            "llm_call_log",
            n,
            t=c4,
            b=b4,
            tx=txk + 4,
            st=0,
            op=OP_C,
            scan=scan_no,
            stage=2,
            model=_choice(rng, *V.STAGE_MODELS["answer"], n),
            latency=a_lat,
            ptok=np.where(a_status == 2, -1, rng.integers(250, 900, n)),
            ctok=np.where(a_status == 0, rng.integers(80, 420, n), -1),
            status=a_status,
            created=b4,
        ).take(e_ok)
    )
    out["llm_call_log"][-1].cols["id"][:] = llm_ids
    completed = e_ok & ~a_fail
    out["scans"].append(
        Batch.make(
            "scans",
            n,
            t=c4,
            b=b4,
            tx=txk + 4,
            st=1,
            op=OP_U,
            id=scan_no,
            user_id=user_id,
            status=np.where(completed, 1, 2),
            processed=True,
            created=b0,
            completed=np.where(completed, b4, -1),
        ).take(e_ok)
    )

    # ---- follow-ups on the classification row ------------------------------------------------
    done = np.where(completed, c4, np.where(e_ok, c4, c3))  # pipeline end for scans with a classification
    cur_conf, cur_item, cur_rat, cur_t = conf.copy(), item.copy(), rationale.copy(), done.copy()
    toastable = flags.long_rationale & (rationale >= 0)
    upd = ok & (rng.random(n) < P_CLS_UPDATE)
    if upd.any():
        bu, cu = tx_times(cur_t + _delay(rng, 90, n))
        cur_conf = np.where(upd, np.clip(conf + rng.integers(-900, 400, n), 300, 10_000), cur_conf).astype(
            np.int32
        )
        cur_item = np.where(upd & (rng.random(n) < 0.3), _items(rng, cat), cur_item).astype(np.int16)
        out["classification_results"].append(
            Batch.make(
                "classification_results",
                n,
                t=cu,
                b=bu,
                tx=txk + 5,
                op=OP_U,
                id=cls_id,
                toast=toastable,
                **{**cls_cols, "conf": cur_conf, "item": cur_item},
            ).take(upd)
        )
        cur_t = np.where(upd, cu, cur_t)
    rew = ok & (rng.random(n) < P_CLS_REWRITE)
    if rew.any():
        bw, cw = tx_times(cur_t + _delay(rng, 240, n))
        cur_rat = np.where(rew, _by_category(rng, vocab.rationale_by_cat, cat), cur_rat).astype(np.int16)
        out["classification_results"].append(
            Batch.make(
                "classification_results",
                n,
                t=cw,
                b=bw,
                tx=txk + 6,
                op=OP_U,
                id=cls_id,
                **{**cls_cols, "conf": cur_conf, "item": cur_item, "rationale": cur_rat},
            ).take(rew)
        )
        cur_t = np.where(rew, cw, cur_t)
    if flags.pk_changes:
        pkc = ok & (rng.random(n) < P_PK_CHANGE)
        m = int(pkc.sum())
        if m:
            bp, cp = tx_times(cur_t + _delay(rng, 300, n))
            new_id = np.zeros(n, dtype=np.int64)
            new_id[pkc] = state.alloc("classification_results", m)
            # UPDATE ... SET id = nextval(...): d (old key) + c (new key), one WAL record
            out["classification_results"].append(
                Batch.make(
                    "classification_results", n, t=cp, b=bp, tx=txk + 7, st=0, op=OP_D, id=cls_id
                ).take(pkc)
            )
            out["classification_results"].append(
                Batch.make(
                    "classification_results",
                    n,
                    t=cp,
                    b=bp,
                    tx=txk + 7,
                    st=1,
                    op=OP_C,
                    pk=True,
                    id=new_id,
                    toast=flags.long_rationale & (cur_rat >= 0),
                    **{**cls_cols, "conf": cur_conf, "item": cur_item, "rationale": cur_rat},
                ).take(pkc)
            )

    # re-run with another model: vision call + new classification row
    rer = ok & (rng.random(n) < P_RERUN)
    m = int(rer.sum())
    if m:
        br, cr = tx_times(done + _delay(rng, 180, n))
        r_model = _choice(rng, *V.RERUN_MODELS, n)
        r_cat = np.where(
            rng.random(n) < 0.7, cat, rng.choice(len(V.CATEGORIES), size=n, p=V.CATEGORY_P)
        ).astype(np.int8)
        lat = _latency_ms(rng, 2_100, 0.4, n)
        ids = state.alloc("llm_call_log", m)
        out["llm_call_log"].append(
            Batch.make(
                "llm_call_log",
                n,
                t=cr,
                b=br,
                tx=txk + 8,
                st=0,
                op=OP_C,
                scan=scan_no,
                stage=0,
                model=r_model,
                latency=lat,
                ptok=rng.integers(900, 1_700, n),
                ctok=rng.integers(60, 260, n),
                status=0,
                created=br,
            ).take(rer)
        )
        out["llm_call_log"][-1].cols["id"][:] = ids
        out["classification_results"].append(
            Batch.make(
                "classification_results",
                n,
                t=cr,
                b=br,
                tx=txk + 8,
                st=1,
                op=OP_C,
                scan=scan_no,
                category=r_cat,
                item=np.where(rng.random(n) < 0.9, _items(rng, r_cat), -1),
                conf=_confidence(rng, n),
                rationale=_by_category(rng, vocab.rationale_by_cat, r_cat),
                model=r_model,
                pver=3,
                created=br,
            ).take(rer)
        )
        out["classification_results"][-1].cols["id"][:] = state.alloc("classification_results", m)

    # ---- feedback -------------------------------------------------------------------------------
    fb = completed & (rng.random(n) < P_FEEDBACK)
    m = int(fb.sum())
    if m:
        bf, cf = tx_times(c4 + _delay(rng, 40, n, min_s=3))
        thumbs = rng.random(n) < (0.5 + 0.4 * conf / 10_000)
        wrong_cat = ((cat + rng.integers(1, len(V.CATEGORIES), n)) % len(V.CATEGORIES)).astype(np.int8)
        ccat = np.where(~thumbs & (rng.random(n) < 0.85), wrong_cat, -1).astype(np.int8)
        citem = np.where((ccat >= 0) & (rng.random(n) < 0.6), _items(rng, np.maximum(ccat, 0)), -1).astype(
            np.int16
        )
        comment = np.where(rng.random(n) < 0.3, _comment(rng, thumbs), -1).astype(np.int16)
        fb_id = np.zeros(n, dtype=np.int64)
        fb_id[fb] = state.alloc("feedback", m)
        fb_cols = {"scan": scan_no, "user_id": user_id, "created": bf}
        out["feedback"].append(
            Batch.make(
                "feedback",
                n,
                t=cf,
                b=bf,
                tx=txk + 9,
                op=OP_C,
                id=fb_id,
                thumbs=thumbs,
                ccat=ccat,
                citem=citem,
                comment=comment,
                **fb_cols,
            ).take(fb)
        )
        last = cf
        fu = fb & (rng.random(n) < P_FB_UPDATE)
        if fu.any():
            bu, cu = tx_times(cf + _delay(rng, 400, n, min_s=5))
            th2 = ~thumbs
            ccat2 = np.where(~th2, np.where(ccat >= 0, ccat, wrong_cat), -1).astype(np.int8)
            citem2 = np.where(
                (ccat2 >= 0) & (rng.random(n) < 0.5), _items(rng, np.maximum(ccat2, 0)), -1
            ).astype(np.int16)
            comment2 = np.where(rng.random(n) < 0.6, _comment(rng, th2), -1).astype(np.int16)
            out["feedback"].append(
                Batch.make(
                    "feedback",
                    n,
                    t=cu,
                    b=bu,
                    tx=txk + 10,
                    op=OP_U,
                    id=fb_id,
                    thumbs=th2,
                    ccat=ccat2,
                    citem=citem2,
                    comment=comment2,
                    updated=bu,
                    **fb_cols,
                ).take(fu)
            )
            last = np.where(fu, cu, last)
        if flags.deletes:
            fd = fb & (rng.random(n) < P_FB_DELETE)
            if fd.any():
                bd, cd = tx_times(last + _delay(rng, 900, n, min_s=10))
                out["feedback"].append(
                    Batch.make("feedback", n, t=cd, b=bd, tx=txk + 11, op=OP_D, id=fb_id).take(fd)
                )
    return out


# -------------------------------------------------------------------------------------------------
# users
# -------------------------------------------------------------------------------------------------


def user_weights(ids: np.ndarray) -> np.ndarray:
    """Activity weight per user (stable per id): a few heavy users, many occasional ones."""
    h = (ids.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(40)
    u = (h.astype(np.float64) + 0.5) / float(1 << 24)
    return np.power(u, 3.0) + 0.02


def pick_users(
    rng: np.random.Generator, state: DomainState, before_us: int, n: int, exclude: np.ndarray | None = None
) -> np.ndarray:
    """Users that exist (created before ``before_us``), are alive and not excluded."""
    N = state.n_users
    ok = state.user("alive")[:N] & (state.user("created")[:N] < before_us)
    if exclude is not None and len(exclude):
        ok[exclude - 1] = False
    cands = np.flatnonzero(ok) + 1
    if len(cands) == 0:
        raise RuntimeError("no live users to attach scans to")
    cw = np.cumsum(user_weights(cands))
    return cands[np.searchsorted(cw, rng.random(n) * cw[-1], side="right").clip(0, len(cands) - 1)]


def add_users(
    state: DomainState,
    created: np.ndarray,
    ev: np.ndarray | None = None,
    pv: np.ndarray | None = None,
    updated: np.ndarray | None = None,
) -> np.ndarray:
    n = len(created)
    ids = state.alloc("users", n)
    state.n_users = int(ids[-1]) if n else state.n_users
    for g in state.users.values():
        g.ensure(state.n_users)
    idx = ids - 1
    state.user("created")[idx] = created
    state.user("last")[idx] = created
    state.user("alive")[idx] = True
    state.user("ev")[idx] = 0 if ev is None else ev
    state.user("pv")[idx] = 0 if pv is None else pv
    state.user("updated")[idx] = -1 if updated is None else updated
    return ids


def user_rows(state: DomainState, ids: np.ndarray, **meta) -> Batch:
    idx = ids - 1
    return Batch.make(
        "users",
        len(ids),
        id=ids,
        ev=state.user("ev")[idx],
        pv=state.user("pv")[idx],
        created=state.user("created")[idx],
        updated=state.user("updated")[idx],
        **meta,
    )


def user_events(
    rng: np.random.Generator,
    state: DomainState,
    t_start: int,
    t_end: int,
    n_scans: int,
    deletes: bool,
    scan_users: np.ndarray,
) -> tuple[Batch, np.ndarray]:
    """Sign-ups, profile updates and closures in [t_start, t_end). Returns the rows and the ids
    closed (to keep them out of this chunk's scans)."""
    parts: list[Batch] = []
    span = max(t_end - t_start, 1)

    def times(k: int) -> tuple[np.ndarray, np.ndarray]:
        b = np.sort(t_start + (rng.random(k) * span).astype(np.int64))
        return b, b + _tx_duration(rng, k)

    # updates and closures act on users that existed before the chunk
    closed = np.empty(0, dtype=np.int64)
    if deletes:
        k = int(rng.poisson(n_scans * CLOSURES_PER_SCAN))
        N = state.n_users
        quiet = state.user("alive")[:N] & (state.user("last")[:N] < t_start - CLOSURE_QUIET_US)
        quiet[np.asarray(scan_users, dtype=np.int64) - 1] = False
        cands = np.flatnonzero(quiet) + 1
        k = min(k, max(len(cands) - 1, 0))
        if k:
            closed = np.sort(rng.choice(cands, size=k, replace=False))
    k = int(rng.poisson(n_scans * USER_UPDATES_PER_SCAN))
    N = state.n_users
    ok = state.user("alive")[:N] & (state.user("created")[:N] < t_start)
    ok[closed - 1] = False
    cands = np.flatnonzero(ok) + 1
    k = min(k, len(cands))
    if k:
        ids = rng.choice(cands, size=k, replace=False)
        b, c = times(k)
        kind = rng.choice(3, size=k, p=[0.5, 0.25, 0.25])  # password rotation, e-mail change, touch
        idx = ids - 1
        state.user("pv")[idx] += kind == 0
        state.user("ev")[idx] += kind == 1
        state.user("updated")[idx] = b
        parts.append(user_rows(state, ids, t=c, b=b, tx=state.new_tx_keys(k), op=OP_U))
    if len(closed):
        b, c = times(len(closed))
        rng.shuffle(closed)
        state.user("alive")[closed - 1] = False
        parts.append(
            Batch.make("users", len(closed), t=c, b=b, tx=state.new_tx_keys(len(closed)), op=OP_D, id=closed)
        )
    k = int(rng.poisson(n_scans * SIGNUPS_PER_SCAN))
    if k:
        b, c = times(k)
        ids = add_users(state, b)
        parts.append(user_rows(state, ids, t=c, b=b, tx=state.new_tx_keys(k), op=OP_C))
    return Batch.concat("users", parts), closed


# -------------------------------------------------------------------------------------------------
# the database before capture started (initial snapshot)
# -------------------------------------------------------------------------------------------------


def history(
    rng: np.random.Generator,
    state: DomainState,
    vocab: Vocab,
    start_us: int,
    n_users: int,
    n_scans: int,
    flags: ScanFlags,
) -> dict[str, Batch]:
    """Rows present when Debezium's initial snapshot runs (final state of each row, op 'r')."""
    day = 86_400 * US
    created = np.sort(start_us - 180 * day + (rng.random(n_users) * 150 * day).astype(np.int64))
    pv = (rng.random(n_users) < 0.25).astype(np.int16)
    ev = (rng.random(n_users) < 0.1).astype(np.int16)
    touched = (pv > 0) | (ev > 0) | (rng.random(n_users) < 0.1)
    updated = np.where(
        touched, created + (rng.random(n_users) * (start_us - day - created)).astype(np.int64), -1
    )
    ids = add_users(state, created, ev, pv, updated)
    out: dict[str, Batch] = {"users": user_rows(state, ids, op=OP_R)}
    if n_scans:
        t0 = np.sort(
            start_us
            - 30 * day
            + (rng.random(n_scans) * (30 * day - 4 * MAX_FOLLOWUP_S * US)).astype(np.int64)
        )
        users = pick_users(rng, state, start_us, n_scans)
        lu = state.user("last")
        np.maximum.at(lu, users - 1, t0)
        scan_no = np.arange(n_scans, dtype=np.int64) + state.next_id["scans"]
        state.next_id["scans"] += n_scans
        hist_flags = ScanFlags(pk_changes=False, deletes=flags.deletes, long_rationale=flags.long_rationale)
        parts = scan_lifecycles(rng, state, vocab, scan_no, t0, users, hist_flags)
        for table, batches in parts.items():
            if table == "users":
                continue
            b = Batch.concat(table, batches)
            out[table] = final_state(b)
    for b in out.values():
        b.cols["op"][:] = OP_R
        b.cols["toast"][:] = False
    return out


def final_state(b: Batch) -> Batch:
    """Last image per id (in commit order), deleted rows removed, ordered by id."""
    if not len(b):
        return b
    order = np.lexsort((b.cols["st"], b.cols["tx"], b.cols["t"], b.cols["id"]))
    ids = b.cols["id"][order]
    last = np.ones(len(ids), dtype=bool)
    last[:-1] = ids[1:] != ids[:-1]
    keep = order[last]
    keep = keep[b.cols["op"][keep] != OP_D]
    return b.take(keep)
