"""Change capture from PostgreSQL: capture."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from typing import Annotated

import typer
from rich.markup import escape

from lakehouse.cli.common import AvroCodec, AvroCodecOpt, LakeOpt, console, lake_or_default, out
from lakehouse.settings import CAPTURE_DSN_ENV


class CaptureFormat(StrEnum):
    parquet = "parquet"
    avro = "avro"


def capture(
    dsn: Annotated[
        str,
        typer.Option(
            envvar=CAPTURE_DSN_ENV,
            show_envvar=True,
            help="PostgreSQL connection string (wal_level=logical). Keep the "
            "password out of it: PGPASSWORD or ~/.pgpass are used.",
        ),
    ],
    lake: LakeOpt = None,
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
    lake = lake_or_default(lake)
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
