"""Benchmark: the fold's two implementations on the same events, side by side in one run.

* reference: :func:`lakehouse.state.fold.fold` (numpy/Arrow, single-threaded);
* sql: :func:`lakehouse.state.sqlfold.fold_sql` on an in-process DuckDB (all cores).

Each engine runs in its own fresh process over every topic of a generated lake (the events are
read first, outside the timing), in batches of ``--batch-events`` carried one after the other as
compaction does. Prints seconds, events/s and peak RSS for each, and checks that both give the same
visible rows (a hash of every cell).

    .venv/bin/python bench/bench_fold.py --lake /tmp/benchc/lake-2000000-s1 [--batch-events 1000000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from common import peak_rss_mb

ROOT = Path(__file__).resolve().parents[1]
ENGINES = ("reference", "sql")


def run_engine(engine: str, lake: str, batch_events: int, threads: int) -> dict:
    import duckdb
    import polars as pl
    import pyarrow.compute as pc

    from lakehouse.config import load_config
    from lakehouse.lake.reader import INTERNAL_FIELDS, LakeReader
    from lakehouse.state.fold import fold
    from lakehouse.state.sqlfold import fold_sql

    reader = LakeReader(lake)
    internal = {f.name for f in INTERNAL_FIELDS}
    topics = []
    for entry in load_config().tables:
        key = tuple(entry.primary_key or ())
        events = reader.read_changes(entry.topic, key)
        if events.num_rows and key:
            topics.append((entry.table, key, events, [f for f in events.schema if f.name not in internal]))
    con = duckdb.connect()
    con.execute(f"SET threads = {threads}")
    started = time.perf_counter()
    events_total, visible_rows, checksum = 0, 0, 0
    for _table, key, events, row_fields in topics:
        state = None
        for offset in range(0, events.num_rows, batch_events):
            batch = events.slice(offset, batch_events)
            # the whole state as prior rows: the worst case for a batch
            if engine == "sql":
                result = fold_sql(con, batch, state, key, row_fields)
            else:
                result = fold(batch, state, key, row_fields)
            state = result.rows if state is None else _merge(state, result.rows, key)
            events_total += batch.num_rows
        visible = pl.from_arrow(
            state.filter(pc.invert(state.column("__deleted"))).drop_columns(
                ["__toast_pending", "__stream_lsn"]
            )
        )
        visible_rows += visible.height
        checksum = (checksum + int(visible.hash_rows().sum())) % 2**64  # every cell of every visible row
    seconds = time.perf_counter() - started
    return {
        "engine": engine,
        "seconds": seconds,
        "events": events_total,
        "visible_rows": visible_rows,
        "checksum": checksum,
        "peak_rss_mb": peak_rss_mb(),
    }


def _merge(state, rows, key):
    import polars as pl
    import pyarrow as pa

    kept = (
        pl.from_arrow(state).join(pl.from_arrow(rows.select(list(key))), on=list(key), how="anti").to_arrow()
    )
    return pa.concat_tables([kept.cast(rows.schema), rows])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lake", required=True)
    ap.add_argument("--batch-events", type=int, default=10_000_000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--engine", choices=ENGINES, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.engine:
        print(json.dumps(run_engine(args.engine, args.lake, args.batch_events, args.threads)))
        return
    results = []
    for engine in ENGINES:
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--lake",
                args.lake,
                "--batch-events",
                str(args.batch_events),
                "--threads",
                str(args.threads),
                "--engine",
                engine,
            ],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    base = results[0]["seconds"]
    print(
        f"{'engine':<10} {'seconds':>8} {'× ref':>6} {'events/s':>10} {'peak RSS MB':>12} {'visible rows':>13}"
    )
    for r in results:
        print(
            f"{r['engine']:<10} {r['seconds']:>8.2f} {r['seconds'] / base:>6.2f} {r['events'] / r['seconds']:>10,.0f} "
            f"{r['peak_rss_mb']:>12,.0f} {r['visible_rows']:>13,}"
        )
    if len({(r["visible_rows"], r["checksum"]) for r in results}) != 1:
        sys.exit("the engines disagree on the visible rows")
    print("same visible rows, cell for cell (row hash checksum)")


if __name__ == "__main__":
    main()
