"""Commands on the current-state tables: compact, erase, export, maintain."""

from __future__ import annotations

import sys
from dataclasses import replace
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from lakehouse.cli.common import (
    LakeOpt,
    StateOpt,
    TablesConfigOpt,
    console,
    lake_or_default,
    out,
    state_or_default,
)


def compact(
    lake: LakeOpt = None,
    state: StateOpt = None,
    tables_config: TablesConfigOpt = None,
    table: Annotated[
        list[str] | None,
        typer.Option("--table", "-t", help="Only this table (schema.table or topic); repeatable."),
    ] = None,
    full_refresh: Annotated[
        bool, typer.Option(help="Rebuild from every raw object instead of the new ones.")
    ] = False,
    batch_events: Annotated[int, typer.Option(help="Events per commit (bounds memory).")] = 250_000,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1, help="Tables compacted at once (default: one per core, at most 4; fewer uses less memory)."
        ),
    ] = None,
    engine: Annotated[
        str | None,
        typer.Option(
            help="What runs the fold: local or bigquery (default: "
            "$LAKEHOUSE_ENGINE or local; bigquery reads "
            "LAKEHOUSE_BIGQUERY_*)."
        ),
    ] = None,
    consistent: Annotated[
        bool,
        typer.Option(
            help="Then move every database's consistent root to its "
            "watermark (all tables at one transaction boundary; "
            "needs the <prefix>.transaction topic)."
        ),
    ] = False,
) -> None:
    """Apply new raw objects to the current-state tables (incremental; one atomic Delta commit per
    batch). A failing table is reported and the others go on; exit code 1 if any failed."""
    lake, state = lake_or_default(lake), state_or_default(state)
    import logging

    from lakehouse.config import ConfigError, load_config
    from lakehouse.state.compact import CompactOptions
    from lakehouse.state.compact import compact as run_compact
    from lakehouse.warehouse.engines import open_engine

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s", stream=sys.stderr)
    try:
        config = load_config(tables_config)
        fold_engine = open_engine(engine)
        options = CompactOptions(full_refresh=full_refresh, batch_events=batch_events, engine=fold_engine)
        if workers is not None:
            options = replace(options, workers=workers)
        results = run_compact(lake, state, config, table or None, options)
    except (ConfigError, ValueError) as exc:
        console.print(f"[bold red]error[/]: {escape(str(exc))}")
        raise typer.Exit(code=2) from None
    summary = Table(title=f"compact {lake} -> {state}")
    for col in (
        "table",
        "status",
        "objects",
        "events",
        "dups",
        "inserts",
        "updates",
        "deletes",
        "rows",
        "seconds",
    ):
        summary.add_column(col, justify="left" if col in ("table", "status") else "right")
    for r in results:
        summary.add_row(
            r.table,
            r.status,
            f"{r.objects:,}",
            f"{r.events:,}",
            f"{r.duplicates:,}",
            f"{r.inserts:,}",
            f"{r.updates:,}",
            f"{r.deletes:,}",
            f"{r.rows:,}",
            f"{r.seconds:.2f}",
        )
    out.print(summary)
    if fold_engine.kind != "local":
        folds = sum(r.engine.folds for r in results)
        scanned = [r.engine.bytes_processed for r in results if r.engine.bytes_processed is not None]
        inputs = sum(r.engine.input_bytes for r in results)
        out.print(
            f"engine {fold_engine.kind}: {folds} folds, {inputs:,} bytes of fold input, "
            + (f"{sum(scanned):,} bytes processed" if scanned else "bytes processed not reported")
        )
    for r in results:
        for note in r.notes:
            out.print(f"{r.table}: {escape(note)}")
        if r.error:
            console.print(f"[bold red]error[/] {escape(r.error)}")
    failed = any(r.failed for r in results)
    if consistent:
        failed |= _compact_consistent(lake, state, config, options)
    if failed:
        raise typer.Exit(code=1)


def _compact_consistent(lake: str, state: str, config, options) -> bool:
    """Advance and print each database's watermark; True if one could not be published."""
    from lakehouse.state.consistent import compact_consistent

    failed = False
    for r in compact_consistent(lake, state, config, options):
        if r.error:
            console.print(f"[bold red]error[/] consistent {escape(r.error)}")
            failed = True
            continue
        w = r.watermark
        assert w is not None
        lag = "" if w.lag_seconds is None else f", {w.lag_seconds:.1f} s behind the newest landed commit"
        out.print(f"consistent {w.database}: every table at commit LSN {w.lsn} (txId {w.tx_id}){lag}")
    return failed


