"""Find known secret values in everything a run wrote: ``scan_for_secrets(paths, secrets, exclude)``.

Reusable by any suite that runs the pipeline with sentinel secrets (this one, a chaos suite): it
walks the given files and folders and searches every file

* as raw bytes (logs, JSON, HTML, pickles, msgpack, the SQLite and DuckDB files themselves), and
  decompressed when the file is gzip, zstd or zlib;
* decoded, where the format compresses or splits values so raw bytes would miss them: Parquet (every
  cell of every column, nested ones as JSON, plus the key-value metadata), Avro object container
  files (every record), SQLite (every column of every table: Dagster's run and event-log storage;
  zlib blobs, such as Dagster's job and execution-plan snapshots, inflated),
  DuckDB (every column of every table cast to text: the warehouse).

Each secret is also looked for in the forms a writer may give it (JSON string escaping, ``\\/``,
HTML escaping). A finding is ``"<where>: <kind>"``; the secret value itself is never part of it.
"""

from __future__ import annotations

import html
import json
import os
import re
import sqlite3
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

_GZIP = b"\x1f\x8b"
_ZSTD = b"\x28\xb5\x2f\xfd"
_SQLITE = b"SQLite format 3\x00"
_AVRO = b"Obj\x01"
_PARQUET = b"PAR1"


def scan_for_secrets(
    paths: list[Path], secrets: dict[str, list[str]], exclude: list[Path], *, seen: list[str] | None = None
) -> list[str]:
    """Every place under ``paths`` (files or folders) holding a value of ``secrets`` (kind -> values).

    ``exclude``: files or folders not searched (where a secret is allowed, e.g. the raw lake).
    ``seen``, when given, receives one line per searched unit ("<file>", "<file>[column]",
    "<file>:<table>.<column>"), so a caller can assert the scan covered what it should.
    Returns sorted, de-duplicated findings ``"<where>: <kind>"``; never the secret itself."""
    matchers = {kind: _matcher(values) for kind, values in secrets.items() if any(values)}
    skipped = [Path(p).resolve() for p in exclude]
    findings: set[str] = set()
    for file in _files(paths, skipped):
        for where, data in _contents(file):
            if seen is not None:
                seen.append(where)
            for kind, rx in matchers.items():
                if rx.search(data):
                    findings.add(f"{where}: {kind}")
    return sorted(findings)


# --------------------------------------------------------------------------------------------
# what is searched
# --------------------------------------------------------------------------------------------


def _files(paths: Iterable[Path], skipped: list[Path]) -> Iterator[Path]:
    def excluded(p: Path) -> bool:
        return any(p == s or s in p.parents for s in skipped)

    done: set[Path] = set()
    for root in paths:
        root = Path(root).resolve()
        if excluded(root) or not root.exists():
            continue
        candidates = (
            [root] if root.is_file() else sorted(Path(d) / f for d, _, names in os.walk(root) for f in names)
        )
        for f in candidates:
            f = f.resolve()
            if f in done or excluded(f) or not f.is_file():
                continue
            done.add(f)
            yield f


def _contents(file: Path) -> Iterator[tuple[str, bytes]]:
    """(where, bytes to search) for the raw file and every decoded view of it."""
    raw = file.read_bytes()
    yield str(file), raw
    decoders = []
    if raw.startswith(_GZIP):
        decoders.append(("gunzip", lambda: _decompress(raw, "gzip")))
    elif raw.startswith(_ZSTD):
        decoders.append(("unzstd", lambda: _decompress(raw, "zstd")))
    for how, decode in decoders:
        yield f"{file} ({how})", decode()
    inflated = _inflate(raw)
    if inflated is not None:
        yield f"{file} (zlib)", inflated
    if raw.startswith(_PARQUET) and raw.endswith(_PARQUET):
        yield from _parquet(file)
    elif raw.startswith(_AVRO):
        yield from _avro(file)
    elif raw.startswith(_SQLITE):
        yield from _sqlite(file)
    elif raw[8:12] == b"DUCK":
        yield from _duckdb(file)


def _inflate(data: bytes) -> bytes | None:
    """``data`` inflated if it is a zlib stream (as Dagster stores its snapshots), else None."""
    if len(data) < 2 or data[0] != 0x78 or data[1] not in (0x01, 0x5E, 0x9C, 0xDA):
        return None
    try:
        return zlib.decompress(data)
    except zlib.error:
        return None


def _decompress(raw: bytes, codec: str) -> bytes:
    with pa.CompressedInputStream(pa.BufferReader(raw), codec) as stream:
        return stream.read()


