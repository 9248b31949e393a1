"""Vectorized string building (no per-row Python): UUIDs, ISO timestamps, bcrypt-looking hashes,
Debezium ``sequence`` strings. Fixed-width strings are assembled as uint8 matrices and wrapped as
Arrow string arrays without copying row by row."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lakehouse.generate.vocab import BCRYPT_ALPHABET

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_B64 = np.frombuffer(BCRYPT_ALPHABET, dtype=np.uint8)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """Stateless 64-bit mixer (SplitMix64 finalizer) — stable hashes and derived randomness."""
    z = np.asarray(x).astype(np.uint64) + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def _validity(valid: np.ndarray | None) -> tuple[pa.Buffer | None, int]:
    if valid is None or bool(valid.all()):
        return None, 0
    return pa.py_buffer(np.packbits(valid, bitorder="little")), int((~valid).sum())


def matrix_to_strings(mat: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    """(n, w) uint8 matrix of ASCII/UTF-8 bytes -> Arrow string array of width-w strings."""
    n, w = mat.shape
    offsets = np.arange(n + 1, dtype=np.int64) * w
    if offsets[-1] < 2**31:
        typ, offsets = pa.string(), offsets.astype(np.int32)
    else:
        typ = pa.large_string()
    bitmap, nulls = _validity(valid)
    arr = pa.Array.from_buffers(
        typ, n, [bitmap, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(mat))], null_count=nulls
    )
    return arr if typ == pa.string() else arr.cast(pa.string())


_HEX2 = np.array([f"{i:02x}".encode() for i in range(256)], dtype="S2")


def _hex_digits(values: np.ndarray) -> np.ndarray:
    """(n, 16) lowercase hex digits of uint64 values (most significant first)."""
    be = np.ascontiguousarray(values.astype(">u8")).view(np.uint8).reshape(-1, 8)
    return _HEX2[be].view(np.uint8).reshape(-1, 16)


def uuid_parts(ids: np.ndarray, salt: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic random (version 4) UUID halves for entity numbers."""
    base = np.asarray(ids).astype(np.uint64) * np.uint64(2) + np.uint64(salt & 0xFFFFFFFFFFFF) * np.uint64(
        1 << 16
    )
    hi = splitmix64(base)
    lo = splitmix64(base + np.uint64(1))
    hi = (hi & np.uint64(0xFFFFFFFFFFFF0FFF)) | np.uint64(0x4000)
    lo = (lo & np.uint64(0x3FFFFFFFFFFFFFFF)) | np.uint64(0x8000000000000000)
    return hi, lo