def erase(
    lake: LakeOpt = None,
    state: StateOpt = None,
    tables_config: TablesConfigOpt = None,
) -> None:
    """Erase closed accounts' personal columns (tables config `erasure`) from tombstones, history
    and the consistent root, then search every state file for them; exit 1 if any is left."""
    lake, state = lake_or_default(lake), state_or_default(state)
    from lakehouse.config import load_config
    from lakehouse.state.erasure import closed_accounts, leftovers, personal_values
    from lakehouse.state.erasure import erase as run_erase

    config = load_config(tables_config)
    report = run_erase(state, config)
    out.print(
        f"{report.closed_accounts} closed accounts: {sum(report.tombstones.values())} tombstones and "
        f"{sum(report.history_versions.values())} history versions erased"
    )
    closed = closed_accounts(state, config)
    found = leftovers(state, config, personal_values(lake, state, config, closed)) if closed else []
    for line in found:
        console.print(f"[bold red]left[/] {escape(line)}")
    if found:
        raise typer.Exit(code=1)
    out.print("nothing of a closed account is left under the state root (raw lake aside)")


def export(
    state: StateOpt = None,
    *,
    table: Annotated[str, typer.Option("--table", "-t", help="schema.table")],
    out_file: Annotated[str, typer.Option("--out", "-o", help="Parquet file to write.")],
    consistent: Annotated[
        bool,
        typer.Option(
            help="The table at its database's published watermark "
            "(lakehouse compact --consistent), not its newest state."
        ),
    ] = False,
    as_of: Annotated[
        str | None,
        typer.Option(
            help="The table as it was at a commit time (ISO 8601, UTC if "
            "no zone) or a change LSN (an integer); history: true."
        ),
    ] = None,
    history: Annotated[
        bool,
        typer.Option(
            help="Every version of every row, with valid_from/valid_to (history: true in the tables config)."
        ),
    ] = False,
) -> None:
    """Write a table's visible rows (no tombstones, source column names, decoded types) to Parquet."""
    state = state_or_default(state)
    import time

    import pyarrow.parquet as pq

    from lakehouse.state.consistent import consistent_rows
    from lakehouse.state.export import export_table, table_history
    from lakehouse.state.table import StateError

    started = time.perf_counter()
    try:
        if as_of is not None or history:
            data = table_history(state, table, as_of)
            pq.write_table(data, out_file, compression="zstd")
            rows = data.num_rows
        elif consistent:
            data, mark = consistent_rows(state, table)
            pq.write_table(data, out_file, compression="zstd")
            rows = data.num_rows
            out.print(f"{table} at {mark.database}'s watermark: commit LSN {mark.lsn} (txId {mark.tx_id})")
        else:
            rows = export_table(state, table, out_file)
    except StateError as exc:
        console.print(f"[bold red]error[/]: {escape(str(exc))}")
        raise typer.Exit(code=1) from None
    out.print(f"exported {table}: {rows:,} rows -> {out_file} in {time.perf_counter() - started:.2f} s")


def maintain(
    state: StateOpt = None,
    *,
    table: Annotated[list[str], typer.Option("--table", "-t", help="schema.table; repeatable.")],
    retention_hours: Annotated[
        int, typer.Option(help="Keep unreferenced files younger than this (time travel, running readers).")
    ] = 168,
) -> None:
    """Merge small files and vacuum unreferenced data files and manifests."""
    state = state_or_default(state)
    from lakehouse.state.maintain import maintain as run_maintain
    from lakehouse.state.table import StateError

    failed = False
    for name in table:
        try:
            r = run_maintain(state, name, retention_hours)
        except StateError as exc:
            console.print(f"[bold red]error[/] {escape(str(exc))}")
            failed = True
            continue
        out.print(
            f"{name}: merged {r.files_merged} files into {r.files_added}, vacuumed {r.files_vacuumed} "
            f"files and {r.manifests_removed} manifests"
        )
    if failed:
        raise typer.Exit(code=1)