def _cells(arr: pa.ChunkedArray | pa.Array) -> bytes:
    """All non-null values of a column as one byte string (nested values as JSON)."""
    t = arr.type
    if pa.types.is_dictionary(t):
        arr, t = arr.cast(t.value_type), t.value_type
    if pa.types.is_string(t) or pa.types.is_large_string(t) or getattr(pa.types, "is_string_view", bool)(t):
        return "\x00".join(v for v in arr.to_pylist() if v is not None).encode()
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return b"\x00".join(v for v in arr.to_pylist() if v is not None)
    if pa.types.is_nested(t):
        return "\x00".join(
            json.dumps(v, default=str, ensure_ascii=False) for v in arr.to_pylist() if v is not None
        ).encode()
    return b""  # numbers, dates, booleans: no secret is one


def _parquet(file: Path) -> Iterator[tuple[str, bytes]]:
    pf = pq.ParquetFile(file)
    meta = pf.schema_arrow.metadata or {}
    yield f"{file} (parquet metadata)", b"\x00".join(k + b"=" + v for k, v in meta.items())
    table = pf.read()
    for name in table.column_names:
        yield f"{file}[{name}]", _cells(table.column(name))


def _avro(file: Path) -> Iterator[tuple[str, bytes]]:
    import fastavro

    with file.open("rb") as f:
        reader = fastavro.reader(f)
        meta = json.dumps(reader.metadata, default=str, ensure_ascii=False)
        records = [json.dumps(r, default=str, ensure_ascii=False) for r in reader]
    yield f"{file} (avro records)", (meta + "\x00" + "\x00".join(records)).encode()


def _sqlite(file: Path) -> Iterator[tuple[str, bytes]]:
    con = sqlite3.connect(f"{file.as_uri()}?mode=ro&immutable=1", uri=True)
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            columns = [r[1] for r in con.execute(f"PRAGMA table_info({_quote(table)})")]
            for column in columns:
                values = con.execute(
                    f"SELECT {_quote(column)} FROM {_quote(table)} WHERE {_quote(column)} IS NOT NULL"
                ).fetchall()
                cells = [v if isinstance(v, bytes) else str(v).encode() for (v,) in values]
                yield f"{file}:{table}.{column}", b"\x00".join(cells)
                inflated = [d for d in map(_inflate, (v for (v,) in values if isinstance(v, bytes))) if d]
                if inflated:
                    yield f"{file}:{table}.{column} (zlib)", b"\x00".join(inflated)
    finally:
        con.close()


def _duckdb(file: Path) -> Iterator[tuple[str, bytes]]:
    import duckdb

    with duckdb.connect(str(file), read_only=True) as con:
        tables = con.execute(
            "SELECT table_catalog, table_schema, table_name FROM information_schema.tables "
            "WHERE table_type = 'BASE TABLE' ORDER BY ALL"
        ).fetchall()
        for catalog, schema, table in tables:
            columns = [
                r[0]
                for r in con.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_catalog = ? AND table_schema = ? "
                    "AND table_name = ? ORDER BY ordinal_position",
                    [catalog, schema, table],
                ).fetchall()
            ]
            if not columns:
                continue
            select = ", ".join(f"CAST({_quote(c)} AS VARCHAR) AS {_quote(c)}" for c in columns)
            rows = con.execute(
                f"SELECT {select} FROM {_quote(catalog)}.{_quote(schema)}.{_quote(table)}"
            ).arrow()
            if isinstance(rows, pa.RecordBatchReader):
                rows = rows.read_all()
            for c in columns:
                yield f"{file}:{schema}.{table}.{c}", _cells(rows.column(c))


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


# --------------------------------------------------------------------------------------------
# matching many literal values at once
# --------------------------------------------------------------------------------------------


def _forms(value: str) -> set[str]:
    """The value and the ways a writer may spell it: JSON string body, escaped slashes, HTML."""
    forms = {value, json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1], html.escape(value)}
    forms |= {f.replace("/", "\\/") for f in forms}
    return {f for f in forms if f}


def _matcher(values: Iterable[str]) -> re.Pattern[bytes]:
    """One regex for many literals: a trie, so the cost does not grow with the number of values."""
    trie: dict = {}
    for value in values:
        for form in _forms(value):
            node = trie
            for byte in form.encode():
                node = node.setdefault(byte, {})
            node[None] = {}
    return re.compile(_trie_pattern(trie), re.DOTALL)


def _trie_pattern(node: dict) -> bytes:
    parts = []
    # single-child chains become literals (keeps the regex shallow)
    for byte, child in sorted((k, v) for k, v in node.items() if k is not None):
        run = bytearray([byte])
        while None not in child and len(child) == 1:
            ((b, child),) = child.items()
            run.append(b)
        parts.append(re.escape(bytes(run)) + (_trie_pattern(child) if child else b""))
    if None in node:  # a whole value ends here: the shortest match is enough
        return b""
    return parts[0] if len(parts) == 1 else b"(?:" + b"|".join(parts) + b")"
