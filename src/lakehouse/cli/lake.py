"""Commands on the raw lake: generate, inspect, discover."""

from __future__ import annotations

import json
from dataclasses import asdict
from enum import StrEnum
from typing import Annotated

import typer
from rich.console import JustifyMethod
from rich.markup import escape
from rich.table import Table

from lakehouse.cli.common import AvroCodec, AvroCodecOpt, LakeOpt, console, lake_or_default, out


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


def generate(
    lake: LakeOpt = None,
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
    lake = lake_or_default(lake)
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


def inspect(
    lake: LakeOpt = None,
    topic: Annotated[str | None, typer.Option(help="Only this topic.")] = None,
    schemas: Annotated[bool, typer.Option(help="Show each topic's merged columns.")] = True,
    count: Annotated[bool, typer.Option(help="Read every object to count events per op.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List topics, objects, merged schemas and events per op; report every unusable object."""
    lake = lake_or_default(lake)
    from lakehouse.inspect import inspect_lake
    from lakehouse.lake.reader import LakeReader

    summary = inspect_lake(LakeReader(lake), topic=topic, count_events=count)
    if as_json:
        out.print_json(json.dumps(asdict(summary)))
    else:
        overview = Table(title=f"lake {summary.root}")
        columns: tuple[tuple[str, JustifyMethod], ...] = (
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
        )
        for col, just in columns:
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


def discover(
    lake: LakeOpt = None,
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
    lake = lake_or_default(lake)
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
