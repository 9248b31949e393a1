"""Benchmark: generate an Eco2 lake, then read it all back with LakeReader.iter_changes.

Runs the same pipeline twice — a baseline at 1/10 of the events and the requested size — each
phase (generate, read) in a fresh process so peak RSS is per phase. If memory is flat, peak RSS
at N is close to peak RSS at N/10; throughput should be similar too.

    .venv/bin/python bench/bench_generate.py --events 1000000 [--lake /tmp/bench-lake]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import peak_rss_mb


def phase_generate(lake: str, events: int, extra: dict) -> dict:
    from lakehouse.generate import GeneratorOptions, generate_lake

    rss0 = peak_rss_mb()
    t = time.perf_counter()
    report = generate_lake(lake, GeneratorOptions(events=events, **extra))
    seconds = time.perf_counter() - t
    return {
        "events": report.events,
        "objects": report.objects,
        "bytes": report.bytes,
        "seconds": seconds,
        "peak_rss_mb": peak_rss_mb(),
        "rss_after_import_mb": rss0,
    }


def phase_read(lake: str) -> dict:
    from lakehouse.lake.reader import LakeReader

    rss0 = peak_rss_mb()
    t = time.perf_counter()
    reader = LakeReader(lake)
    rows = 0
    for topic in reader.scan().topics:
        plan = reader.plan(topic)
        for batch in reader.iter_changes(plan):
            rows += batch.num_rows
    seconds = time.perf_counter() - t
    return {"rows": rows, "seconds": seconds, "peak_rss_mb": peak_rss_mb(), "rss_after_import_mb": rss0}


def _child(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--lake", default=None, help="folder for the lakes (default: a temp folder, removed)")
    ap.add_argument(
        "--options", default="{}", help="extra GeneratorOptions as JSON, e.g. '{\"partitions\": 4}'"
    )
    ap.add_argument("--keep", action="store_true", help="keep the generated lakes")
    ap.add_argument("--phase", choices=["generate", "read"], help=argparse.SUPPRESS)
    ap.add_argument("--path", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.phase == "generate":
        print(json.dumps(phase_generate(args.path, args.events, json.loads(args.options))))
        return
    if args.phase == "read":
        print(json.dumps(phase_read(args.path)))
        return

    root = Path(args.lake) if args.lake else Path(tempfile.mkdtemp(prefix="bench-lake-"))
    root.mkdir(parents=True, exist_ok=True)
    results = []
    for label, n in (("baseline N/10", max(1, args.events // 10)), ("N", args.events)):
        path = root / f"lake-{n}"
        shutil.rmtree(path, ignore_errors=True)
        gen = _child(
            ["--phase", "generate", "--path", str(path), "--events", str(n), "--options", args.options]
        )
        read = _child(["--phase", "read", "--path", str(path)])
        results.append((label, n, gen, read))
        print(
            f"{label:>14}: generated {gen['events']:,} events in {gen['seconds']:.1f} s, "
            f"read {read['rows']:,} rows in {read['seconds']:.1f} s",
            file=sys.stderr,
        )
        if not args.keep:
            shutil.rmtree(path, ignore_errors=True)
    if not args.keep and not args.lake:
        shutil.rmtree(root, ignore_errors=True)

    head = (
        f"{'run':<14} {'events':>12} {'objects':>8} {'MB':>9} | {'gen s':>7} {'gen ev/s':>10} "
        f"{'gen RSS MB':>10} | {'read s':>7} {'read rows/s':>11} {'read RSS MB':>11}"
    )
    print(head)
    print("-" * len(head))
    for label, _n, g, r in results:
        print(
            f"{label:<14} {g['events']:>12,} {g['objects']:>8,} {g['bytes'] / 1e6:>9.1f} | "
            f"{g['seconds']:>7.1f} {g['events'] / g['seconds']:>10,.0f} {g['peak_rss_mb']:>10.0f} | "
            f"{r['seconds']:>7.1f} {r['rows'] / r['seconds']:>11,.0f} {r['peak_rss_mb']:>11.0f}"
        )
    (_, _, g0, r0), (_, _, g1, r1) = results
    print(
        f"\npeak RSS N vs N/10: generate {g1['peak_rss_mb'] / g0['peak_rss_mb']:.2f}x, "
        f"read {r1['peak_rss_mb'] / r0['peak_rss_mb']:.2f}x (1.0 = flat; imports alone: "
        f"{g1['rss_after_import_mb']:.0f} MB / {r1['rss_after_import_mb']:.0f} MB)"
    )


if __name__ == "__main__":
    main()
