"""`lakehouse pg`: a throwaway PostgreSQL cluster for tests and demos."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated

import typer

from lakehouse.cli.common import out

app = typer.Typer(
    help="A throwaway PostgreSQL 15 cluster (wal_level=logical, loopback only) for "
    "tests and demos, from the machine's binaries.",
    no_args_is_help=True,
)


@app.command("start")
def pg_start(
    dir: Annotated[
        str, typer.Option("--dir", help="Cluster folder (created; reachable by the postgres user).")
    ],
    port: Annotated[int | None, typer.Option(help="Port (default: a free one).")] = None,
    eco2: Annotated[bool, typer.Option(help="Create the Eco2 auth and scan databases and tables.")] = True,
) -> None:
    """Start (creating if needed) a cluster and print its DSN."""
    from pathlib import Path

    from lakehouse.pg.cluster import PgCluster, free_port
    from lakehouse.pg.workload import create_databases, load_schema

    cluster = PgCluster(Path(dir).resolve(), port=port or free_port()).start()
    if eco2:
        create_databases(cluster.dsn())
        load_schema(cluster.dsn("auth"), "auth")
        load_schema(cluster.dsn("scan"), "scan")
    out.print(cluster.dsn())


@app.command("stop")
def pg_stop(
    dir: Annotated[str, typer.Option("--dir", help="Cluster folder given to `pg start`.")],
    remove: Annotated[bool, typer.Option(help="Delete the folder (data, WAL, replication slots).")] = True,
) -> None:
    """Stop a cluster started with `lakehouse pg start` (and remove it)."""
    from pathlib import Path

    from lakehouse.pg.cluster import PgCluster

    cluster = PgCluster(Path(dir).resolve(), port=0)
    cluster.remove() if remove else cluster.stop()


@app.command("workload")
def pg_workload(
    auth_dsn: Annotated[str, typer.Option(help="DSN of the auth database.")],
    scan_dsn: Annotated[str, typer.Option(help="DSN of the scan database.")],
    scans: Annotated[int, typer.Option(help="Photo scans to run.")] = 1000,
    users: Annotated[int, typer.Option(help="Sign-ups before the scans.")] = 100,
    changes: Annotated[
        bool, typer.Option(help="Then re-score, change/withdraw feedback, close an account.")
    ] = True,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Run the scripted Eco2 workload against real databases."""
    from lakehouse.pg.workload import Eco2Workload

    work = Eco2Workload(auth_dsn, scan_dsn, seed=seed)
    work.sign_ups(users)
    work.scans(scans)
    if changes:
        work.changes()
    out.print_json(json.dumps(asdict(work.report)))
