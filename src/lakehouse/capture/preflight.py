"""Checks before the JVM starts, so a bad setup fails in a second with a message a person can act on.

Nothing here prints or logs the password of the DSN.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import psycopg
from psycopg import conninfo

from lakehouse.lake.names import avro_field_name, debezium_topic


class CaptureSetupError(RuntimeError):
    """The source database cannot be captured as configured."""


@dataclass(frozen=True)
class Source:
    host: str
    port: int
    user: str
    dbname: str
    tables: tuple[str, ...]  # schema.table, all with a primary key
    password: str = field(default="", repr=False)
    table_ids: tuple[tuple[str, str], ...] = ()  # (schema, table) of each entry of ``tables``
    # which database this is: the cluster's pg_control_system().system_identifier and the
    # database's oid (a dropped and re-created database is another one)
    system_identifier: str = ""
    database_oid: int = 0

    def describe(self) -> str:
        return f"{self.user}@{self.host}:{self.port}/{self.dbname}"


def parse_dsn(dsn: str) -> dict[str, str]:
    try:
        params = conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        # libpq's message quotes the offending text, which may be the password
        raise CaptureSetupError(
            "the DSN could not be parsed as a PostgreSQL connection string "
            "(key=value pairs or a postgresql:// URI; check quoting)"
        ) from None
    return {k: str(v) for k, v in params.items() if v is not None}


def check_source(dsn: str, tables: tuple[str, ...] = (), topic_prefix: str | None = None) -> Source:
    """Connect, check ``wal_level``, resolve and check the tables; return what Debezium needs.
    With ``topic_prefix``, tables whose topics Debezium would make equal (names differing only in
    characters a topic cannot hold) are refused, and so are columns whose Avro field names would."""
    p = parse_dsn(dsn)
    where = f"{p.get('user', 'postgres')}@{p.get('host', 'localhost')}:{p.get('port', '5432')}/{p.get('dbname', '')}"
    try:
        conn = psycopg.connect(dsn, connect_timeout=10, autocommit=True)
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        if p.get("password"):
            reason = reason.replace(p["password"], "***")
        raise CaptureSetupError(f"cannot connect to PostgreSQL at {where}: {reason}") from None
    with conn:
        wal_level = conn.execute("SHOW wal_level").fetchone()[0]  # type: ignore[index]
        if wal_level != "logical":
            raise CaptureSetupError(
                f"PostgreSQL at {where} has wal_level={wal_level}; Debezium needs wal_level=logical "
                "(ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL)"
            )
        rows = conn.execute("""
            SELECT n.nspname || '.' || c.relname AS name,
                   EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary) AS has_pk,
                   n.nspname, c.relname,
                   ARRAY(SELECT a.attname::text FROM pg_attribute a
                         WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                         ORDER BY a.attnum) AS columns
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind IN ('r', 'p')
              AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_%'
            ORDER BY 1""").fetchall()
        system_identifier, database_oid = _database_identity(conn, dsn)
        # Debezium connects over TCP: a Unix-socket DSN means this machine
        host = "127.0.0.1" if conn.info.host.startswith("/") else conn.info.host
        port = conn.info.port
        user = conn.info.user
        dbname = conn.info.dbname
        # the password libpq actually used: from the DSN, PGPASSWORD or ~/.pgpass (pgjdbc reads none
        # of the latter two, so Debezium gets it explicitly)
        password = conn.info.password or ""
    known = {name: (has_pk, (schema, table), tuple(columns)) for name, has_pk, schema, table, columns in rows}
    wanted = tables or tuple(known)
    missing = [t for t in wanted if t not in known]
    if missing:
        raise CaptureSetupError(f"tables not found in {where}: {', '.join(missing)}")
    if not wanted:
        raise CaptureSetupError(f"no tables to capture in {where}")
    no_key = [t for t in wanted if not known[t][0]]
    if no_key:
        raise CaptureSetupError(
            f"table(s) without a primary key in {where}: {', '.join(no_key)}. Debezium gives them null "
            "Kafka keys and the lake could not identify their rows; add a primary key or leave them out "
            "with --tables"
        )
    if topic_prefix is not None:
        _check_names(where, topic_prefix, [(t, *known[t][1:]) for t in wanted])
    return Source(
        host=host,
        port=port,
        user=user,
        password=password,
        dbname=dbname,
        tables=tuple(wanted),
        table_ids=tuple(known[t][1] for t in wanted),
        system_identifier=system_identifier,
        database_oid=database_oid,
    )


def _database_identity(conn: psycopg.Connection, dsn: str) -> tuple[str, int]:
    """(cluster system identifier, database oid). ``pg_control_system()`` is open to every role on
    PostgreSQL 15; where a service revokes it, the replication protocol's IDENTIFY_SYSTEM (the
    capture's role has REPLICATION anyway) gives the same number."""
    oid = conn.execute("SELECT oid FROM pg_database WHERE datname = current_database()").fetchone()[0]  # type: ignore[index]
    try:
        with conn.transaction():
            return str(conn.execute("SELECT system_identifier FROM pg_control_system()").fetchone()[0]), int(  # type: ignore[index]
                oid
            )
    except psycopg.Error:
        pass
    try:
        with psycopg.connect(dsn, connect_timeout=10, autocommit=True, replication="database") as rep:
            res = rep.pgconn.exec_(b"IDENTIFY_SYSTEM")
            if res.ntuples == 1 and res.get_value(0, 0):
                return res.get_value(0, 0).decode(), int(oid)  # type: ignore[union-attr]
    except psycopg.Error:
        pass
    raise CaptureSetupError(
        "cannot tell which PostgreSQL cluster this is (pg_control_system() and "
        "IDENTIFY_SYSTEM both refused); the capture keys its offsets by it"
    )


def _check_names(where: str, prefix: str, tables: list[tuple[str, tuple[str, str], tuple[str, ...]]]) -> None:
    """Debezium turns names into topic and Avro field names by replacing characters (spaces,
    quotes, non-ASCII letters) with ``_``; two tables with one topic, or two columns of one table
    with one field name, cannot be captured (one topic would mix tables; Connect refuses a struct
    with a field twice)."""
    by_topic: dict[str, list[str]] = defaultdict(list)
    for name, (schema, table), _ in tables:
        by_topic[debezium_topic(prefix, schema, table)].append(name)
    clashes = {t: names for t, names in by_topic.items() if len(names) > 1}
    if clashes:
        topic, names = next(iter(sorted(clashes.items())))
        raise CaptureSetupError(
            f"tables {', '.join(repr(n) for n in names)} in {where} would all be written to topic {topic!r} "
            "(Debezium replaces characters a Kafka topic cannot hold with '_'): rename one or leave "
            "all but one out with --tables"
        )
    for name, _, columns in tables:
        by_field: dict[str, list[str]] = defaultdict(list)
        for col in columns:
            by_field[avro_field_name(col)].append(col)
        clash = next((cols for cols in by_field.values() if len(cols) > 1), None)
        if clash:
            raise CaptureSetupError(
                f"columns {', '.join(repr(c) for c in clash)} of table {name!r} in {where} would all "
                f"become the Avro field {avro_field_name(clash[0])!r} (Debezium replaces characters Avro "
                "names cannot hold with '_'): rename one, or leave the table out with --tables"
            )
