"""Column lifetimes: the columns ``SELECT *`` shows after ADD and DROP COLUMN, derived from the lake.

``ALTER TABLE`` emits no change event; the lake shows it only through the schema of the objects
written after it. Along a table's timeline (objects ordered by the commit time of their first event,
then Kafka position; Debezium decodes every change with the schema of its commit, so schema versions
never overlap in time):

* a column's **lifetime** starts with the first object that carries it. PostgreSQL shows a column
  added with ``DEFAULT <constant>`` in every existing row without writing them, so rows whose
  newest event is older than the column take the default of that first schema (a later
  ``SET DEFAULT`` does not touch existing rows); without a default, null. Volatile defaults
  (``now()``) are unknowable downstream: null (see :func:`lakehouse.lake.semantic.decode_default`);
* it ends with the first later object without the column (``DROP COLUMN``): the column leaves the
  table (``dropped_columns: drop``, like the source) or stays, null for rows changed after the drop
  (``dropped_columns: keep``);
* a column carried again after its end is a new column: every row shows the new default, old values
  never come back.

The lifetime of each column lives in the state's row schema (field metadata) and, for columns that
left the table, in the state metadata, so every run continues the same timeline.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import pyarrow as pa

from lakehouse.lake.reader import SchemaConflictError, widen
from lakehouse.lake.semantic import DEFAULT_META, field_default

SINCE_META = b"lakehouse.since_us"
UNTIL_META = b"lakehouse.until_us"
AFTER_META = b"lakehouse.after_us"
LAST_META = b"lakehouse.last_us"
_LIFE_META = (SINCE_META, UNTIL_META, AFTER_META, LAST_META)
DEFAULT = "default"  # fill modes of a column in an object's events
NULL = "null"


@dataclass
class Life:
    """One column's current lifetime on the timeline (commit times in epoch µs)."""

    field: pa.Field  # logical type and metadata (the default of the lifetime's first schema)
    since: int | None  # earliest object seen carrying it
    until: int | None = None  # the drop: first object after ``last`` without it
    after: int | None = None  # the end of the column's previous lifetime (dropped, then added again)
    last: int | None = None  # newest object seen carrying it

    @property
    def alive(self) -> bool:
        return self.until is None

    def default(self) -> pa.Array | None:
        return field_default(self.field)


@dataclass
class ObjectColumns:
    """What the timeline needs of one object: its time and its columns."""

    key: str
    time: int | None  # commit time of its first event (None: unknown, taken as the newest)
    fields: list[pa.Field]


@dataclass
class Timeline:
    lives: dict[str, Life]  # every column known, in table order (dropped ones included)
    fills: dict[str, dict[str, str]] = field(default_factory=dict)  # object -> column -> default|null
    started: list[str] = field(default_factory=list)  # columns whose lifetime began in this walk

    def row_fields(self, keep_dropped: bool) -> list[pa.Field]:
        """The table's columns: the living ones, plus the dropped ones when they are kept."""
        return [_with_life(life) for life in self.lives.values() if life.alive or keep_dropped]

    def dropped(self, keep_dropped: bool) -> dict[str, list[int | None]]:
        """Columns that left the table (recorded so a late old object cannot bring them back)."""
        if keep_dropped:
            return {}
        return {
            name: [life.since, life.until, life.after, life.last]
            for name, life in self.lives.items()
            if not life.alive
        }

    def resets(self) -> dict[str, pa.Array | None]:
        """Columns every state row must take anew (their lifetime began here): default or null."""
        return {name: self.lives[name].default() for name in self.started}


def lives_of(row_schema: pa.Schema | None, dropped: dict[str, list[int | None]] | None) -> dict[str, Life]:
    """The lifetimes recorded in a state (empty for a new one)."""
    lives: dict[str, Life] = {}
    for f in row_schema or ():
        meta = f.metadata or {}
        since, until, after, last = (_int(meta.get(k)) for k in _LIFE_META)
        lives[f.name] = Life(f, since, until, after, last)
    for name, times in (dropped or {}).items():
        if name not in lives:
            since, until, after, last = (list(times) + [None] * 4)[:4]
            lives[name] = Life(pa.field(name, pa.null()), since, until, after, last)
    return lives


def newest_time(lives: dict[str, Life]) -> int:
    """The latest time the timeline has reached (0 for none)."""
    return max(
        (
            t
            for life in lives.values()
            for t in (life.since, life.until, life.after, life.last)
            if t is not None
        ),
        default=0,
    )


