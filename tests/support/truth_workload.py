"""A randomized, seeded PostgreSQL workload for the truth test (``test_truth.py``).

Everything lives in schema ``chaos`` of a fresh database:

* ``items``: bigint identity key and one column of every PostgreSQL type the connector maps
  (spec lake-format.md §4.4) whose lake value can be compared exactly with ``SELECT *``
  (see :data:`ITEM_COLUMNS`; what is left out, and why, is listed there).
* ``docs``: the TOAST table: values > 4 KB of poorly compressible data (md5 chains) in text, bytea,
  text[], int[], uuid[] and jsonb columns, updated often without touching them (unchanged-TOAST
  placeholders), primary-key changes of such rows (the ``c`` half carries placeholders), key swaps.
* ``pairs``: composite key ``(tenant text, seq int)``, REPLICA IDENTITY FULL, key changes; its
  ``seq`` key column is widened int -> bigint once.
* ``evolve``: schema changes: ADD COLUMN (nullable, and with a constant DEFAULT), DROP COLUMN,
  ALTER COLUMN TYPE int -> bigint, TRUNCATE followed by new rows (also inside one transaction).
* ``marker``: written by the test only, to see when the capture has caught up.

Two connections run interleaved, overlapping transactions (one opens, the other works and commits,
the first commits later), some rolled back, some with savepoints rolled back. A connection never
touches a key the other one's open transaction has touched (that would block the single-threaded
driver), and DDL/TRUNCATE run only while neither connection has a transaction open.

Same seed, same statements: every random choice comes from ``random.Random(seed)`` and the only
database reads are ordered key lists, which depend on nothing but the statements before them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

import psycopg

SCHEMA = "chaos"
TABLES = {  # table -> primary key
    "chaos.items": ("id",),
    "chaos.docs": ("id",),
    "chaos.pairs": ("tenant", "seq"),
    "chaos.evolve": ("id",),
    "chaos.marker": ("id",),
}

# Placeholders written by Debezium for unchanged TOAST values must never be real data (spec §5.5):
# no generated value equals "__debezium_unavailable_value", its bytes, or a list of those.

# --------------------------------------------------------------------------------------------
# values
# --------------------------------------------------------------------------------------------

_ALPHABET = (
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    " \t\n\r'\"\\,{}[]()%_$;:!?@#&*+-=/<>|`~^"
    "éüßçñøå"
    "가나다라마바사아자차카타파하한국어분리수거"
    "€£¥"
    "\u00a0\u200b\u0301"
)
_EMOJI = "😀🚮♻️🧴🥤"


def rand_text(rng: random.Random, lo: int = 0, hi: int = 24) -> str:
    n = rng.randint(lo, hi)
    return "".join(rng.choice(_EMOJI) if rng.random() < 0.05 else rng.choice(_ALPHABET) for _ in range(n))


def md5_chain(rng: random.Random, blocks: int) -> str:
    """``blocks`` md5 hex digests, each of the previous one: poorly compressible, > 2 KB is TOASTed."""
    h = hashlib.md5(str(rng.random()).encode()).hexdigest()
    out = []
    for _ in range(blocks):
        h = hashlib.md5(h.encode()).hexdigest()
        out.append(h)
    return "".join(out)


def rand_decimal(rng: random.Random, int_digits: int, scale: int, *, vary_scale: bool = False) -> Decimal:
    digits = rng.randint(0, int_digits)
    whole = str(rng.randint(0, 10**digits - 1)) if digits else "0"
    s = rng.randint(0, scale) if vary_scale else scale
    frac = "".join(rng.choice("0123456789") for _ in range(s))
    sign = "-" if rng.random() < 0.3 else ""
    return Decimal(f"{sign}{whole}.{frac}" if s else f"{sign}{whole}")


def rand_float(rng: random.Random, single: bool) -> float:
    specials = [0.0, -0.0, 1.0, -1.5, float("nan"), float("inf"), float("-inf")]
    specials += (
        [3.4028234663852886e38, 1.401298464324817e-45]
        if single
        else [1.7976931348623157e308, 5e-324, 2.2250738585072014e-308]
    )
    if rng.random() < 0.25:
        return rng.choice(specials)
    return rng.uniform(-1, 1) * 10 ** rng.randint(-30 if single else -300, 30 if single else 300)


def rand_json_text(rng: random.Random, depth: int = 0) -> str:
    """JSON text with the spacing, key order, escapes and number forms a client may send: json
    keeps it byte for byte, jsonb normalizes it (both are compared as PostgreSQL prints them)."""
    ws = rng.choice(["", " ", "  ", "\n", "\t"])
    kind = rng.randint(0, 7 if depth < 2 else 4)
    if kind == 0:
        return rng.choice(["null", "true", "false"])
    if kind == 1:
        return rng.choice(["0", "-0", "1.50", "1e5", "-2.5E-3", "12345678901234567890", "3.14159"])
    if kind in (2, 3, 4):
        s = rand_text(rng, 0, 8).replace("\\", "\\\\").replace('"', '\\"')
        s = "".join(c if c >= " " else f"\\u{ord(c):04x}" for c in s)
        return '"' + s + rng.choice(["", "\\u00e9", "\\n", "\\/"]) + '"'
    if kind in (5, 6):
        keys = [rng.choice(["a", "b", "키", "z z", ""]) for _ in range(rng.randint(0, 4))]
        return (
            "{"
            + ws
            + ("," + ws).join(f'"{k}"{ws}:{ws}{rand_json_text(rng, depth + 1)}' for k in keys)
            + ws
            + "}"
        )
    return (
        "["
        + ws
        + ("," + ws).join(rand_json_text(rng, depth + 1) for _ in range(rng.randint(0, 4)))
        + ws
        + "]"
    )


def rand_timestamp(rng: random.Random) -> dt.datetime:
    base = dt.datetime(1900, 1, 1)
    return base + dt.timedelta(microseconds=rng.randint(0, 300 * 365 * 86_400 * 10**6))


def rand_time(rng: random.Random, digits: int = 6) -> dt.time:
    us = rng.randint(0, 86_400 * 10**6 - 1)
    us -= us % 10 ** (6 - digits)
    return (dt.datetime(2000, 1, 1) + dt.timedelta(microseconds=us)).time()


def rand_timetz(rng: random.Random) -> str:
    offset_min = rng.choice([0, 0, 60, -300, 330, -210, 525, 840, -720, 345])
    sign = "+" if offset_min >= 0 else "-"
    t = rand_time(rng, rng.choice([0, 3, 6]))
    return f"{t.isoformat()}{sign}{abs(offset_min) // 60:02d}:{abs(offset_min) % 60:02d}"


def rand_interval(rng: random.Random) -> dt.timedelta:
    # No months or years: Debezium converts those approximately (30.4375 days per month, spec §4.4).
    # Whole seconds or binary fractions of one only: Debezium's MicroDuration sums the parts as a
    # double and truncates, so e.g. '-3184 days 22:30:56.039206' arrives 1 µs off; with seconds a
    # double holds exactly, the conversion is exact.
    frac = rng.choice([0, 0, 500_000, 250_000, 750_000])
    return dt.timedelta(
        days=rng.randint(-4000, 4000), seconds=rng.randint(-86_400, 86_400), microseconds=frac
    )


def rand_inet(rng: random.Random, cidr: bool) -> str:
    if rng.random() < 0.3:
        prefix = rng.choice([128, 64, 48])
        addr = uuid.UUID(int=rng.getrandbits(128)).int
        if cidr:
            addr &= ((1 << 128) - 1) ^ ((1 << (128 - prefix)) - 1)
        import ipaddress

        return f"{ipaddress.IPv6Address(addr)}/{prefix}"
    prefix = rng.choice([32, 24, 16, 8])
    addr = rng.getrandbits(32)
    if cidr:
        addr &= ((1 << 32) - 1) ^ ((1 << (32 - prefix)) - 1)
    return ".".join(str((addr >> s) & 255) for s in (24, 16, 8, 0)) + f"/{prefix}"


def rand_xml(rng: random.Random) -> str:
    word = "".join(rng.choice("abcxyz가나") for _ in range(rng.randint(0, 6)))
    return rng.choice(
        [
            f'<r a="{rng.randint(0, 9)}">{word} &amp; &lt;</r>',
            f"{word}<b/>",
            "<e/>",
            f"<x><y>{word}</y><!-- c --></x>",
        ]
    )


MOOD_LABELS = ["sad", "ok", "happy", 'it\'s "complicated"', "눈물"]
MOOD_ADDED = ["meh", "ecstatic"]  # ALTER TYPE ... ADD VALUE during the workload


@dataclass(frozen=True)
class Column:
    name: str
    sql_type: str  # as in CREATE TABLE, also the cast of every parameter
    gen: Callable[[random.Random], object]


def _maybe_null(gen: Callable[[random.Random], object], p: float = 0.12):
    return lambda rng: None if rng.random() < p else gen(rng)


# Every §4.4 type whose lake value compares exactly with PostgreSQL's (see test_truth.canonical),
# real/double NaN and ±Infinity included. Left out, on purpose (what Debezium itself cannot carry):
# * numeric NaN/±Infinity: Debezium's precise decimal mode cannot represent them (it warns and
#   writes null); only decimal.handling.mode=double/string can.
# * date/timestamp ±infinity: Debezium writes sentinel numbers (spec §4.4) and psycopg cannot load
#   the PostgreSQL values either.
# * interval with months or years (MicroDuration counts 30.4375 days per month) and sub-second parts
#   a double does not hold exactly (see rand_interval).
# * varbit: io.debezium.data.Bits drops leading zero bits and the length (B'0101' = B'101').
# * tstzrange: its text is printed in the session time zone of whoever reads it.
# * point (not in §4.4), PostGIS, pgvector (extensions not installed on the test machines).
# Compared, with a documented conversion: timetz as its UTC time (ZonedTime drops the offset);
# unconstrained numeric without trailing fractional zeros (Debezium drops them: 1.50 -> 1.5).
ITEM_COLUMNS: list[Column] = [
    Column(
        "c_small", "smallint", _maybe_null(lambda r: r.choice([-32768, 32767, 0, r.randint(-32768, 32767)]))
    ),
    Column(
        "c_int",
        "integer",
        _maybe_null(lambda r: r.choice([-(2**31), 2**31 - 1, r.randint(-(2**31), 2**31 - 1)])),
    ),
    Column(
        "c_big",
        "bigint",
        _maybe_null(lambda r: r.choice([-(2**63), 2**63 - 1, r.randint(-(2**63), 2**63 - 1)])),
    ),
    Column("c_real", "real", _maybe_null(lambda r: rand_float(r, True))),
    Column("c_double", "double precision", _maybe_null(lambda r: rand_float(r, False))),
    Column("c_num", "numeric(12,4)", _maybe_null(lambda r: rand_decimal(r, 8, 4))),
    Column("c_numfree", "numeric", _maybe_null(lambda r: rand_decimal(r, 30, 20, vary_scale=True))),
    Column("c_numbig", "numeric(40,5)", _maybe_null(lambda r: rand_decimal(r, 35, 5))),
    Column("c_money", "money", _maybe_null(lambda r: rand_decimal(r, 15, 2))),
    Column("c_bool", "boolean", _maybe_null(lambda r: r.random() < 0.5)),
    Column("c_text", "text", _maybe_null(lambda r: md5_chain(r, 150) if r.random() < 0.08 else rand_text(r))),
    Column("c_varchar", "varchar(20)", _maybe_null(lambda r: rand_text(r, 0, 20))),
    Column("c_char", "char(5)", _maybe_null(lambda r: rand_text(r, 0, 5).rstrip())),
    Column("c_citext", "citext", _maybe_null(lambda r: rand_text(r, 0, 10))),
    Column("c_bytea", "bytea", _maybe_null(lambda r: r.randbytes(r.randint(0, 40)))),
    Column("c_json", "json", _maybe_null(rand_json_text)),
    Column(
        "c_jsonb",
        "jsonb",
        _maybe_null(
            lambda r: json.dumps({"big": md5_chain(r, 150)}) if r.random() < 0.08 else rand_json_text(r)
        ),
    ),
    Column("c_xml", "xml", _maybe_null(rand_xml)),
    Column("c_uuid", "uuid", _maybe_null(lambda r: uuid.UUID(int=r.getrandbits(128)))),
    Column("c_mood", "chaos.mood", _maybe_null(lambda r: r.choice(MOOD_LABELS))),
    Column(
        "c_date", "date", _maybe_null(lambda r: dt.date(1, 1, 1) + dt.timedelta(days=r.randint(0, 3_652_058)))
    ),
    Column("c_time", "time", _maybe_null(lambda r: rand_time(r))),
    Column("c_time3", "time(3)", _maybe_null(lambda r: rand_time(r, 3))),
    Column("c_timetz", "timetz", _maybe_null(rand_timetz)),
    Column("c_ts", "timestamp", _maybe_null(rand_timestamp)),
    Column(
        "c_ts3",
        "timestamp(3)",
        _maybe_null(lambda r: rand_timestamp(r).replace(microsecond=r.randint(0, 999) * 1000)),
    ),
    Column(
        "c_tstz",
        "timestamptz",
        _maybe_null(
            lambda r: (
                rand_timestamp(r)
                .replace(tzinfo=dt.UTC)
                .astimezone(dt.timezone(dt.timedelta(minutes=r.choice([0, 540, -300, 330]))))
            )
        ),
    ),
    Column("c_interval", "interval", _maybe_null(rand_interval)),
    Column(
        "c_texts",
        "text[]",
        _maybe_null(
            lambda r: [None if r.random() < 0.1 else rand_text(r, 0, 6) for _ in range(r.randint(0, 5))]
        ),
    ),
    Column(
        "c_ints",
        "integer[]",
        _maybe_null(
            lambda r: [
                None if r.random() < 0.1 else r.randint(-(2**31), 2**31 - 1) for _ in range(r.randint(0, 5))
            ]
        ),
    ),
    Column("c_inet", "inet", _maybe_null(lambda r: rand_inet(r, False))),
    Column("c_cidr", "cidr", _maybe_null(lambda r: rand_inet(r, True))),
    Column("c_mac", "macaddr", _maybe_null(lambda r: ":".join(f"{r.randint(0, 255):02x}" for _ in range(6)))),
    Column("c_bit", "bit(1)", _maybe_null(lambda r: r.choice(["0", "1"]))),
    Column("c_bits", "bit(10)", _maybe_null(lambda r: "".join(r.choice("01") for _ in range(10)))),
    Column("c_oid", "oid", _maybe_null(lambda r: r.randint(0, 2**32 - 1))),
    Column(
        "c_range",
        "int4range",
        _maybe_null(
            lambda r: r.choice(
                ["empty", f"[{r.randint(-9, 0)},{r.randint(1, 9)})", f"({r.randint(-9, 0)},]", "(,)"]
            )
        ),
    ),
    Column("c_tsrange", "tsrange", _maybe_null(lambda r: f'["{rand_timestamp(r)}",)')),
    Column(
        "c_hstore",
        "hstore",
        _maybe_null(
            lambda r: {
                rand_text(r, 0, 5): (None if r.random() < 0.2 else rand_text(r, 0, 5))
                for _ in range(r.randint(0, 3))
            }
        ),
    ),
]


def _hstore_literal(d: dict) -> str:
    def q(s):
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'

    return ", ".join(f"{q(k)}=>{'NULL' if v is None else q(v)}" for k, v in d.items())


def _param(col: Column, value: object) -> object:
    if col.sql_type == "hstore" and value is not None:
        return _hstore_literal(value)  # sent as text, cast by SQL
    return value


# --------------------------------------------------------------------------------------------
# schema
# --------------------------------------------------------------------------------------------


def ddl() -> str:
    labels = ", ".join("'" + x.replace("'", "''") + "'" for x in MOOD_LABELS)
    cols = ",\n  ".join(f"{c.name} {c.sql_type}" for c in ITEM_COLUMNS)
    return f"""
