"""Checks before the JVM starts, so a bad setup fails in a second with a message a person can act on.

Nothing here prints or logs the password of the DSN.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg
from psycopg import conninfo


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

    def describe(self) -> str:
        return f"{self.user}@{self.host}:{self.port}/{self.dbname}"


def parse_dsn(dsn: str) -> dict[str, str]:
    try:
        params = conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        # libpq's message quotes the offending text, which may be the password
        raise CaptureSetupError("the DSN could not be parsed as a PostgreSQL connection string "
                                "(key=value pairs or a postgresql:// URI; check quoting)") from None
    return {k: str(v) for k, v in params.items() if v is not None}


def check_source(dsn: str, tables: tuple[str, ...] = ()) -> Source:
    """Connect, check ``wal_level``, resolve and check the tables; return what Debezium needs."""
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
        wal_level = conn.execute("SHOW wal_level").fetchone()[0]
        if wal_level != "logical":
            raise CaptureSetupError(
                f"PostgreSQL at {where} has wal_level={wal_level}; Debezium needs wal_level=logical "
                "(ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL)")
        rows = conn.execute("""
            SELECT n.nspname || '.' || c.relname AS name,
                   EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary) AS has_pk
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind IN ('r', 'p')
              AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_%'
            ORDER BY 1""").fetchall()
        # Debezium connects over TCP: a Unix-socket DSN means this machine
        host = "127.0.0.1" if conn.info.host.startswith("/") else conn.info.host
        port = conn.info.port
        user = conn.info.user
        dbname = conn.info.dbname
        # the password libpq actually used: from the DSN, PGPASSWORD or ~/.pgpass (pgjdbc reads none
        # of the latter two, so Debezium gets it explicitly)
        password = conn.info.password or ""
    known = {name: (has_pk,) for name, has_pk in rows}
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
            "with --tables")
    return Source(host=host, port=port, user=user, password=password, dbname=dbname, tables=tuple(wanted))