def walk(
    topic: str, lives: dict[str, Life], objects: Iterable[ObjectColumns], key: Iterable[str]
) -> Timeline:
    """Continue the timeline over ``objects``; raises :class:`SchemaConflictError` when a living
    column changes type in a way PostgreSQL does not do in place (naming the object)."""
    out = Timeline(
        {
            name: Life(life.field, life.since, life.until, life.after, life.last)
            for name, life in lives.items()
        }
    )
    key_set = set(key)
    ordered = sorted(objects, key=lambda o: (o.time is None, o.time or 0))
    newest = newest_time(lives)
    times = []
    for obj in ordered:
        t = obj.time if obj.time is not None else newest
        newest = max(newest, t)
        times.append(t)
        present = {f.name: f for f in obj.fields}
        for name, f in present.items():
            if name in key_set:
                _carried_key(topic, out, obj, name, f, t)
            else:
                _carried(topic, out, obj, name, f, t)
        for name, life in out.lives.items():
            if (
                name not in present
                and name not in key_set
                and life.alive
                and life.last is not None
                and t > life.last
            ):
                life.until = t  # dropped: the first object after the newest carrier without it
    # with the lifetimes known, what each object's events hold for each column
    for obj, t in zip(ordered, times):
        names = {f.name for f in obj.fields}
        for name, life in out.lives.items():
            mode = _fill_mode(life, name in names, t) if name not in key_set else None
            if mode is not None:
                out.fills.setdefault(obj.key, {})[name] = mode
    return out


def _fill_mode(life: Life, present: bool, t: int) -> str | None:
    if life.after is not None and t < life.after:
        return DEFAULT  # from before this lifetime: the column did not exist yet (or was another one)
    if life.until is not None and t >= life.until:
        return NULL  # after the drop (a kept column)
    return None if present else DEFAULT  # own value, or an object older than the column


def _carried(topic: str, out: Timeline, obj: ObjectColumns, name: str, f: pa.Field, t: int) -> None:
    life = out.lives.get(name)
    if life is None or (not life.alive and t >= life.until):  # type: ignore[operator]  # added, or added again after a drop
        out.lives[name] = Life(_first_schema(f), t, after=None if life is None else life.until, last=t)
        if name not in out.started:
            out.started.append(name)
        return
    if (life.after is not None and t < life.after) or not life.alive:
        return  # an older lifetime of the name, or the dropped column's own values
    # objects of other Kafka partitions may come later and older: the lifetime reaches back to them
    life.since = t if life.since is None else min(life.since, t)
    life.last = t if life.last is None else max(life.last, t)
    _merge_type(topic, life, obj, name, f)


def _carried_key(topic: str, out: Timeline, obj: ObjectColumns, name: str, f: pa.Field, t: int) -> None:
    life = out.lives.get(name)
    if life is None:
        out.lives[name] = Life(_first_schema(f), t, last=t)
        return
    life.since = t if life.since is None else min(life.since, t)
    life.last = t if life.last is None else max(life.last, t)
    _merge_type(topic, life, obj, name, f)


def _merge_type(topic: str, life: Life, obj: ObjectColumns, name: str, f: pa.Field) -> None:
    if pa.types.is_null(life.field.type):
        life.field = _first_schema(f)
        return
    widened = widen(life.field.type, f.type)
    if widened is None:
        raise SchemaConflictError(topic, name, obj.key, life.field.type, f.type)
    # the newest metadata wins (enum values grow), the lifetime keeps its first default
    life.field = _keep_default(f.with_type(widened), life.field)


def _first_schema(f: pa.Field) -> pa.Field:
    meta = {k: v for k, v in (f.metadata or {}).items() if k not in _LIFE_META}
    return f.with_metadata(meta)


def _keep_default(new: pa.Field, old: pa.Field) -> pa.Field:
    meta = {k: v for k, v in (new.metadata or {}).items() if k != DEFAULT_META.encode()}
    old_default = (old.metadata or {}).get(DEFAULT_META.encode())
    if old_default is not None:
        meta[DEFAULT_META.encode()] = old_default
    return new.with_metadata(meta)


def _with_life(life: Life) -> pa.Field:
    meta = dict(life.field.metadata or {})
    for k, v in zip(_LIFE_META, (life.since, life.until, life.after, life.last), strict=True):
        if v is None:
            meta.pop(k, None)
        else:
            meta[k] = str(v).encode()
    return life.field.with_metadata(meta)


def _int(raw: bytes | None) -> int | None:
    return None if raw is None else int(raw)


def fill_column(n: int, value: pa.Array | None, type_: pa.DataType) -> pa.Array:
    """A column of ``n`` copies of a default (or nulls)."""
    if value is None or n == 0:
        return pa.nulls(n, type_)
    v = value if value.type == type_ else value.cast(type_)
    return pa.repeat(v[0], n)
