"""``lakehouse``: the command line of cdc-lakehouse."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup


class _OneLineErrors(TyperGroup):
    """Expected failures of any command (storage unreachable or missing, no credentials, a state
    path that is not a folder, ...) end as one line and exit code 2, never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except Exception as exc:  # only the kinds below are expected; the rest keep their traceback
            message = expected_failure(exc)
            if message is None:
                raise
            console.print(f"[bold red]error[/]: {escape(message)}")
            raise typer.Exit(code=2) from None


def expected_failure(exc: BaseException) -> str | None:
    """One line for a failure the operator can fix (path, storage, credentials); None otherwise."""
    from botocore.exceptions import ClientError, NoCredentialsError

    from lakehouse.lake.retry import StorageUnavailableError
    from lakehouse.state.table import StateError

    if isinstance(exc, StorageUnavailableError | StateError | NoCredentialsError | NotADirectoryError):
        return " ".join(str(exc).split())
    if isinstance(exc, ClientError):  # a missing bucket, denied access: the request names the operation
        error = exc.response.get("Error", {})
        bucket = f" (bucket {error['BucketName']})" if error.get("BucketName") else ""
        return f"S3 {error.get('Code')}: {error.get('Message')}{bucket}"
    return None


app = typer.Typer(
    cls=_OneLineErrors,
    name="lakehouse",
    help="CDC lakehouse for Eco2: read the Debezium/S3-sink lake, build current-state tables, "
    "load the warehouse, build marts.\n\nA LAKE is a local folder or s3://bucket/prefix "
    "(S3-compatible endpoints via AWS_ENDPOINT_URL).",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_show_locals=False,
    add_completion=False,
)
console = Console(stderr=True, soft_wrap=True)  # error lines stay whole in logs
# piped output (CI logs, `make demo`) gets a wide table instead of rich's 80-column default
out = Console(width=None if sys.stdout.isatty() else 160)


class PartitionerName(StrEnum):
    default = "default"
    hourly = "hourly"
    daily = "daily"
    time = "time"
    field = "field"


class Shape(StrEnum):
    envelope = "envelope"
    unwrap = "unwrap"


class FileFormat(StrEnum):
    parquet = "parquet"
    json = "json"
    avro = "avro"


class CaptureFormat(StrEnum):
    parquet = "parquet"
    avro = "avro"


class AvroCodec(StrEnum):
    null = "null"
    deflate = "deflate"
    snappy = "snappy"
    bzip2 = "bzip2"
    xz = "xz"
    zstandard = "zstandard"


AvroCodecOpt = Annotated[AvroCodec, typer.Option(help="avro.codec of Avro objects (--format avro).")]


LakeOpt = Annotated[str, typer.Option("--lake", "-l", help="Lake root: a folder or s3://bucket/prefix.")]


