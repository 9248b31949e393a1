"""Find table topics in the lake that the tables config does not list, and add entries for them.

A topic's primary key comes from the lake's key companion files (``store.kafka.keys``) when the
sink stores them, else from the PostgreSQL catalog of a database given by DSN. The topic is
``<prefix>.<schema>.<table>`` with every character a topic cannot hold replaced by ``_``
(``"we ird"."Key Words"`` -> ``eco2.we_ird.Key_Words``), so the table is found by the real names
in the events' ``source`` block, else by the catalog table whose topic name is the topic's
(:func:`~lakehouse.lake.names.debezium_topic`). Topics with no key source are reported, never
written: a config entry without a key would only fail later, in compaction.

Entries are appended as text to the end of the YAML file, so its comments and layout stay as they
are; the result is loaded with :func:`~lakehouse.config.load_config` before it replaces the file.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import yaml

from lakehouse.config import ConfigError, TableConfig, TablesConfig, load_config
from lakehouse.lake.layout import LakeObjectError, is_non_table_topic
from lakehouse.lake.names import debezium_topic
from lakehouse.lake.reader import LakeListing, LakeReader

KEY_FILES = "key files"


class CatalogError(RuntimeError):
    """A PostgreSQL catalog could not be read (connection refused, bad DSN, no privileges)."""


@dataclass(frozen=True)
class Discovered:
    """A table topic of the lake that the config does not list."""

    topic: str
    primary_key: tuple[str, ...] | None
    source: str | None  # "key files" | "catalog <dbname>" | None (no key found)
    note: str = ""  # why no key was found (or what was skipped on the way)
    source_table: str | None = field(default=None, compare=False)  # schema.table as in the database

    @property
    def table(self) -> str:
        """``<schema>.<table>``: the source table's real name when known, else the topic without
        its prefix."""
        if self.source_table:
            return self.source_table
        parts = self.topic.split(".")
        return ".".join(parts[-2:]) if len(parts) >= 2 else self.topic

    def how_to_add(self, config_file: str | Path) -> str:
        """What to do for a topic without a key (the message names topic, file and key sources)."""
        return (
            f"topic {self.topic!r} has no known primary key ({self.note or 'no key source'}): add\n"
            f"  - topic: {self.topic}\n    primary_key: [<column>, ...]\n"
            f"under 'tables:' in {config_file}, or let the S3 sink store key files "
            f"(store.kafka.keys=true), or give the DSN of the PostgreSQL database holding {self.table} (--dsn)"
        )


# --------------------------------------------------------------------------------------------
# finding topics and keys
# --------------------------------------------------------------------------------------------


def unknown_topics(config: TablesConfig, reader_or_listing: LakeReader | LakeListing) -> list[str]:
    """Table topics in the lake (heartbeat, transaction and message topics are not tables) that
    the config does not list; sorted."""
    listing = reader_or_listing.scan() if isinstance(reader_or_listing, LakeReader) else reader_or_listing
    known = set(config.topics)
    return sorted(t for t in listing.topics if t not in known and not is_non_table_topic(t))


_PRIMARY_KEY_SQL = """
SELECT a.attname
FROM pg_catalog.pg_index i
JOIN pg_catalog.pg_class c ON c.oid = i.indrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
WHERE i.indisprimary AND n.nspname = %s AND c.relname = %s
ORDER BY k.ord
"""
_TABLE_EXISTS_SQL = """
SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')
"""


_TABLES_SQL = """
SELECT n.nspname, c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_%'
ORDER BY 1, 2
"""


def topic_matches(topic: str, schema: str, table: str) -> bool:
    """Whether Debezium names the topic of ``schema.table`` ``topic`` under some prefix: the
    topic ends with the sanitized ``.<schema>.<table>`` (characters are replaced one by one)."""
    tail = debezium_topic("", schema, table)  # ".<schema>.<table>", sanitized
    return len(topic) > len(tail) and topic.endswith(tail)


class PgCatalog:
    """Primary keys from one PostgreSQL database's catalog (connects on first use)."""

    def __init__(self, dsn: str):
        self.dsn = dsn
        self._conn = None
        self._tables: list[tuple[str, str]] | None = None
        import psycopg
        from psycopg.conninfo import conninfo_to_dict

        try:
            self.dbname = str(conninfo_to_dict(dsn).get("dbname") or "")
        except psycopg.Error:  # a bad DSN is reported when connecting
            self.dbname = ""

    @property
    def source(self) -> str:
        return f"catalog {self.dbname}" if self.dbname else "catalog"

    def _connection(self):
        if self._conn is None:
            import psycopg

            try:
                self._conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=10)
            except (psycopg.Error, ValueError) as exc:
                what = f"database {self.dbname!r}" if self.dbname else "the database"
                raise CatalogError(f"cannot read the PostgreSQL catalog of {what}: {exc}".strip()) from None
            self.dbname = self._conn.info.dbname
        return self._conn

    def primary_key(self, schema: str, table: str) -> tuple[tuple[str, ...] | None, str]:
        """(key columns in key order, or None; why None)."""
        import psycopg

        conn = self._connection()
        try:
            cols = tuple(r[0] for r in conn.execute(_PRIMARY_KEY_SQL, (schema, table)).fetchall())
            if cols:
                return cols, ""
            exists = conn.execute(_TABLE_EXISTS_SQL, (schema, table)).fetchone() is not None
        except psycopg.Error as exc:
            raise CatalogError(
                f"cannot read the PostgreSQL catalog of database {self.dbname!r}: {exc}"
            ) from None
        if exists:
            return None, f"{schema}.{table} has no primary key in database {self.dbname!r}"
        return None, f"no table {schema}.{table} in database {self.dbname!r}"

    def find_table(self, topic: str, source_table: str | None = None) -> tuple[tuple[str, str] | None, str]:
        """The (schema, table) of this database that ``topic`` carries, or None and why.
        ``source_table``: ``<schema>.<table>`` from the events' ``source`` block, the real names
        (they pick the table when several names map to one topic)."""
        import psycopg

        conn = self._connection()
        if self._tables is None:
            try:
                self._tables = [(r[0], r[1]) for r in conn.execute(_TABLES_SQL).fetchall()]
            except psycopg.Error as exc:
                raise CatalogError(
                    f"cannot read the PostgreSQL catalog of database {self.dbname!r}: {exc}"
                ) from None
        candidates = [t for t in self._tables if topic_matches(topic, *t)]
        if source_table:
            named = [t for t in candidates if f"{t[0]}.{t[1]}" == source_table]
            candidates = named or candidates
        parts = topic.split(".")
        plain = (parts[-2], parts[-1]) if len(parts) >= 3 else None
        if plain in candidates:
            return plain, ""
        if len(candidates) == 1:
            return candidates[0], ""
        if candidates:
            names = ", ".join(f"{s}.{t}" for s, t in candidates)
            return None, f"topic {topic} could be any of {names} in database {self.dbname!r}"
        what = source_table or (".".join(plain) if plain else topic)
        return None, f"no table {what} in database {self.dbname!r}"

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def discover(
    config: TablesConfig, reader: LakeReader, dsn: str | Sequence[str] | None = None
) -> list[Discovered]:
    """Every table topic of the lake missing from the config, with its primary key and where the
    key came from: the lake's key companion files first, else the catalog of the database(s) given
    by ``dsn`` (tried in order). Topics without a key are returned with ``primary_key=None`` and a
    note saying why. Raises :class:`CatalogError` if a catalog that is needed cannot be read."""
    listing = reader.scan()
    topics = unknown_topics(config, listing)
    dsns = [dsn] if isinstance(dsn, str) else list(dsn or ())
    catalogs = [PgCatalog(d) for d in dsns]
    found: list[Discovered] = []
    try:
        for topic in topics:
            notes: list[str] = []
            try:
                keys = reader.key_columns(topic, listing)
            except LakeObjectError as exc:
                keys = None
                notes.append(f"key companion {exc.key} is unreadable ({exc.reason})")
            if keys:
                found.append(Discovered(topic, tuple(keys), KEY_FILES))
                continue
            if not notes:
                notes.append("no key files in the lake")
            parts = topic.split(".")
            source_table = None
            if not catalogs:
                notes.append("no DSN given")
            elif len(parts) < 3:
                notes.append("topic is not <prefix>.<schema>.<table>, so no catalog lookup")
            else:
                source_table = _source_table(reader, listing, topic)
                for catalog in catalogs:
                    table, why = catalog.find_table(topic, source_table)
                    if table is not None:
                        keys, why = catalog.primary_key(*table)
                    if keys:
                        found.append(Discovered(topic, keys, catalog.source, source_table=".".join(table)))  # type: ignore[arg-type]
                        break
                    notes.append(why)
                else:
                    keys = None
            if not keys:
                found.append(Discovered(topic, None, None, "; ".join(notes), source_table=source_table))
    finally:
        for catalog in catalogs:
            catalog.close()
    return found


