"""Benchmark: the two fold engines side by side on one generated lake, and what a run costs BigQuery.

For each engine (``local``: in this process; ``bigquery``: the BigQuery emulator, started here from
``.venv-bqemu`` as the tests do), in this order:

* full: ``compact()`` of the lake into a fresh state;
* base + increment: the lake without the newest ~1 % of each topic's events (whole objects, Kafka
  order) is compacted into a fresh state, then the held-back objects are added and ``compact()``
  applies just them.

Printed per row: seconds, folds, the logical bytes of the folds' input (what BigQuery counts to
read the fold's input once: the events' skeleton and the state rows they touch) and, for the
increment, those bytes as a share of the full build: they follow the new events, not the table.
Every engine's visible rows are checked equal to the local full build's, table by table.

The emulator runs BigQuery SQL on DuckDB and reports no bytes or slots, so its seconds say nothing
about BigQuery's speed; the bytes are computed from the data by BigQuery's size rules, and the
statements each fold runs are counted from its script. From those, the cost of 1 B events a day
(README, docs/engines.md).

    .venv/bin/python bench/bench_engine.py --events 1000000 [--flush-size 2000] [--workdir /tmp/benche]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the emulator launcher and lake copying of the tests

TIB = 1 << 40
ON_DEMAND_USD_PER_TIB = 6.25  # BigQuery on-demand list price (US multi-region)


def held_back(lake: Path, share: float) -> list[str]:
    """Keys of the newest objects of every topic holding about ``share`` of its events."""
    from lakehouse.lake.reader import LakeReader

    reader, keys = LakeReader(str(lake)), []
    for objs in reader.scan().objects.values():
        for obj in objs:
            reader.describe(obj)  # its row count
        ordered = sorted(objs, key=lambda o: (o.ref.kafka_partition, o.ref.start_offset))
        total, held = sum(o.rows or 0 for o in ordered), 0
        while ordered and (held < share * total or not held):
            obj = ordered.pop()
            keys.append(obj.key)
            held += obj.rows or 0
    return keys


def run(lake: Path, state: Path, engine) -> dict:
    from lakehouse.config import load_config
    from lakehouse.state.compact import CompactOptions, compact

    started = time.perf_counter()
    results = compact(str(lake), str(state), load_config(), options=CompactOptions(engine=engine))
    failed = [r.error for r in results if r.failed]
    if failed:
        raise SystemExit(f"compaction failed: {failed}")
    return {
        "seconds": time.perf_counter() - started,
        "events": sum(r.events for r in results),
        "folds": sum(r.engine.folds for r in results),
        "input_bytes": sum(r.engine.input_bytes for r in results),
    }


def same_rows(state: Path, reference: Path) -> bool:
    from lakehouse.config import load_config
    from lakehouse.state.export import visible_rows

    for entry in load_config().tables:
        got, want = (
            sorted(visible_rows(str(s), entry.table).to_pylist(), key=repr) for s in (state, reference)
        )
        if got != want:
            print(f"  DIFFERENT: {entry.table}")
            return False
    return True


def script_reads() -> int:
    """Table reads in one fold's script (every FROM and JOIN of every statement), for the paper
    estimate: each reads at most the fold's rows."""
    import logging

    import pyarrow as pa
    import sqlglot
    from sqlglot import expressions as exp

    from lakehouse.state.sqlfold import fold_script

    fields = [pa.field("id", pa.int64()), *(pa.field(f"c{i}", pa.string()) for i in range(6))]
    work = {
        n: f"p.d.{n}"
        for n in ("fold_truncates", "out_late", "out_result", "out_effects", "out_new_truncates")
    }
    script = fold_script(("id",), fields, True, "bigquery", work, "SELECT 1")
    logging.getLogger("sqlglot").setLevel(logging.ERROR)  # LOOP / IF scaffolding parses as commands
    reads = 0
    for statement in script.split(";"):
        try:
            tree = sqlglot.parse_one(statement, read="bigquery")
        except sqlglot.errors.ParseError:
            continue
        if tree is not None:
            reads += sum(1 for _ in tree.find_all(exp.Table))
    return reads


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--flush-size", type=int, default=2_000, help="events per object (a 1 %% increment is whole objects)"
    )
    parser.add_argument("--workdir", default="/tmp/benche")
    args = parser.parse_args()
    os.environ.setdefault("LAKEHOUSE_PSEUDONYM_KEY", "bench-key")

    from support.bq_emulator import _start, _stop
    from support.lake_copy import copy_companions, copy_objects, value_keys

    from lakehouse.generate import GeneratorOptions, generate_lake
    from lakehouse.state.engine import LocalEngine
    from lakehouse.warehouse.bigquery_fold import BigQueryEngine

    work = Path(args.workdir)
    lake = work / f"lake-{args.events}-s{args.seed}-f{args.flush_size}"
    if not lake.exists():
        print(f"generating {args.events:,} events into {lake}")
        generate_lake(lake, GeneratorOptions(events=args.events, seed=args.seed, flush_size=args.flush_size))
    late = set(held_back(lake, 0.01))
    base = work / "lake-base"
    shutil.rmtree(base, ignore_errors=True)
    copy_companions(lake, base)
    copy_objects(lake, base, [k for k in value_keys(lake) if k not in late])

    (work / "emulator").mkdir(parents=True, exist_ok=True)
    proc, emulator = _start(work / "emulator")
    try:
        client = emulator.client()
        engines = {
            "local": LocalEngine(),
            "bigquery": BigQueryEngine(client, f"{emulator.project}.bench_engine"),
        }
        rows = []
        for name, engine in engines.items():
            for label in ("full", "inc"):
                shutil.rmtree(work / f"state-{name}-{label}", ignore_errors=True)
            full = run(lake, work / f"state-{name}-full", engine)
            run(base, work / f"state-{name}-inc", engine)
            copy_objects(lake, base, sorted(late))
            inc = run(base, work / f"state-{name}-inc", engine)
            for k in late:  # the next engine starts from the base lake again
                (base / k).unlink()
            ok = same_rows(work / f"state-{name}-full", work / "state-local-full") and same_rows(
                work / f"state-{name}-inc", work / "state-local-full"
            )
            rows.append((name, full, inc, ok))
    finally:
        _stop(proc)

    reads = script_reads()
    print(f"\n{args.events:,} events, 1 % increment = {len(late)} objects\n")
    print(
        "| engine | run | events | seconds | folds | fold input bytes | bytes / event | increment / full | same rows |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, full, inc, ok in rows:
        for label, r in (("full", full), ("1 % increment", inc)):
            share = (
                f"{inc['input_bytes'] / full['input_bytes']:.1%}"
                if label != "full" and full["input_bytes"]
                else "-"
            )
            per_event = f"{r['input_bytes'] / r['events']:.0f}" if r["events"] and r["input_bytes"] else "-"
            print(
                f"| {name} | {label} | {r['events']:,} | {r['seconds']:.1f} | {r['folds']} | {r['input_bytes']:,} | "
                f"{per_event} | {share} | {'OK' if ok else 'DIFFERENT'} |"
            )
    bq_full = rows[-1][1]
    per_event = bq_full["input_bytes"] / bq_full["events"]
    day = 1e9 * per_event * reads
    print(f"\none fold's script reads {reads} tables (every FROM/JOIN; each at most the fold's rows)")
    print(
        f"1 B events/day, on paper: {1e9 * per_event / TIB:.2f} TiB of fold input; at most {day / TIB:.1f} TiB "
        f"read by the scripts = ${day / TIB * ON_DEMAND_USD_PER_TIB:,.0f}/day on demand "
        f"(${ON_DEMAND_USD_PER_TIB}/TiB); load jobs are free"
    )


if __name__ == "__main__":
    main()
