"""Turn columnar change rows (:class:`~lakehouse.generate.domain.Batch`) into the physical Arrow
layout of the Debezium value schema (what parquet-avro files read back as), vectorized."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lakehouse.generate import strings as S
from lakehouse.generate import vocab as V
from lakehouse.generate.domain import OP_D, OP_T, Batch
from lakehouse.generate.schemas import TableDef, delete_fallback
from lakehouse.lake.connect import ConnectSchema

TOAST_PLACEHOLDER = "__debezium_unavailable_value"
IMAGE_BUCKET = "s3://eco2-scan-images"


def _arr(values: list[str]) -> pa.Array:
    return pa.array(values, pa.string())


@dataclass
class Texts:
    """Arrow vocabularies (built once per run)."""

    ko_names: pa.Array
    latin_names: pa.Array
    domains: pa.Array
    domain_cum: np.ndarray
    providers: pa.Array
    provider_cum: np.ndarray
    statuses: pa.Array
    categories: pa.Array
    items: pa.Array
    models: pa.Array
    stages: pa.Array
    llm_statuses: pa.Array
    prompt_versions: pa.Array
    comments: pa.Array
    rationales: pa.Array
    chunk_docs: pa.Array
    chunk_ids: pa.Array
    chunk_texts: pa.Array
    uuid_salt: int

    @classmethod
    def build(cls, rationales: list[str], chunks: tuple[list[str], list[str], list[str]], seed: int) -> Texts:
        ko = [f + g for f in V.FAMILY_KO for g in V.GIVEN_KO]  # same (family, given) order as latin
        latin = [
            f"{g}.{f}" if (i + j) % 3 else f"{g}_{f}"
            for i, f in enumerate(V.FAMILY_LATIN)
            for j, g in enumerate(V.GIVEN_LATIN)
        ]
        assert len(ko) == len(latin)
        return cls(
            ko_names=_arr(ko),
            latin_names=_arr(latin),
            domains=_arr(V.EMAIL_DOMAINS),
            domain_cum=np.cumsum(V.EMAIL_DOMAIN_P),
            providers=_arr(V.PROVIDERS),
            provider_cum=np.cumsum(V.PROVIDER_P),
            statuses=_arr(V.SCAN_STATUSES),
            categories=_arr(V.CATEGORIES),
            items=_arr(V.ITEM_LIST),
            models=_arr(V.MODELS),
            stages=_arr(V.STAGES),
            llm_statuses=_arr(V.LLM_STATUSES),
            prompt_versions=_arr(V.PROMPT_VERSIONS),
            comments=_arr(V.COMMENTS),
            rationales=_arr(rationales),
            chunk_docs=_arr(chunks[0]),
            chunk_ids=_arr(chunks[1]),
            chunk_texts=_arr(chunks[2]),
            uuid_salt=(seed * 2_654_435_761 + 12_345) & 0xFFFFFFFFFFFF,
        )

    def uuids(self, scan_no: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
        hi, lo = S.uuid_parts(np.where(valid, scan_no, 0) if valid is not None else scan_no, self.uuid_salt)
        return S.uuid_strings(hi, lo, valid)

    def uuid_hash(self, scan_no: np.ndarray) -> np.ndarray:
        hi, lo = S.uuid_parts(scan_no, self.uuid_salt)
        return S.splitmix64(hi ^ S.splitmix64(lo))


def _ts(us: np.ndarray) -> pa.Array:
    valid = us >= 0
    return S.iso_timestamps(us, None if valid.all() else valid)


def _opt_int(values: np.ndarray, typ: pa.DataType) -> pa.Array:
    valid = values >= 0
    return pa.array(values.astype(typ.to_pandas_dtype()), typ, mask=None if valid.all() else ~valid)


def _decimal_5_4(unscaled: np.ndarray) -> pa.Array:
    """decimal128(5,4) from non-negative unscaled ints (-1 = null), built from buffers."""
    n = len(unscaled)
    valid = unscaled >= 0
    data = np.zeros((n, 2), dtype=np.int64)
    data[:, 0] = np.where(valid, unscaled, 0)
    bitmap = None if valid.all() else pa.py_buffer(np.packbits(valid, bitorder="little"))
    return pa.Array.from_buffers(
        pa.decimal128(5, 4), n, [bitmap, pa.py_buffer(data)], null_count=int((~valid).sum())
    )


def _user_hash(ids: np.ndarray, k: int) -> np.ndarray:
    return S.splitmix64(ids.astype(np.uint64) * np.uint64(0x100) + np.uint64(k))


def _weighted(h: np.ndarray, cum: np.ndarray) -> np.ndarray:
    u = (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    return np.searchsorted(cum, u * cum[-1], side="right").clip(0, len(cum) - 1)


class RowEncoder:
    """Row images (``after``), delete images (``before``) and keys of one table."""

    def __init__(self, texts: Texts, seed: int):
        self.tx = texts
        self.pw_salt = np.uint64((seed * 0x5851F42D4C957F2D + 7) & 0xFFFFFFFFFFFFFFFF)

    # -- row images --------------------------------------------------------------------------

    def image(self, td: TableDef, b: Batch) -> list[pa.Array]:
        fn = getattr(self, f"_{td.table}")
        cols = fn(b, td)
        return [cols[name] for name, _ in td.columns]

    def _users(self, b: Batch, td: TableDef) -> dict[str, pa.Array]:
        t = self.tx
        ids = b.cols["id"]
        ev = b.cols["ev"].astype(np.int64)
        h1, h2 = _user_hash(ids, 1), _user_hash(ids, 2)
        korean = (h1 % np.uint64(10)) < np.uint64(4)
        ni = (h2 % np.uint64(len(t.latin_names))).astype(np.int64)  # one name per user: 김민준 / minjun.kim
        ko = S.take(t.ko_names, ni)
        latin_base = S.take(t.latin_names, ni)
        digits = S.int_strings(ids % 97)
        latin = pc.if_else(
            pa.array((h2 >> np.uint64(20)) % np.uint64(2) == 0), S.join(latin_base, digits), latin_base
        )
        username = pc.if_else(pa.array(korean), ko, latin)
        dom = _weighted(S.splitmix64(h2 + ev.astype(np.uint64)), t.domain_cum)
        ev_suffix = pc.if_else(pa.array(ev > 0), S.join("_", S.int_strings(ev)), "")
        email = S.join(latin_base, S.int_strings(ids), ev_suffix, "@", S.take(t.domains, dom))
        pw = S.bcrypt_hashes(
            S.splitmix64(ids.astype(np.uint64) * np.uint64(1024) + b.cols["pv"].astype(np.uint64))
            ^ self.pw_salt
        )
        prov_idx = _weighted(_user_hash(ids, 3), t.provider_cum)
        prov_valid = (_user_hash(ids, 4) % np.uint64(50)) != np.uint64(0)  # ~2 % legacy rows without provider
        return {
            "id": pa.array(ids, pa.int64()),
            "username": username,
            "email": email,
            "password_hash": pw,
            "provider": S.take(t.providers, prov_idx, prov_valid),
            "created_at": _ts(b.cols["created"]),
            "updated_at": _ts(b.cols["updated"]),
        }

    def _scans(self, b: Batch, td: TableDef) -> dict[str, pa.Array]:
        t = self.tx
        uid = t.uuids(b.cols["id"])
        processed = b.cols["processed"]
        return {
            "id": uid,
            "user_id": pa.array(b.cols["user_id"], pa.int64()),
            "image_path_raw": S.join(f"{IMAGE_BUCKET}/raw/", uid, ".jpg"),
            "image_path_processed": S.join(f"{IMAGE_BUCKET}/processed/", uid, ".webp", valid=processed),
            "status": S.take(t.statuses, b.cols["status"].astype(np.int64)),
            "created_at": _ts(b.cols["created"]),
            "completed_at": _ts(b.cols["completed"]),
        }

    def _classification_results(self, b: Batch, td: TableDef) -> dict[str, pa.Array]:
        t = self.tx
        rationale = S.take(t.rationales, b.cols["rationale"].astype(np.int64))
        toast = b.cols["toast"]
        if toast.any():
            rationale = pc.if_else(pa.array(toast), TOAST_PLACEHOLDER, rationale)
        return {
            "id": pa.array(b.cols["id"], pa.int64()),
            "scan_id": t.uuids(b.cols["scan"]),
            "category": S.take(t.categories, b.cols["category"].astype(np.int64)),
            "item": S.take(t.items, b.cols["item"].astype(np.int64)),
            "confidence": _decimal_5_4(b.cols["conf"]),
            "rationale": rationale,
            "model": S.take(t.models, b.cols["model"].astype(np.int64)),
            "prompt_version": S.take(t.prompt_versions, b.cols["pver"].astype(np.int64)),
            "created_at": _ts(b.cols["created"]),
        }

    def _rag_retrievals(self, b: Batch, td: TableDef) -> dict[str, pa.Array]:
        t = self.tx
        chunk = b.cols["chunk"].astype(np.int64)
        rel = b.cols["relevance"]
        return {
            "id": pa.array(b.cols["id"], pa.int64()),
            "scan_id": t.uuids(b.cols["scan"]),
            "rank": pa.array(b.cols["rank"], pa.int32()),
            "document_id": S.take(t.chunk_docs, chunk),
            "chunk_id": S.take(t.chunk_ids, chunk),
            "chunk_text": S.take(t.chunk_texts, chunk),
            "relevance_score": pa.array(
                rel, pa.float64(), mask=np.isnan(rel) if np.isnan(rel).any() else None
            ),
            "created_at": _ts(b.cols["created"]),
        }

    def _llm_call_log(self, b: Batch, td: TableDef) -> dict[str, pa.Array]:
        t = self.tx
        scan = b.cols["scan"]
        valid = scan >= 0
        lat_type = pa.int64() if dict(td.columns)["latency_ms"].type == "int64" else pa.int32()
        out = {
            "id": pa.array(b.cols["id"], pa.int64()),
            "scan_id": t.uuids(scan, None if valid.all() else valid),
            "stage": S.take(t.stages, b.cols["stage"].astype(np.int64)),
            "model": S.take(t.models, b.cols["model"].astype(np.int64)),
            "latency_ms": pa.array(b.cols["latency"].astype(lat_type.to_pandas_dtype()), lat_type),
            "prompt_tokens": _opt_int(b.cols["ptok"], pa.int32()),
            "completion_tokens": _opt_int(b.cols["ctok"], pa.int32()),
            "status": S.take(t.llm_statuses, b.cols["status"].astype(np.int64)),
            "created_at": _ts(b.cols["created"]),
        }
        if "cached_tokens" in dict(td.columns):
            out["cached_tokens"] = _opt_int(_cached_tokens(b), pa.int32())
        return out

    def _feedback(self, b: Batch, td: TableDef) -> dict[str, pa.Array]:
        t = self.tx
        return {
            "id": pa.array(b.cols["id"], pa.int64()),
            "scan_id": t.uuids(b.cols["scan"]),
            "user_id": pa.array(b.cols["user_id"], pa.int64()),
            "thumbs_up": pa.array(b.cols["thumbs"], pa.bool_()),
            "corrected_category": S.take(t.categories, b.cols["ccat"].astype(np.int64)),
            "corrected_item": S.take(t.items, b.cols["citem"].astype(np.int64)),
            "comment": S.take(t.comments, b.cols["comment"].astype(np.int64)),
            "created_at": _ts(b.cols["created"]),
            "updated_at": _ts(b.cols["updated"]),
        }

    # -- keys ----------------------------------------------------------------------------------

    def key_arrays(self, td: TableDef, b: Batch) -> list[pa.Array]:
        if td.table == "scans":
            return [self.tx.uuids(b.cols["id"])]
        return [pa.array(b.cols["id"], pa.int64())]

    def key_hash(self, td: TableDef, b: Batch) -> np.ndarray:
        if td.table == "scans":
            return self.tx.uuid_hash(b.cols["id"])
        return S.splitmix64(b.cols["id"].astype(np.uint64) ^ np.uint64(0x2545F4914F6CDD1D))

    # -- envelope parts ---------------------------------------------------------------------------

    def envelope_images(
        self, td: TableDef, value: ConnectSchema, b: Batch
    ) -> tuple[pa.StructArray, pa.StructArray]:
        """``before`` and ``after`` struct arrays (REPLICA IDENTITY DEFAULT)."""
        n = len(b)
        op = b.cols["op"]
        is_delete = op == OP_D
        after_null = is_delete | (op == OP_T)
        struct_type = value.physical_arrow_type()
        fields = list(struct_type)
        after_children = self.image(td, b)
        after = pa.StructArray.from_arrays(
            after_children, fields=fields, mask=pa.array(after_null) if after_null.any() else None
        )
        if is_delete.any():
            keys = dict(zip(td.key, self.key_arrays(td, b)))
            before_children = []
            for f, (name, schema) in zip(fields, td.columns):
                if name in keys:
                    before_children.append(keys[name])
                else:
                    before_children.append(_constant(delete_fallback(schema, False), f.type, n))
            before = pa.StructArray.from_arrays(before_children, fields=fields, mask=pa.array(~is_delete))
        else:
            before = _null_struct(struct_type, n)
        return before, after


def _cached_tokens(b: Batch) -> np.ndarray:
    """Prompt-cache hits (column added mid-stream): part of the vision prompt for some calls,
    a few hundred tokens for answers, null for embeddings."""
    h = S.splitmix64(b.cols["id"].astype(np.uint64) ^ np.uint64(0xC0FFEE))
    stage, ptok = b.cols["stage"], b.cols["ptok"].astype(np.int64)
    frac = (h % np.uint64(60)).astype(np.int64)
    hit = (h >> np.uint64(8)) % np.uint64(10) < np.uint64(4)
    vision = np.where(hit & (ptok > 0), ptok * frac // 100, 0)
    answer = np.where(hit, (h >> np.uint64(16)).astype(np.int64) % 300, 0)
    return np.where(stage == 0, vision, np.where(stage == 2, answer, -1)).astype(np.int64)


def _constant(value, typ: pa.DataType, n: int) -> pa.Array:
    if value is None:
        return pa.nulls(n, typ)
    return pa.nulls(n, typ).fill_null(pa.scalar(value, typ))


def _null_struct(typ: pa.StructType, n: int) -> pa.StructArray:
    """An all-null struct column whose required children still hold values (Parquet rejects
    nulls in non-nullable children even under a null parent)."""
    children = []
    for f in typ:
        if pa.types.is_struct(f.type):
            children.append(_null_struct(f.type, n))
        elif f.nullable:
            children.append(pa.nulls(n, f.type))
        elif pa.types.is_string(f.type):
            children.append(_constant("", f.type, n))
        elif pa.types.is_boolean(f.type):
            children.append(_constant(False, f.type, n))
        elif pa.types.is_decimal(f.type):
            children.append(pa.array(np.zeros(n, dtype=np.int64)).cast(f.type))
        else:
            children.append(_constant(0, f.type, n))
    return pa.StructArray.from_arrays(children, fields=list(typ), mask=pa.array(np.ones(n, dtype=bool)))