def _source_table(reader: LakeReader, listing: LakeListing, topic: str) -> str | None:
    """``<schema>.<table>`` as the topic's first object names it (Debezium's ``source`` block holds
    the real names; the topic only their sanitized form), or None when it cannot be read."""
    objects = listing.objects.get(topic) or []
    if not objects:
        return None
    try:
        plan = reader.plan(topic, objects[:1])
        narrow = pa.schema([plan.schema.field("__table")])
        for batch in reader.iter_object(objects[0], narrow, batch_size=1):
            if batch.num_rows:
                return batch.column(0)[0].as_py()
    except (LakeObjectError, ValueError, OSError):
        return None  # the reader reports unreadable objects where they matter (inspect, compact)
    return None


# --------------------------------------------------------------------------------------------
# writing entries
# --------------------------------------------------------------------------------------------

_PLAIN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")
_ITEM = re.compile(r"^([ \t]*)-[ \t]+topic[ \t]*:", re.MULTILINE)


def _scalar(value: str) -> str:
    """A YAML scalar that loads back as this exact string (quoted when plain would not)."""
    if _PLAIN.fullmatch(value):
        try:
            if yaml.safe_load(value) == value:
                return value
        except yaml.YAMLError:
            pass
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def entry_text(found: Discovered, indent: str = "  ") -> str:
    """The config entry of a discovered topic with a key, as YAML lines."""
    if not found.primary_key:
        raise ValueError(f"{found.topic}: no primary key, nothing to write")
    key = ", ".join(_scalar(c) for c in found.primary_key)
    return f"{indent}- topic: {_scalar(found.topic)}\n{indent}  primary_key: [{key}]\n"