@app.command()
def generate(
    lake: LakeOpt,
    events: Annotated[
        int, typer.Option(help="Change events to write (approximately, exact count reported).")
    ] = 100_000,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed and options give the same lake.")] = 0,
    partitioner: Annotated[
        PartitionerName, typer.Option(help="S3 sink partitioner.")
    ] = PartitionerName.default,
    flush_size: Annotated[int, typer.Option(help="Records per object (S3 sink flush.size).")] = 10_000,
    partitions: Annotated[int, typer.Option(help="Kafka partitions per topic.")] = 1,
    shape: Annotated[
        Shape, typer.Option(help="Debezium envelope, or rows flattened by the unwrap SMT.")
    ] = Shape.envelope,
    format: Annotated[FileFormat, typer.Option("--format", help="S3 sink format.")] = FileFormat.parquet,
    json_schemas: Annotated[bool, typer.Option(help="JSON lines with embedded Connect schemas.")] = False,
    avro_codec: AvroCodecOpt = AvroCodec.null,
    schema_change: Annotated[bool, typer.Option(help="Add and widen a column mid-stream.")] = False,
    replays: Annotated[bool, typer.Option(help="Debezium replays and overlapping sink files.")] = False,
    toast: Annotated[bool, typer.Option(help="Unchanged-TOAST placeholders in updates.")] = True,
    pk_changes: Annotated[bool, typer.Option(help="Primary-key updates (delete + create).")] = False,
    truncates: Annotated[bool, typer.Option(help="A TRUNCATE mid-stream.")] = False,
    deletes: Annotated[bool, typer.Option(help="Deletes (feedback, account closures).")] = True,
    transactions: Annotated[
        bool, typer.Option(help="Transaction metadata: BEGIN/END events in <prefix>.transaction_<database>.")
    ] = False,
    store_keys: Annotated[bool, typer.Option(help="Write .keys companion files (store.kafka.keys).")] = False,
    topic_prefix: Annotated[str, typer.Option(help="Debezium topic.prefix.")] = "eco2",
    start_time: Annotated[str, typer.Option(help="Simulated commit time of the first event (UTC).")] = (
        "2026-11-01T00:00:00Z"
    ),
    events_per_second: Annotated[
        float, typer.Option(help="Simulated commit rate (sets how many days the lake spans).")
    ] = 50.0,
) -> None:
    """Write a realistic Eco2 lake exactly as Debezium + the Kafka Connect S3 sink would."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from lakehouse.generate import GeneratorOptions, generate_lake

    options = GeneratorOptions(
        events=events,
        seed=seed,
        topic_prefix=topic_prefix,
        partitions=partitions,
        flush_size=flush_size,
        partitioner=partitioner.value,
        shape=shape.value,
        format=format.value,
        json_schemas=json_schemas,
        avro_codec=avro_codec.value,
        schema_change=schema_change,
        replays=replays,
        toast=toast,
        pk_changes=pk_changes,
        truncates=truncates,
        deletes=deletes,
        store_keys=store_keys,
        start_time=start_time,
        events_per_second=events_per_second,
        transactions=transactions,
    )
    with Progress(
        TextColumn("generating"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task("events", total=events)

        def on_progress(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        report = generate_lake(lake, options, progress=on_progress)
    table = Table(
        title=f"wrote {report.events:,} events in {report.objects:,} objects "
        f"({report.bytes / 1e6:,.1f} MB) in {report.seconds:,.1f} s"
    )
    table.add_column("topic")
    for op in ("r", "c", "u", "d", "t"):
        table.add_column(op, justify="right")
    table.add_column("objects", justify="right")
    for topic, counts in sorted(report.per_topic.items()):
        table.add_row(
            topic,
            *(f"{counts.get(op, 0):,}" for op in ("r", "c", "u", "d", "t")),
            f"{counts.get('objects', 0):,}",
        )
    out.print(table)


@app.command()
def inspect(
    lake: LakeOpt,
    topic: Annotated[str | None, typer.Option(help="Only this topic.")] = None,
    schemas: Annotated[bool, typer.Option(help="Show each topic's merged columns.")] = True,
    count: Annotated[bool, typer.Option(help="Read every object to count events per op.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List topics, objects, merged schemas and events per op; report every unusable object."""
    from lakehouse.inspect import inspect_lake
    from lakehouse.lake.reader import LakeReader

    summary = inspect_lake(LakeReader(lake), topic=topic, count_events=count)
    if as_json:
        out.print_json(json.dumps(asdict(summary)))
    else:
        overview = Table(title=f"lake {summary.root}")
        for col, just in (
            ("topic", "left"),
            ("objects", "right"),
            ("MB", "right"),
            ("partitions", "right"),
            ("shape", "left"),
            ("format", "left"),
            ("events", "right"),
            ("r", "right"),
            ("c", "right"),
            ("u", "right"),
            ("d", "right"),
            ("t", "right"),
        ):
            overview.add_column(col, justify=just)
        for t in summary.topics:
            overview.add_row(
                t.topic,
                f"{t.objects:,}",
                f"{t.bytes / 1e6:,.2f}",
                str(len(t.kafka_partitions)),
                ",".join(t.shapes),
                ",".join(t.formats),
                f"{t.events:,}",
                *(f"{t.ops.get(op, 0):,}" for op in ("r", "c", "u", "d", "t")),
            )
        out.print(overview)
        if schemas:
            for t in summary.topics:
                if t.columns:
                    cols = Table(title=f"{t.topic} columns", show_edge=False)
                    cols.add_column("column")
                    cols.add_column("type")
                    cols.add_column("debezium type")
                    for name, typ, dbz in t.columns:
                        cols.add_row(name, escape(typ), dbz)
                    out.print(cols)
        if summary.excluded_topics:
            out.print(f"excluded (not table topics): {', '.join(summary.excluded_topics)}")
        if summary.ignored:
            out.print(f"ignored {len(summary.ignored)} companion/tombstone objects")
    problems = [(t.topic, t.error) for t in summary.topics if t.error] + summary.errors
    for where, why in problems:
        console.print(f"[bold red]error[/] {escape(str(where))}: {escape(str(why))}")
    if problems:
        raise typer.Exit(code=1)


