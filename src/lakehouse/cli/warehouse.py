"""Commands on the warehouse: load."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from lakehouse.cli.common import StateOpt, TablesConfigOpt, console, out, state_or_default
from lakehouse.settings import get_settings


def load(
    state: StateOpt = None,
    warehouse: Annotated[
        str | None,
        typer.Option(
            "--warehouse",
            "-w",
            help="DuckDB warehouse file (default: $LAKEHOUSE_DUCKDB, else $LAKEHOUSE_HOME/warehouse.duckdb).",
        ),
    ] = None,
    *,
    table: Annotated[list[str], typer.Option("--table", "-t", help="schema.table; repeatable.")],
    full_refresh: Annotated[bool, typer.Option(help="Replace each table with every visible row.")] = False,
    tables_config: TablesConfigOpt = None,
    consistent: Annotated[
        bool,
        typer.Option(
            help="Load each table at its database's published consistent "
            "watermark (lakehouse compact --consistent)."
        ),
    ] = False,
) -> None:
    """Load current-state tables into the DuckDB warehouse (changed clusters only, unless
    --full-refresh); prints mode, rows and time per table."""
    state = state_or_default(state)
    warehouse = warehouse or str(get_settings().duckdb_path)
    import duckdb

    from lakehouse.config import ConfigError, load_config
    from lakehouse.state.consistent import read_point
    from lakehouse.state.table import StateError
    from lakehouse.warehouse.duckdb_warehouse import DuckDBWarehouse

    try:
        config = load_config(tables_config)
    except ConfigError as exc:
        console.print(f"[bold red]error[/]: {escape(str(exc))}")
        raise typer.Exit(code=2) from None
    wh = DuckDBWarehouse(warehouse)
    summary = Table(title=f"load {state} -> {warehouse}")
    for col in ("table", "mode", "state version", "rows", "inserted", "keys removed", "seconds", "why"):
        summary.add_column(col, justify="left" if col in ("table", "mode", "why") else "right")
    failed = False
    for name in table:
        try:
            entry = next((t for t in config.tables if name in (t.table, t.topic)), None)
            if entry is None:
                raise StateError(f"{name!r} is not in {config.source}")
            source, version, mark = read_point(state, entry) if consistent else (state, None, None)
            if consistent and mark is None:
                console.print(
                    f"[yellow]warning[/] {entry.table}: no consistent watermark published for "
                    f"{entry.transactions}: loading its newest state"
                )
            r = wh.load(source, entry, full_refresh=full_refresh, version=version)
        except StateError as exc:
            console.print(f"[bold red]error[/] {escape(str(exc))}")
            failed = True
            continue
        except duckdb.IOException as exc:  # not a DuckDB file, or another process holds it
            console.print(
                f"[bold red]error[/] {escape(warehouse)}: cannot open the warehouse: "
                f"{escape(' '.join(str(exc).split()))}"
            )
            raise typer.Exit(code=2) from None
        summary.add_row(
            r.table,
            r.mode,
            str(r.state_version),
            f"{r.rows:,}",
            f"{r.inserted:,}",
            f"{r.removed_keys:,}",
            f"{r.seconds:.2f}",
            r.reason,
        )
    out.print(summary)
    if failed:
        raise typer.Exit(code=1)