def append_entries(
    path: str | Path, found: Iterable[Discovered], *, dry_run: bool = False
) -> tuple[list[Discovered], str]:
    """Append entries for the discovered topics that have a key and that the file does not list
    yet; returns (the entries added, the text appended). The new file must load with
    :func:`load_config` and hold the old entries plus exactly the new ones, else nothing is written
    and :class:`ConfigError` says what to add by hand. ``dry_run`` checks but does not write."""
    path = Path(path)
    current = load_config(path)
    known = set(current.topics)
    to_add: list[Discovered] = []
    for f in found:
        if f.primary_key and f.topic not in known:
            to_add.append(f)
            known.add(f.topic)
    if not to_add:
        return [], ""
    original = path.read_text(encoding="utf-8")
    items = _ITEM.findall(original)
    indent = items[-1] if items else "  "
    block = "".join(entry_text(f, indent) for f in to_add)
    text = original + ("" if not original or original.endswith("\n") else "\n") + block
    target = path.resolve()
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        try:
            result = load_config(tmp)
        except ConfigError as exc:
            raise ConfigError(_manual(path, block, str(exc).replace(str(tmp), str(path)))) from None
        expected = current.tables + tuple(
            TableConfig(topic=f.topic, primary_key=f.primary_key) for f in to_add
        )
        if result.tables != expected:
            raise ConfigError(_manual(path, block, "the appended lines would not be read as these entries"))
        if not dry_run:
            shutil.copymode(target, tmp)
            os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return to_add, block


def _manual(path: Path, block: str, why: str) -> str:
    return (
        f"{path}: cannot append the new entries automatically ({why}); "
        f"add these lines to its 'tables:' list by hand:\n{block}"
    )
