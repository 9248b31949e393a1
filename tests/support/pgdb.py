"""Test databases on the throwaway PostgreSQL cluster."""

from __future__ import annotations


def drop_database(pg_cluster, name: str) -> None:
    """Drop a test database with its replication slots (a walsender may linger after a capture)."""
    import time

    import psycopg

    with psycopg.connect(pg_cluster.dsn(), autocommit=True) as conn:
        for _ in range(20):  # a walsender may still be attached for a moment after a capture exits
            conn.execute(
                "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
                "WHERE database = %s AND active_pid IS NOT NULL",
                (name,),
            )
            try:
                for (slot,) in conn.execute(
                    "SELECT slot_name FROM pg_replication_slots WHERE database = %s", (name,)
                ).fetchall():
                    conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
                break
            except psycopg.errors.ObjectInUse:
                time.sleep(0.5)
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