StateOpt = Annotated[
    str,
    typer.Option(
        "--state", "-s", help="State root (current-state Delta tables): a folder or s3://bucket/prefix."
    ),
]


TablesConfigOpt = Annotated[
    str | None,
    typer.Option(help="Tables config YAML (default: $LAKEHOUSE_TABLES_CONFIG or config/tables.yaml)."),
]


@app.command()
def compact(
    lake: LakeOpt,
    state: StateOpt,
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
    import logging

    from lakehouse.config import ConfigError, load_config
    from lakehouse.state.compact import CompactOptions
    from lakehouse.state.compact import compact as run_compact
    from lakehouse.warehouse.engines import open_engine

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s", stream=sys.stderr)
    try:
        config = load_config(tables_config)
        fold_engine = open_engine(engine)
        options = CompactOptions(
            full_refresh=full_refresh,
            batch_events=batch_events,
            engine=fold_engine,
            **({"workers": workers} if workers is not None else {}),
        )
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


@app.command()
def discover(
    lake: LakeOpt,
    tables_config: Annotated[
        str | None,
        typer.Option(
            help="Tables config YAML to extend (default: $LAKEHOUSE_TABLES_CONFIG or config/tables.yaml)."
        ),
    ] = None,
    dsn: Annotated[
        list[str] | None,
        typer.Option(
            "--dsn",
            help="PostgreSQL connection string whose catalog "
            "gives primary keys the lake's key files do "
            "not; repeatable (one per database). Keep the "
            "password out of it: PGPASSWORD or ~/.pgpass.",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the entries that would be added; change nothing.")
    ] = False,
) -> None:
    """Find table topics in the lake that the tables config does not list and append entries for
    them (comments kept). Keys come from the lake's key files, else from the PostgreSQL catalog.
    Exit code 1 if some topics have no key (the others are still written)."""
    from lakehouse.config import ConfigError, config_path, load_config
    from lakehouse.discover import CatalogError, append_entries
    from lakehouse.discover import discover as run_discover
    from lakehouse.lake.reader import LakeReader

    path = tables_config or str(config_path())
    try:
        config = load_config(path)
        found = run_discover(config, LakeReader(lake), dsn or None)
        added, block = append_entries(path, found, dry_run=dry_run)
    except (ConfigError, CatalogError) as exc:
        console.print(f"[bold red]error[/]: {escape(str(exc))}")
        raise typer.Exit(code=2) from None
    if not found:
        out.print(f"every table topic in {escape(lake)} is in {escape(path)}")
        return
    added_topics = {f.topic for f in added}
    summary = Table(title=f"discover {escape(lake)} -> {escape(path)}" + (" (dry run)" if dry_run else ""))
    for col in ("topic", "primary key", "source", "action"):
        summary.add_column(col)
    for f in found:
        action = ("would add" if dry_run else "added") if f.topic in added_topics else "no key: not written"
        summary.add_row(
            escape(f.topic), escape(", ".join(f.primary_key or ())) or "-", escape(f.source or "-"), action
        )
    out.print(summary)
    if dry_run and block:
        out.print(f"would append to {escape(path)}:\n{escape(block)}", end="", soft_wrap=True)
    missing = [f for f in found if not f.primary_key]
    for f in missing:
        console.print(f"[bold red]error[/] {escape(f.how_to_add(path))}")
    if missing:
        console.print(
            f"[bold red]{len(missing)} topic(s) without a primary key[/]: "
            f"{escape(', '.join(f.topic for f in missing))}"
        )
        raise typer.Exit(code=1)


@app.command()
def erase(
    lake: LakeOpt,
    state: StateOpt,
    tables_config: TablesConfigOpt = None,
) -> None:
    """Erase closed accounts' personal columns (tables config `erasure`) from tombstones, history
    and the consistent root, then search every state file for them; exit 1 if any is left."""
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


@app.command()
def export(
    state: StateOpt,
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


@app.command()
def load(
    state: StateOpt,
    warehouse: Annotated[str, typer.Option("--warehouse", "-w", help="DuckDB warehouse file.")],
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


@app.command()
def maintain(
    state: StateOpt,
    table: Annotated[list[str], typer.Option("--table", "-t", help="schema.table; repeatable.")],
    retention_hours: Annotated[
        int, typer.Option(help="Keep unreferenced files younger than this (time travel, running readers).")
    ] = 168,
) -> None:
    """Merge small files and vacuum unreferenced data files and manifests."""
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


@app.command()
def capture(
    dsn: Annotated[
        str,
        typer.Option(
            envvar="LAKEHOUSE_CAPTURE_DSN",
            show_envvar=True,
            help="PostgreSQL connection string (wal_level=logical). Keep the "
            "password out of it: PGPASSWORD or ~/.pgpass are used.",
        ),
    ],
    lake: LakeOpt,
    tables: Annotated[
        str | None, typer.Option(help="Comma-separated schema.table list (default: all tables).")
    ] = None,
    topic_prefix: Annotated[str, typer.Option(help="Debezium topic.prefix.")] = "eco2",
    name: Annotated[
        str | None,
        typer.Option(
            help="Engine and replication slot name (default: <prefix>_<db>). "
            "Keep it stable: it keys the stored offsets."
        ),
    ] = None,
    flush_size: Annotated[int, typer.Option(help="Records per object (flush.size).")] = 10_000,
    format: Annotated[
        CaptureFormat, typer.Option("--format", help="S3 sink format.")
    ] = CaptureFormat.parquet,
    avro_codec: AvroCodecOpt = AvroCodec.null,
    rotate_interval: Annotated[
        float,
        typer.Option(help="Seconds between scheduled rotations of all open files (and offset commits)."),
    ] = 60.0,
    stop_when_idle: Annotated[
        float | None,
        typer.Option(
            help="Once streaming (after the snapshot), stop after this many seconds without events."
        ),
    ] = None,
    store_keys: Annotated[
        bool, typer.Option(help="Write .keys companions (fails on truncates, like the sink).")
    ] = False,
    store_headers: Annotated[
        bool, typer.Option(help="Write .headers companions (PK-change headers).")
    ] = True,
    state_dir: Annotated[
        str | None, typer.Option(help="Where Debezium's offsets are kept (default: $LAKEHOUSE_HOME/capture).")
    ] = None,
    heap_mb: Annotated[int, typer.Option(help="JVM heap limit in MB.")] = 1024,
    progress_interval: Annotated[float, typer.Option(help="Seconds between progress log lines.")] = 10.0,
    transaction_topic: Annotated[
        str | None,
        typer.Option(
            help="Where BEGIN/END events land (default: "
            "<prefix>.transaction); captures sharing a "
            "prefix need their own, e.g. eco2.transaction_auth."
        ),
    ] = None,
) -> None:
    """Capture PostgreSQL changes with embedded Debezium into the lake, exactly as the S3 sink would
    write them (snapshot, then streaming; stops cleanly on SIGTERM)."""
    import logging
    from pathlib import Path

    from lakehouse.capture.engine import CaptureError, CaptureOptions, run_capture
    from lakehouse.capture.preflight import CaptureSetupError

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr
    )
    opts = CaptureOptions(
        dsn=dsn,
        lake=lake,
        tables=tuple(t.strip() for t in tables.split(",") if t.strip()) if tables else (),
        topic_prefix=topic_prefix,
        name=name,
        flush_size=flush_size,
        format=format.value,
        avro_codec=avro_codec.value,
        rotate_interval_s=rotate_interval,
        stop_when_idle_s=stop_when_idle,
        store_keys=store_keys,
        store_headers=store_headers,
        state_dir=Path(state_dir) if state_dir else None,
        heap_mb=heap_mb,
        progress_interval_s=progress_interval,
        transaction_topic=transaction_topic,
    )
    try:
        stats = run_capture(opts)
    except (CaptureSetupError, CaptureError) as exc:
        console.print(f"[bold red]capture failed[/]: {escape(str(exc))}")
        raise typer.Exit(code=2) from None
    out.print_json(json.dumps(stats.as_dict()))


pg_app = typer.Typer(
    help="A throwaway PostgreSQL 15 cluster (wal_level=logical, loopback only) for "
    "tests and demos, from the machine's binaries.",
    no_args_is_help=True,
)
app.add_typer(pg_app, name="pg")


@pg_app.command("start")
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


@pg_app.command("stop")
def pg_stop(
    dir: Annotated[str, typer.Option("--dir", help="Cluster folder given to `pg start`.")],
    remove: Annotated[bool, typer.Option(help="Delete the folder (data, WAL, replication slots).")] = True,
) -> None:
    """Stop a cluster started with `lakehouse pg start` (and remove it)."""
    from pathlib import Path

    from lakehouse.pg.cluster import PgCluster

    cluster = PgCluster(Path(dir).resolve(), port=0)
    cluster.remove() if remove else cluster.stop()


@pg_app.command("workload")
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


class SqlDialect(StrEnum):
    auto = "auto"
    duckdb = "duckdb"
    bigquery = "bigquery"


metabase_app = typer.Typer(
    help="Dashboards as code: the Metabase dashboards defined in dashboards/ (one YAML "
    "file each, native-SQL cards written once in DuckDB SQL).",
    no_args_is_help=True,
)
app.add_typer(metabase_app, name="metabase")

DashboardsOpt = Annotated[
    str | None,
    typer.Option(
        "--dashboards", help="Folder of dashboard files (default: ./dashboards, else the repository's)."
    ),
]
DatasetPrefixOpt = Annotated[
    str,
    typer.Option(
        envvar="LAKEHOUSE_BIGQUERY_DATASET_PREFIX", show_envvar=True, help="BigQuery dataset prefix."
    ),
]
ProjectOpt = Annotated[
    str | None,
    typer.Option(
        "--bigquery-project", help="BigQuery project to qualify tables with (default: the connection's)."
    ),
]
MetaDatasetOpt = Annotated[str, typer.Option(help="BigQuery dataset of the warehouse's load records.")]


def _dashboards_dir(folder: str | None):
    from pathlib import Path

    if folder:
        return Path(folder)
    here = Path("dashboards")
    return here if here.is_dir() else Path(__file__).resolve().parents[2] / "dashboards"


def _load_dashboards(folder: str | None):
    from lakehouse.metabase import DefinitionError, load_dashboards

    try:
        return load_dashboards(_dashboards_dir(folder))
    except DefinitionError as exc:
        console.print(f"[bold red]invalid dashboard files[/]: {escape(str(exc))}")
        raise typer.Exit(code=2) from None


def _target(dialect: str, project: str | None, dataset_prefix: str, meta_dataset: str):
    from lakehouse.metabase import Target

    if dialect == "duckdb":
        return Target.duckdb()
    return Target.bigquery(project=project, dataset_prefix=dataset_prefix, meta_dataset=meta_dataset)


@metabase_app.command("apply")
def metabase_apply(
    url: Annotated[str, typer.Option(envvar="METABASE_URL", show_envvar=True, help="Metabase base URL.")],
    database_name: Annotated[
        str,
        typer.Option(
            envvar="METABASE_DATABASE",
            show_envvar=True,
            help="The Metabase database (connection) the cards query, by name.",
        ),
    ],
    collection: Annotated[
        str, typer.Option(help="Collection (top level) holding the cards and dashboards.")
    ] = ("Eco2 lakehouse"),
    dialect: Annotated[
        SqlDialect, typer.Option(help="SQL dialect of that database (auto: from its engine).")
    ] = (SqlDialect.auto),
    dataset_prefix: DatasetPrefixOpt = "",
    bigquery_project: ProjectOpt = None,
    meta_dataset: MetaDatasetOpt = "lakehouse_meta",
    dashboards: DashboardsOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan; change nothing.")] = False,
) -> None:
    """Create or update the dashboards in Metabase (idempotent: by name, never duplicated).

    Credentials (environment): METABASE_API_KEY, METABASE_SESSION, or METABASE_USERNAME + METABASE_PASSWORD."""
    from lakehouse.metabase import MetabaseClient, MetabaseError, apply, dialect_of, find_database

    defs = _load_dashboards(dashboards)
    try:
        client = MetabaseClient.from_env(url)
        database = find_database(client, database_name)
        sql_dialect = dialect_of(database) if dialect == SqlDialect.auto else dialect.value
        target = _target(sql_dialect, bigquery_project, dataset_prefix, meta_dataset)
        plan = apply(
            client, defs, database_id=database.id, target=target, collection=collection, dry_run=dry_run
        )
    except (ValueError, LookupError, MetabaseError) as exc:
        console.print(f"[bold red]metabase apply failed[/]: {escape(str(exc))}")
        raise typer.Exit(code=1) from None
    console.print(
        f"database {escape(database.name)!r} #{database.id} ({sql_dialect}), "
        f"{len(defs)} dashboards, {sum(len(d.cards) for d in defs)} cards"
    )
    for action in plan.actions:
        out.print(escape(action.line()), highlight=False)
    out.print(plan.summary(), highlight=False)


@metabase_app.command("sql")
def metabase_sql(
    dialect: Annotated[SqlDialect, typer.Option(help="duckdb or bigquery.")] = SqlDialect.duckdb,
    dashboard: Annotated[str | None, typer.Option(help="Only this dashboard (file `name`).")] = None,
    dataset_prefix: DatasetPrefixOpt = "",
    bigquery_project: ProjectOpt = None,
    meta_dataset: MetaDatasetOpt = "lakehouse_meta",
    dashboards: DashboardsOpt = None,
) -> None:
    """Print each card's SQL as sent to a database of that dialect."""
    if dialect == SqlDialect.auto:
        console.print("[bold red]--dialect[/]: duckdb or bigquery")
        raise typer.Exit(code=2)
    target = _target(dialect.value, bigquery_project, dataset_prefix, meta_dataset)
    for d in _load_dashboards(dashboards):
        if dashboard and d.name != dashboard:
            continue
        for card in d.cards:
            out.print(f"-- {d.title} / {card.name}\n{card.render(target)};\n", highlight=False, markup=False)


@metabase_app.command("list")
def metabase_list(dashboards: DashboardsOpt = None) -> None:
    """The dashboards as JSON: name, title, description, owner, depends_on (marts), sources
    (what dbt exposures need)."""
    defs = _load_dashboards(dashboards)
    out.print_json(
        json.dumps(
            [
                d.model_dump(
                    include={"name", "title", "description", "owner", "depends_on", "sources"},
                    exclude_none=True,
                )
                for d in defs
            ]
        )
    )


@metabase_app.command("exposures")
def metabase_exposures(
    dashboards: DashboardsOpt = None,
    out_file: Annotated[
        str | None,
        typer.Option("--out", help="Write here (dbt_project/models/exposures.yml) instead of printing."),
    ] = None,
) -> None:
    """dbt exposures (type dashboard) for the dashboards: lineage from source to dashboard in dbt docs."""
    from lakehouse.metabase.exposures import exposures_yaml

    text = exposures_yaml(_load_dashboards(dashboards))
    if out_file:
        Path(out_file).write_text(text, encoding="utf-8")
        out.print(f"wrote {out_file}")
    else:
        print(text, end="")


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