def uuid_strings(hi: np.ndarray, lo: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    n = len(hi)
    mat = np.empty((n, 36), dtype=np.uint8)
    h = _hex_digits(hi)
    l_ = _hex_digits(lo)
    mat[:, 0:8] = h[:, 0:8]
    mat[:, 9:13] = h[:, 8:12]
    mat[:, 14:18] = h[:, 12:16]
    mat[:, 19:23] = l_[:, 0:4]
    mat[:, 24:36] = l_[:, 4:16]
    mat[:, [8, 13, 18, 23]] = ord("-")
    return matrix_to_strings(mat, valid)


def _digits(values: np.ndarray, width: int) -> np.ndarray:
    v = values.astype(np.int64)
    pows = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return ((v[:, None] // pows[None, :]) % 10 + 48).astype(np.uint8)


def civil_from_days(days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Proleptic Gregorian (year, month, day) from days since 1970-01-01 (H. Hinnant)."""
    z = days.astype(np.int64) + 719468
    era = np.floor_divide(z, 146097)
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = np.where(mp < 10, mp + 3, mp - 9)
    y = y + (m <= 2)
    return y, m, d


_TOD: np.ndarray | None = None
_MS3 = np.array([f"{i:03d}".encode() for i in range(1000)], dtype="S3")
_ISO_DTYPE = np.dtype(
    [("date", "S10"), ("t", "S1"), ("tod", "S8"), ("dot", "S1"), ("f1", "S3"), ("f2", "S3"), ("z", "S1")]
)


def _tod_table() -> np.ndarray:
    global _TOD
    if _TOD is None:
        s = np.arange(86_400)
        _TOD = np.array(
            [f"{h:02d}:{m:02d}:{x:02d}".encode() for h, m, x in zip(s // 3600, (s // 60) % 60, s % 60)],
            dtype="S8",
        )
    return _TOD


def _date_strings(days: np.ndarray) -> np.ndarray:
    dmin, dmax = int(days.min()), int(days.max())
    if dmax - dmin < 4096:  # few distinct days: format each once
        span = np.arange(dmin, dmax + 1)
        idx = days - dmin
    else:
        span, idx = np.unique(days, return_inverse=True)
    y, m, d = civil_from_days(span)
    mat = np.empty((len(span), 10), dtype=np.uint8)
    mat[:, 0:4] = _digits(y, 4)
    mat[:, 4] = ord("-")
    mat[:, 5:7] = _digits(m, 2)
    mat[:, 7] = ord("-")
    mat[:, 8:10] = _digits(d, 2)
    return mat.view("S10").reshape(-1)[idx]


def iso_timestamps(us: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    """``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (Debezium ZonedTimestamp of a timestamptz(6) column)."""
    us = np.asarray(us, dtype=np.int64)
    if valid is not None:
        us = np.where(valid, us, 0)
    n = len(us)
    out = np.empty(n, dtype=_ISO_DTYPE)
    if n == 0:
        return pa.array([], pa.string())
    secs = np.floor_divide(us, 1_000_000)
    frac = us - secs * 1_000_000
    days = np.floor_divide(secs, 86_400)
    out["date"] = _date_strings(days)
    out["t"] = b"T"
    out["tod"] = _tod_table()[secs - days * 86_400]
    out["dot"] = b"."
    out["f1"] = _MS3[frac // 1000]
    out["f2"] = _MS3[frac % 1000]
    out["z"] = b"Z"
    return matrix_to_strings(out.view(np.uint8).reshape(n, 27), valid)


def bcrypt_hashes(keys: np.ndarray) -> pa.Array:
    """``$2b$12$`` + 53 bcrypt-base64 characters derived from ``keys`` (uint64)."""
    n = len(keys)
    mat = np.empty((n, 60), dtype=np.uint8)
    mat[:, 0:7] = np.frombuffer(b"$2b$12$", dtype=np.uint8)
    k = np.asarray(keys).astype(np.uint64)
    col = 7
    for j in range(6):  # 6 x 10 six-bit groups = 60 >= 53
        word = splitmix64(k * np.uint64(7) + np.uint64(j))
        take = min(10, 60 - col)
        shifts = np.arange(take, dtype=np.uint64) * np.uint64(6)
        idx = ((word[:, None] >> shifts[None, :]) & np.uint64(63)).astype(np.intp)
        mat[:, col : col + take] = _B64[idx]
        col += take
        if col >= 60:
            break
    return matrix_to_strings(mat)


def int_strings(values: np.ndarray) -> pa.Array:
    return pc.cast(pa.array(np.asarray(values, dtype=np.int64)), pa.string())


def join(*parts, valid: np.ndarray | None = None) -> pa.Array:
    """Element-wise concatenation of string arrays / Python strings."""
    out = pc.binary_join_element_wise(*parts, "")
    if valid is not None and not bool(valid.all()):
        out = pc.if_else(pa.array(valid), out, pa.scalar(None, pa.string()))
    return out


def take(vocab: pa.Array, idx: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    """Vocabulary lookup; ``valid`` False (or idx < 0) gives null."""
    idx = np.asarray(idx)
    mask = (idx >= 0) if valid is None else (valid & (idx >= 0))
    indices = pa.array(np.where(mask, idx, 0).astype(np.int32), mask=~mask if not mask.all() else None)
    return vocab.take(indices)


def sequence_strings(prev_commit: np.ndarray, lsn: np.ndarray) -> pa.Array:
    """Debezium ``source.sequence``: ``["<last commit lsn>","<lsn>"]``; first element null (<0)."""
    lsn_s = int_strings(lsn)
    has_prev = prev_commit >= 0
    prev_s = int_strings(np.where(has_prev, prev_commit, 0))
    with_prev = pc.binary_join_element_wise('["', prev_s, '","', lsn_s, '"]', "")
    if has_prev.all():
        return with_prev
    without = pc.binary_join_element_wise('[null,"', lsn_s, '"]', "")
    return pc.if_else(pa.array(has_prev), with_prev, without)