CREATE EXTENSION IF NOT EXISTS citext;
CREATE EXTENSION IF NOT EXISTS hstore;
CREATE SCHEMA {SCHEMA};
CREATE TYPE chaos.mood AS ENUM ({labels});
CREATE TABLE chaos.items (
  id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  {cols}
);
CREATE TABLE chaos.docs (
  id integer PRIMARY KEY,
  counter integer NOT NULL DEFAULT 0,
  title text,
  body text,
  blob bytea,
  tags text[],
  nums integer[],
  refs uuid[],
  meta jsonb
);
CREATE TABLE chaos.pairs (
  tenant text,
  seq integer,
  val integer,
  note text,
  amount numeric(10,2),
  big text,
  PRIMARY KEY (tenant, seq)
);
ALTER TABLE chaos.pairs REPLICA IDENTITY FULL;
CREATE TABLE chaos.evolve (
  id integer PRIMARY KEY,
  a integer,
  b text,
  w varchar(6),
  n numeric(8,2)
);
CREATE TABLE chaos.marker (id bigint PRIMARY KEY);
"""


# --------------------------------------------------------------------------------------------
# the driver
# --------------------------------------------------------------------------------------------

TENANTS = ["acme", "가나다", "", " x ", "ACME", "zeta\tq"]


@dataclass
class Conn:
    name: str
    conn: psycopg.Connection
    in_tx: bool = False
    touched: set = field(default_factory=set)  # (table, key) of the open transaction
    tx_statements: int = 0
    savepoint: bool = False


@dataclass
class Stats:
    statements: int = 0
    commits: int = 0
    rollbacks: int = 0
    savepoint_rollbacks: int = 0
    ops: dict = field(default_factory=dict)


class Workload:
    """Seeded random DML/DDL over two connections. ``dropped`` holds the columns the workload
    dropped (per table) and did not add again: a state with ``dropped_columns: keep`` still has them."""

    def __init__(self, dsn: str, seed: int):
        self.dsn = dsn
        self.seed = seed
        self.rng = random.Random(seed)
        self.a = Conn("A", psycopg.connect(dsn, autocommit=True, prepare_threshold=None))
        self.b = Conn("B", psycopg.connect(dsn, autocommit=True, prepare_threshold=None))
        self.stats = Stats()
        self.dropped: dict[str, set[str]] = {t: set() for t in TABLES}
        self.evolve_cols: list[tuple[str, str]] = []  # added columns of evolve still present: (name, kind)
        self.next_col = 0
        self.next_doc = 10_000
        self.next_item = 1_000_000
        self.next_seq = 1_000
        self.next_evolve = 1_000
        self.moods = list(MOOD_LABELS)
        self.pairs_seq_widened = False
        self.evolve_a_widened = False
        self.evolve_types_widened = False
        # Debezium takes column defaults from the live catalog when it refreshes a table's schema:
        # a SET DEFAULT committed before the capture reached the ADD COLUMN's events would be what
        # the lake records as the column's first default. The test waits for the capture here.
        self.before_set_default: Callable[[], None] | None = None

    def close(self) -> None:
        for c in (self.a, self.b):
            if c.in_tx:
                c.conn.execute("ROLLBACK")
            c.conn.close()

    # -- setup ---------------------------------------------------------------------------

    def setup(self, items: int = 30, docs: int = 10, pairs: int = 30, evolve: int = 15) -> None:
        c = self.a.conn
        c.execute(ddl())
        for _ in range(items):
            self._insert_item(self.a)
        for i in range(docs):
            self._insert_doc(self.a, i + 1, big=i % 3 != 2)
        for _ in range(pairs):
            self._insert_pair(self.a)
        for i in range(evolve):
            self._insert_evolve(self.a, i + 1)

    # -- primitives ------------------------------------------------------------------------

    def _exec(self, c: Conn, sql: str, params: object = None) -> psycopg.Cursor:
        self.stats.statements += 1
        if c.in_tx:
            c.tx_statements += 1
        return c.conn.execute(sql, params)

    def _keys(self, c: Conn, table: str) -> list[tuple]:
        """Keys visible to ``c`` that the other connection's open transaction has not touched."""
        other = self.b if c is self.a else self.a
        key = ", ".join(TABLES[table])
        rows = c.conn.execute(f"SELECT {key} FROM {table} ORDER BY {key}").fetchall()
        return [tuple(r) for r in rows if (table, tuple(r)) not in other.touched]

    def _touch(self, c: Conn, table: str, *keys: tuple) -> None:
        if c.in_tx:
            c.touched.update((table, k) for k in keys)

    def _free(self, c: Conn, table: str, key: tuple) -> bool:
        other = self.b if c is self.a else self.a
        return (table, key) not in other.touched

    def _count(self, op: str) -> None:
        self.stats.ops[op] = self.stats.ops.get(op, 0) + 1

    # -- items -----------------------------------------------------------------------------

    def _item_values(self, cols: list[Column]) -> list[object]:
        return [_param(col, col.gen(self.rng)) for col in cols]

    def _insert_item(self, c: Conn, key: int | None = None) -> None:
        cols = ITEM_COLUMNS
        casts = ", ".join(f"%s::{col.sql_type}" for col in cols)
        names = ", ".join(col.name for col in cols)
        values = self._item_values(cols)
        values = [
            self.rng.choice(self.moods) if col.name == "c_mood" and v is not None else v
            for col, v in zip(cols, values)
        ]
        if key is None:
            row = self._exec(
                c, f"INSERT INTO chaos.items ({names}) VALUES ({casts}) RETURNING id", values
            ).fetchone()
            self._touch(c, "chaos.items", (row[0],))
        else:
            self._exec(c, f"INSERT INTO chaos.items (id, {names}) VALUES (%s, {casts})", [key, *values])
            self._touch(c, "chaos.items", (key,))

    def op_item_insert(self, c: Conn) -> None:
        for _ in range(self.rng.choice([1, 1, 2, 5])):
            self._insert_item(c)

    def op_item_update(self, c: Conn) -> None:
        keys = self._keys(c, "chaos.items")
        if not keys:
            return self.op_item_insert(c)
        for (k,) in self.rng.sample(keys, min(len(keys), self.rng.choice([1, 1, 3]))):
            cols = self.rng.sample(ITEM_COLUMNS, self.rng.choice([1, 2, 4, 12]))
            sets = ", ".join(f"{col.name} = %s::{col.sql_type}" for col in cols)
            values = [
                self.rng.choice(self.moods) if col.name == "c_mood" and v is not None else v
                for col, v in zip(cols, self._item_values(cols))
            ]
            self._exec(c, f"UPDATE chaos.items SET {sets} WHERE id = %s", [*values, k])
            self._touch(c, "chaos.items", (k,))

    def op_item_delete(self, c: Conn) -> None:
        keys = self._keys(c, "chaos.items")
        if len(keys) < 5:
            return self.op_item_insert(c)
        (k,) = self.rng.choice(keys)
        self._exec(c, "DELETE FROM chaos.items WHERE id = %s", [k])
        self._touch(c, "chaos.items", (k,))
        if self.rng.random() < 0.4:  # delete and re-insert the same key in the same transaction
            self._insert_item(c, k)
            self._count("item_reinsert_same_tx")

    def op_item_reinsert_later(self, c: Conn) -> None:
        """Re-insert a key deleted earlier (its tombstone is in the state)."""
        visible = {k for (k,) in c.conn.execute("SELECT id FROM chaos.items").fetchall()}
        gone = [
            k
            for k in range(1, self.max_item(c) + 1)
            if k not in visible and self._free(c, "chaos.items", (k,))
        ]
        if not gone:
            return self.op_item_insert(c)
        self._insert_item(c, self.rng.choice(gone))

    def max_item(self, c: Conn) -> int:
        return c.conn.execute("SELECT coalesce(max(id), 0) FROM chaos.items WHERE id < 1000000").fetchone()[0]

    def op_item_pk_change(self, c: Conn) -> None:
        keys = self._keys(c, "chaos.items")
        if not keys:
            return
        (old,) = self.rng.choice(keys)
        new = self.next_item
        self.next_item += 1
        extra = ""
        params: list[object] = [new, old]
        if self.rng.random() < 0.5:  # key change and a value change in one statement
            col = self.rng.choice(ITEM_COLUMNS)
            extra = f", {col.name} = %s::{col.sql_type}"
            v = self._item_values([col])[0]
            if col.name == "c_mood" and v is not None:
                v = self.rng.choice(self.moods)
            params = [new, v, old]
        self._exec(c, f"UPDATE chaos.items SET id = %s{extra} WHERE id = %s", params)
        self._touch(c, "chaos.items", (old,), (new,))

    # -- docs (TOAST) ----------------------------------------------------------------------

    def _doc_big(self) -> dict[str, object]:
        r = self.rng
        return {
            "body": "본문 " + md5_chain(r, r.randint(140, 300)),
            "blob": bytes.fromhex(md5_chain(r, r.randint(160, 300))),
            "tags": [md5_chain(r, 1) for _ in range(r.randint(110, 160))],
            "nums": [r.randint(-(2**31), 2**31 - 1) for _ in range(r.randint(1100, 1600))],
            "refs": [uuid.UUID(int=r.getrandbits(128)) for _ in range(r.randint(280, 400))],
            "meta": json.dumps({"chain": md5_chain(r, r.randint(140, 220)), "n": r.randint(0, 99)}),
        }

    def _doc_small(self) -> dict[str, object]:
        r = self.rng
        return {
            "body": rand_text(r),
            "blob": r.randbytes(8),
            "tags": [rand_text(r, 0, 4)],
            "nums": [r.randint(0, 9)],
            "refs": [uuid.UUID(int=r.getrandbits(128))],
            "meta": rand_json_text(r),
        }

    def _insert_doc(self, c: Conn, key: int, big: bool = True) -> None:
        v = self._doc_big() if big else self._doc_small()
        self._exec(
            c,
            """INSERT INTO chaos.docs (id, counter, title, body, blob, tags, nums, refs, meta)
                         VALUES (%s, %s, %s, %s, %s, %s::text[], %s::int[], %s::uuid[], %s::jsonb)""",
            [
                key,
                self.rng.randint(0, 9),
                rand_text(self.rng),
                v["body"],
                v["blob"],
                v["tags"],
                v["nums"],
                v["refs"],
                v["meta"],
            ],
        )
        self._touch(c, "chaos.docs", (key,))

    def op_doc_insert(self, c: Conn) -> None:
        self._insert_doc(c, self.next_doc, big=self.rng.random() < 0.8)
        self.next_doc += 1

    def op_doc_touch(self, c: Conn) -> None:
        """Update without touching the big columns: unchanged-TOAST placeholders in the event."""
        keys = self._keys(c, "chaos.docs")
        if not keys:
            return self.op_doc_insert(c)
        for (k,) in self.rng.sample(keys, min(len(keys), self.rng.choice([1, 2, 4]))):
            if self.rng.random() < 0.5:
                self._exec(c, "UPDATE chaos.docs SET counter = counter + 1 WHERE id = %s", [k])
            else:
                self._exec(
                    c,
                    "UPDATE chaos.docs SET title = %s, counter = %s WHERE id = %s",
                    [rand_text(self.rng), self.rng.randint(0, 999), k],
                )
            self._touch(c, "chaos.docs", (k,))

    def op_doc_rewrite(self, c: Conn) -> None:
        """Replace some big values (the others stay unchanged: placeholders for those)."""
        keys = self._keys(c, "chaos.docs")
        if not keys:
            return self.op_doc_insert(c)
        (k,) = self.rng.choice(keys)
        v = self._doc_big() if self.rng.random() < 0.7 else self._doc_small()
        cols = self.rng.sample(list(v), self.rng.randint(1, 3))
        casts = {"tags": "::text[]", "nums": "::int[]", "refs": "::uuid[]", "meta": "::jsonb"}
        sets = ", ".join(f"{col} = %s{casts.get(col, '')}" for col in cols)
        self._exec(c, f"UPDATE chaos.docs SET {sets} WHERE id = %s", [*(v[col] for col in cols), k])
        self._touch(c, "chaos.docs", (k,))

    def op_doc_pk_change(self, c: Conn) -> None:
        """Key change of rows with TOASTed values: the c half carries placeholders (spec §5.5)."""
        keys = self._keys(c, "chaos.docs")
        if len(keys) < 2:
            return self.op_doc_insert(c)
        kind = self.rng.choice(["move", "move", "move_touch", "swap", "chain", "multi"])
        if kind in ("move", "move_touch"):
            (old,) = self.rng.choice(keys)
            new = self._doc_key_for_move(c)
            self._exec(c, "UPDATE chaos.docs SET id = %s WHERE id = %s", [new, old])
            self._touch(c, "chaos.docs", (old,), (new,))
            if kind == "move_touch":
                self._exec(c, "UPDATE chaos.docs SET counter = counter + 100 WHERE id = %s", [new])
        elif kind == "swap":
            (x,), (y,) = self.rng.sample(keys, 2)
            tmp = self.next_doc
            self.next_doc += 1
            for new, old in ((tmp, x), (x, y), (y, tmp)):
                self._exec(c, "UPDATE chaos.docs SET id = %s WHERE id = %s", [new, old])
            self._touch(c, "chaos.docs", (x,), (y,), (tmp,))
        elif kind == "chain":
            (old,) = self.rng.choice(keys)
            mid, new = self.next_doc, self.next_doc + 1
            self.next_doc += 2
            self._exec(c, "UPDATE chaos.docs SET id = %s WHERE id = %s", [mid, old])
            self._exec(c, "UPDATE chaos.docs SET id = %s, counter = counter - 1 WHERE id = %s", [new, mid])
            self._touch(c, "chaos.docs", (old,), (mid,), (new,))
        else:  # several key changes in one statement
            chosen = [k for (k,) in self.rng.sample(keys, min(3, len(keys)))]
            moves = {k: self.next_doc + i for i, k in enumerate(chosen)}
            self.next_doc += len(chosen)
            cases = " ".join(f"WHEN {old} THEN {new}" for old, new in moves.items())
            self._exec(c, f"UPDATE chaos.docs SET id = CASE id {cases} END WHERE id = ANY(%s)", [chosen])
            self._touch(c, "chaos.docs", *((k,) for k in chosen), *((v,) for v in moves.values()))
        self._count(f"doc_pk_{kind}")

    def _doc_key_for_move(self, c: Conn) -> int:
        """A fresh key, or a key deleted earlier (the state holds its tombstone)."""
        if self.rng.random() < 0.4:
            visible = {k for (k,) in c.conn.execute("SELECT id FROM chaos.docs").fetchall()}
            gone = [k for k in range(1, 30) if k not in visible and self._free(c, "chaos.docs", (k,))]
            if gone:
                return self.rng.choice(gone)
        self.next_doc += 1
        return self.next_doc - 1

    def op_doc_delete(self, c: Conn) -> None:
        keys = self._keys(c, "chaos.docs")
        if len(keys) < 4:
            return self.op_doc_insert(c)
        (k,) = self.rng.choice(keys)
        self._exec(c, "DELETE FROM chaos.docs WHERE id = %s", [k])
        self._touch(c, "chaos.docs", (k,))
        if self.rng.random() < 0.5:  # delete and re-insert the same key in the same transaction
            self._insert_doc(c, k, big=self.rng.random() < 0.7)
            self._count("doc_reinsert_same_tx")

    def op_doc_reinsert_later(self, c: Conn) -> None:
        visible = {k for (k,) in c.conn.execute("SELECT id FROM chaos.docs").fetchall()}
        gone = [k for k in range(1, 30) if k not in visible and self._free(c, "chaos.docs", (k,))]
        if not gone:
            return self.op_doc_delete(c)
        self._insert_doc(c, self.rng.choice(gone), big=self.rng.random() < 0.7)

    # -- pairs (composite key, REPLICA IDENTITY FULL) ---------------------------------------

    def _insert_pair(self, c: Conn, key: tuple | None = None) -> None:
        if key is None:
            key = (self.rng.choice(TENANTS), self.next_seq)
            self.next_seq += 1
        big = md5_chain(self.rng, 160) if self.rng.random() < 0.2 else None
        self._exec(
            c,
            "INSERT INTO chaos.pairs (tenant, seq, val, note, amount, big) VALUES (%s, %s, %s, %s, %s, %s)",
            [
                key[0],
                key[1],
                self.rng.randint(-99, 99),
                rand_text(self.rng),
                rand_decimal(self.rng, 8, 2),
                big,
            ],
        )
        self._touch(c, "chaos.pairs", key)

    def op_pair_insert(self, c: Conn) -> None:
        for _ in range(self.rng.choice([1, 3])):
            self._insert_pair(c)

    def op_pair_update(self, c: Conn) -> None:
        keys = self._keys(c, "chaos.pairs")
        if not keys:
            return self.op_pair_insert(c)
        k = self.rng.choice(keys)
        if self.rng.random() < 0.5:
            self._exec(
                c,
                "UPDATE chaos.pairs SET val = val + 1, note = %s WHERE tenant = %s AND seq = %s",
                [rand_text(self.rng), *k],
            )
        else:
            self._exec(
                c,
                "UPDATE chaos.pairs SET amount = %s, big = %s WHERE tenant = %s AND seq = %s",
                [
                    None if self.rng.random() < 0.2 else rand_decimal(self.rng, 8, 2),
                    md5_chain(self.rng, 150) if self.rng.random() < 0.3 else None,
                    *k,
                ],
            )
        self._touch(c, "chaos.pairs", k)

    def op_pair_delete(self, c: Conn) -> None:
        keys = self._keys(c, "chaos.pairs")
        if len(keys) < 5:
            return self.op_pair_insert(c)
        k = self.rng.choice(keys)
        self._exec(c, "DELETE FROM chaos.pairs WHERE tenant = %s AND seq = %s", list(k))
        self._touch(c, "chaos.pairs", k)
        if self.rng.random() < 0.4:
            self._insert_pair(c, k)
            self._count("pair_reinsert_same_tx")

    def op_pair_pk_change(self, c: Conn) -> None:
        keys = self._keys(c, "chaos.pairs")
        if not keys:
            return self.op_pair_insert(c)
        old = self.rng.choice(keys)
        if self.rng.random() < 0.5:
            new = (self.rng.choice([t for t in TENANTS if t != old[0]]), old[1])
            if (
                not self._free(c, "chaos.pairs", new)
                or c.conn.execute(
                    "SELECT 1 FROM chaos.pairs WHERE tenant = %s AND seq = %s", list(new)
                ).fetchone()
            ):
                new = (old[0], self.next_seq)
                self.next_seq += 1
        else:
            new = (old[0], self.next_seq)
            self.next_seq += 1
        self._exec(
            c, "UPDATE chaos.pairs SET tenant = %s, seq = %s WHERE tenant = %s AND seq = %s", [*new, *old]
        )
        self._touch(c, "chaos.pairs", old, new)

    # -- evolve (schema changes, truncate) -------------------------------------------------

    def _insert_evolve(self, c: Conn, key: int) -> None:
        names = ["id", "a"] + (["b"] if "b" not in self.dropped["chaos.evolve"] else [])
        values: list[object] = [key, self.rng.randint(-(2**31), 2**31 - 1)] + [rand_text(self.rng)] * (
            len(names) - 2
        )
        names += ["w", "n"]
        values += [
            rand_text(self.rng, 0, 24 if self.evolve_types_widened else 6),
            rand_decimal(self.rng, 5, 4 if self.evolve_types_widened else 2),
        ]
        names += [n for n, _ in self.evolve_cols]
        for _, kind in self.evolve_cols:
            values.append(self._evolve_value(kind))
        self._exec(
            c,
            f"INSERT INTO chaos.evolve ({', '.join(names)}) VALUES ({', '.join(['%s'] * len(names))})",
            values,
        )
        self._touch(c, "chaos.evolve", (key,))

    def _evolve_value(self, kind: str) -> object:
        # columns with a constant DEFAULT never get NULL: the sink writes a NULL of such a column as
        # the default (AvroData + Struct.get, spec pitfall 15), so NULL is not representable there
        if kind in ("default", "not_null_default"):
            return self.rng.randint(0, 99)
        if kind == "text_default":
            return rand_text(self.rng, 0, 6)
        return None if self.rng.random() < 0.3 else rand_text(self.rng, 0, 6)

    def op_evolve_insert(self, c: Conn) -> None:
        self._insert_evolve(c, self.next_evolve)
        self.next_evolve += 1

    def op_evolve_update(self, c: Conn) -> None:
        keys = self._keys(c, "chaos.evolve")
        if not keys:
            return self.op_evolve_insert(c)
        (k,) = self.rng.choice(keys)
        sets, params = ["a = %s"], [self.rng.randint(-(2**31), 2**31 - 1)]
        for name, kind in self.evolve_cols:
            if self.rng.random() < 0.5:
                sets.append(f"{name} = %s")
                params.append(self._evolve_value(kind))
        self._exec(c, f"UPDATE chaos.evolve SET {', '.join(sets)} WHERE id = %s", [*params, k])
        self._touch(c, "chaos.evolve", (k,))

    def op_evolve_delete(self, c: Conn) -> None:
        keys = self._keys(c, "chaos.evolve")
        if len(keys) < 3:
            return self.op_evolve_insert(c)
        (k,) = self.rng.choice(keys)
        self._exec(c, "DELETE FROM chaos.evolve WHERE id = %s", [k])
        self._touch(c, "chaos.evolve", (k,))

    # DDL: only while neither connection has a transaction open (ACCESS EXCLUSIVE locks)

    # PostgreSQL shows an added column's constant DEFAULT in every existing row without writing
    # them (no change events): the lake has it only in the schema of the first events carrying the
    # column. No backfill here: rows never touched afterwards must show the default.
    ADD_KINDS = {
        "nullable": "text",
        "default": "integer DEFAULT 42",
        "not_null_default": "integer NOT NULL DEFAULT 7",
        "text_default": "text DEFAULT 'n/a 기본'",
    }

    def ddl_add_column(self, kind: str | None = None, name: str | None = None) -> None:
        c = self.a
        if name is None:
            name = f"added_{self.next_col}"
            self.next_col += 1
        kind = kind or self.rng.choice(list(self.ADD_KINDS))
        self._exec(c, "BEGIN")
        self._exec(c, f"ALTER TABLE chaos.evolve ADD COLUMN {name} {self.ADD_KINDS[kind]}")
        self.evolve_cols.append((name, kind))
        self._insert_evolve(c, self.next_evolve)  # the new column reaches the lake now
        self.next_evolve += 1
        self._exec(c, "COMMIT")
        self.dropped["chaos.evolve"].discard(name)
        self._count(f"ddl_add_{kind}")

    def ddl_add_nullable(self) -> None:
        self.ddl_add_column("nullable")

    def ddl_add_default(self) -> None:
        self.ddl_add_column("default")

    def ddl_add_not_null_default(self) -> None:
        self.ddl_add_column("not_null_default")

    def ddl_set_default(self) -> None:
        """A new default for a column that already has rows: existing rows keep the old one."""
        with_default = [n for n, k in self.evolve_cols if k in ("default", "not_null_default")]
        if not with_default:
            return self.ddl_add_column("default")
        name = self.rng.choice(with_default)
        if self.before_set_default is not None:
            self.before_set_default()
        self._exec(self.a, f"ALTER TABLE chaos.evolve ALTER COLUMN {name} SET DEFAULT 1234")
        self._exec(self.a, f"INSERT INTO chaos.evolve (id, a) VALUES ({self.next_evolve}, 1)")  # takes 1234
        self._touch(self.a, "chaos.evolve", (self.next_evolve,))
        self.next_evolve += 1
        self._count("ddl_set_default")

    def ddl_drop_column(self, name: str | None = None) -> None:
        c = self.a
        candidates = [n for n, _ in self.evolve_cols] + (
            ["b"] if "b" not in self.dropped["chaos.evolve"] else []
        )
        if not candidates:
            return self.ddl_add_column()
        name = name or self.rng.choice(candidates)
        self._exec(c, f"ALTER TABLE chaos.evolve DROP COLUMN {name}")
        self.dropped["chaos.evolve"].add(name)
        self.evolve_cols = [(n, k) for n, k in self.evolve_cols if n != name]
        # the lake sees a drop only with the table's next change (its schema lacks the column);
        # without one nothing downstream can know (docs/schema-changes.md)
        self.op_evolve_update(c)
        self._count("ddl_drop")

    def ddl_drop_readd(self) -> None:
        """Drop a column and add one of the same name again: a new column, old values never return."""
        if not self.evolve_cols:
            self.ddl_add_column()
            self.op_evolve_update(self.a)
        name = self.rng.choice([n for n, _ in self.evolve_cols])
        self.ddl_drop_column(name)  # an event between the two schema versions
        self.ddl_add_column(self.rng.choice(["default", "text_default"]), name=name)

    def ddl_widen_types(self) -> None:
        """Type changes PostgreSQL makes in place: varchar(6) -> varchar(40), numeric(8,2) -> (12,4)."""
        if self.evolve_types_widened:
            return self.ddl_add_column()
        c = self.a
        self._exec(c, "ALTER TABLE chaos.evolve ALTER COLUMN w TYPE varchar(40)")
        self._exec(c, "ALTER TABLE chaos.evolve ALTER COLUMN n TYPE numeric(12,4)")
        self.evolve_types_widened = True
        self._exec(
            c,
            "UPDATE chaos.evolve SET w = %s, n = %s WHERE id = (SELECT max(id) FROM chaos.evolve)",
            [rand_text(self.rng, 7, 30), rand_decimal(self.rng, 5, 4)],
        )
        self._count("ddl_widen_types")

    def ddl_widen_value(self) -> None:
        if self.evolve_a_widened:
            return self.ddl_add_column()
        c = self.a
        self._exec(c, "ALTER TABLE chaos.evolve ALTER COLUMN a TYPE bigint")
        self._exec(
            c,
            "UPDATE chaos.evolve SET a = a * 4 WHERE id IN (SELECT id FROM chaos.evolve ORDER BY id LIMIT 3)",
        )  # values past int32 only fit after the widening
        self.evolve_a_widened = True
        self._count("ddl_widen_value")

    def ddl_widen_key(self) -> None:
        if self.pairs_seq_widened:
            return self.ddl_add_column()
        c = self.a
        self._exec(c, "ALTER TABLE chaos.pairs ALTER COLUMN seq TYPE bigint")  # a key column
        self.next_seq = max(self.next_seq, 3_000_000_000)
        self._insert_pair(c)
        self.pairs_seq_widened = True
        self._count("ddl_widen_key")

    def ddl_truncate(self) -> None:
        c = self.a
        kind = self.rng.choice(["alone", "in_tx", "two_tables"])
        if kind == "alone":
            self._exec(c, "TRUNCATE chaos.evolve")
            for _ in range(self.rng.randint(1, 4)):
                self.op_evolve_insert(c)
        elif kind == "in_tx":  # changes before the truncate in the same transaction are gone too
            self._exec(c, "BEGIN")
            self.op_evolve_insert(c)
            self.op_evolve_update(c)
            self._exec(c, "TRUNCATE chaos.evolve")
            self._insert_evolve(c, 1)  # a key that existed before
            self.op_evolve_insert(c)
            self._exec(c, "COMMIT")
        else:
            self._exec(c, "TRUNCATE chaos.evolve, chaos.pairs")
            self._insert_evolve(c, 2)
            for _ in range(self.rng.randint(1, 5)):
                self._insert_pair(c)
        self._count(f"ddl_truncate_{kind}")

    def ddl_identity_full(self) -> None:
        """items switches to REPLICA IDENTITY FULL mid-stream (no placeholders from then on)."""
        self._exec(self.a, "ALTER TABLE chaos.items REPLICA IDENTITY FULL")
        self.op_item_update(self.a)
        self._count("ddl_identity_full")

    def ddl_enum_value(self) -> None:
        added = [m for m in MOOD_ADDED if m not in self.moods]
        if not added:
            return self.ddl_add_column()
        self._exec(self.a, f"ALTER TYPE chaos.mood ADD VALUE '{added[0]}'")
        self.moods.append(added[0])
        self._exec(
            self.a,
            "UPDATE chaos.items SET c_mood = %s WHERE id = (SELECT min(id) FROM chaos.items)",
            [added[0]],
        )
        self._count("ddl_enum")

    # -- the random walk -------------------------------------------------------------------

    DML = [
        ("op_item_insert", 6),
        ("op_item_update", 10),
        ("op_item_delete", 3),
        ("op_item_reinsert_later", 2),
        ("op_item_pk_change", 2),
        ("op_doc_insert", 2),
        ("op_doc_touch", 10),
        ("op_doc_rewrite", 3),
        ("op_doc_pk_change", 4),
        ("op_doc_delete", 2),
        ("op_doc_reinsert_later", 2),
        ("op_pair_insert", 4),
        ("op_pair_update", 5),
        ("op_pair_delete", 2),
        ("op_pair_pk_change", 3),
        ("op_evolve_insert", 2),
        ("op_evolve_update", 3),
        ("op_evolve_delete", 1),
    ]
    DDL = [
        ("ddl_add_column", 3),
        ("ddl_drop_column", 2),
        ("ddl_truncate", 2),
        ("ddl_widen_value", 1),
        ("ddl_enum_value", 1),
    ]
    # every seed runs each of these once, spread over its phases (see plan_ddl)
    REQUIRED_DDL = [
        "ddl_add_nullable",
        "ddl_add_default",
        "ddl_add_not_null_default",
        "ddl_set_default",
        "ddl_drop_column",
        "ddl_drop_readd",
        "ddl_widen_value",
        "ddl_widen_types",
        "ddl_widen_key",
        "ddl_truncate",
        "ddl_enum_value",
        "ddl_identity_full",
    ]

    def plan_ddl(self, phases: int) -> list[list[str]]:
        """The required DDL steps, in a random order, dealt to random phases."""
        plan: list[list[str]] = [[] for _ in range(phases)]
        for name in self.rng.sample(self.REQUIRED_DDL, len(self.REQUIRED_DDL)):
            plan[self.rng.randrange(phases)].append(name)
        return plan

    def run(self, statements: int, ddl: list[str] = (), random_ddl: bool = True) -> None:
        """About ``statements`` random steps with the named DDL steps at random points in between;
        ends with both connections idle."""
        start = self.stats.statements
        due = sorted(self.rng.randrange(max(statements, 1)) for _ in ddl)
        pending = list(ddl)
        while self.stats.statements - start < statements or pending:
            if pending and due[len(ddl) - len(pending)] <= self.stats.statements - start:
                self.settle()
                getattr(self, pending.pop(0))()
                continue
            self.step(random_ddl)
        self.settle()

    def step(self, random_ddl: bool = True) -> None:
        r = self.rng
        if random_ddl and not self.a.in_tx and not self.b.in_tx and r.random() < 0.03:
            name = r.choices([n for n, _ in self.DDL], [w for _, w in self.DDL])[0]
            getattr(self, name)()
            return
        c = self.a if r.random() < 0.55 else self.b
        if c.in_tx:
            x = r.random()
            end = min(0.05 + 0.03 * c.tx_statements, 0.5)
            if x < end * 0.8:
                self._exec(c, "COMMIT")
                self._end(c)
                self.stats.commits += 1
                return
            if x < end:
                self._exec(c, "ROLLBACK")
                self._end(c)
                self.stats.rollbacks += 1
                return
            if not c.savepoint and r.random() < 0.05:
                self._exec(c, "SAVEPOINT sp")
                c.savepoint = True
            elif c.savepoint and r.random() < 0.15:
                self._exec(c, r.choice(["ROLLBACK TO SAVEPOINT sp", "RELEASE SAVEPOINT sp"]))
                self.stats.savepoint_rollbacks += 1
                c.savepoint = False
        elif r.random() < 0.45:
            self._exec(c, "BEGIN")
            c.in_tx = True
            c.tx_statements = 0
        name = r.choices([n for n, _ in self.DML], [w for _, w in self.DML])[0]
        self._count(name)
        getattr(self, name)(c)

    def _end(self, c: Conn) -> None:
        c.in_tx, c.touched, c.tx_statements, c.savepoint = False, set(), 0, False

    def settle(self) -> None:
        """Close open transactions (in random order; mostly commit)."""
        for c in self.rng.sample([self.a, self.b], 2):
            if c.in_tx:
                if self.rng.random() < 0.85:
                    self._exec(c, "COMMIT")
                    self.stats.commits += 1
                else:
                    self._exec(c, "ROLLBACK")
                    self.stats.rollbacks += 1
                self._end(c)

    def burst(self) -> None:
        """One large transaction (hundreds of events across tables), both connections idle:
        placeholders for every doc, a new row for every item, an update of every pair."""
        self.settle()
        c = self.a
        self._exec(c, "BEGIN")
        self._exec(c, "UPDATE chaos.docs SET counter = counter + 1")
        self._exec(
            c, "UPDATE chaos.items SET c_int = (id * 7919) % 1000003, c_bool = NOT coalesce(c_bool, false)"
        )
        self._exec(c, "UPDATE chaos.pairs SET val = coalesce(val, 0) - 1")
        for _ in range(self.rng.randint(40, 80)):
            self._insert_pair(c)
            self.op_evolve_insert(c)
        self._exec(c, "COMMIT")
        self._end(c)
        self._count("burst")

    def big_transaction(self) -> None:
        """One transaction of thousands of events on the rows already there (the state does not
        grow): every pair and evolve row updated again and again, every doc now and then."""
        self.settle()
        c = self.a
        self._exec(c, "BEGIN")
        for i in range(self.rng.randint(10, 16)):
            self._exec(c, "UPDATE chaos.pairs SET val = coalesce(val, 0) + 1")
            self._exec(c, "UPDATE chaos.evolve SET a = coalesce(a, 0) - 1")
            if i % 4 == 0:
                self._exec(c, "UPDATE chaos.docs SET counter = counter + 1")
        self._exec(c, "COMMIT")
        self._end(c)
        self._count("big_transaction")
