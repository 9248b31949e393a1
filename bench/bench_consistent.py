"""Benchmark: what consistent reads and row history cost, beside the plain compaction, in one run.

A generated lake with transaction topics (``lakehouse generate --transactions``) is compacted
three ways from empty, each into a fresh state, every step timed in this process:

* baseline: ``compact`` of every table, no history (the shipped config with ``history`` off);
* history: ``compact`` with the shipped config (history on for scan.feedback and
  scan.classification_results);
* consistent: ``compact_consistent`` after the baseline (the consistent root to the watermark,
  the transaction topic read, the pointer published).

Then an increment of ``--increment`` (share of the lake) lands and the three run again. Printed:
seconds, events per second, and × baseline for each; peak RSS of the process at the end.

    .venv/bin/python bench/bench_consistent.py                       # 1M events, 1 % increment
    .venv/bin/python bench/bench_consistent.py --events 100000      # smoke run
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

from common import peak_rss_mb, timed

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from lakehouse.config import TablesConfig, load_config  # noqa: E402
from lakehouse.generate.options import GeneratorOptions  # noqa: E402
from lakehouse.generate.run import generate_lake  # noqa: E402
from lakehouse.state.compact import compact  # noqa: E402
from lakehouse.state.consistent import compact_consistent  # noqa: E402


def split_lake(full: Path, head: Path, tail_share: float) -> None:
    """``head``: every topic's objects but the last ``tail_share`` of them (Kafka order)."""
    for topic_dir in (full / "topics").iterdir():
        files = sorted(
            topic_dir.rglob("*"),
            key=lambda p: (p.parent.name, int(p.name.split("+")[-1].split(".")[0]) if "+" in p.name else 0),
        )
        values = [f for f in files if f.is_file() and ".headers." not in f.name and ".keys." not in f.name]
        keep = values[: len(values) - max(1, round(len(values) * tail_share))]
        stems = {_stem(f.name) for f in keep}
        for f in files:
            if f.is_file() and _stem(f.name) in stems:
                dest = head / f.relative_to(full)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(f, dest)


def _stem(name: str) -> str:
    """``<topic>+<partition>+<offset>``: a value file and its companions share it."""
    match = re.match(r"(.*\+\d+)\.", name)
    return match.group(1) if match else name


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--increment", type=float, default=0.01)
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    os.environ.setdefault("LAKEHOUSE_PSEUDONYM_KEY", "bench-only")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-consistent-"))
    full, lake = work / "full", work / "lake"
    if not full.exists():
        generate_lake(
            str(full),
            GeneratorOptions(
                events=args.events, seed=16, transactions=True, flush_size=max(500, args.events // 400)
            ),
        )
    shutil.rmtree(lake, ignore_errors=True)
    split_lake(full, lake, args.increment)
    shipped = load_config()
    plain = TablesConfig(tables=tuple(e.model_copy(update={"history": False}) for e in shipped.tables))
    rows = []
    for step in ("first build", f"{args.increment:.0%} increment"):
        if step != "first build":
            shutil.copytree(full, lake, dirs_exist_ok=True)
        base_s, base = timed(lambda: compact(str(lake), str(work / "base"), plain))
        hist_s, _ = timed(lambda: compact(str(lake), str(work / "hist"), shipped))
        cons_s, cons = timed(lambda: compact_consistent(str(lake), str(work / "base"), plain))
        events = sum(r.events for r in base)
        for name, secs in (
            ("baseline compact", base_s),
            ("compact, history on 2 tables", hist_s),
            ("consistent root (after baseline)", cons_s),
        ):
            rows.append((step, name, secs, events / secs if secs else 0.0, secs / base_s if base_s else 0.0))
        assert all(r.error is None for r in cons), [r.error for r in cons]
    print(f"\n{args.events:,} events, {os.cpu_count()} cores, workdir {work}")
    print(f"{'step':<16} {'run':<34} {'seconds':>8} {'events/s':>12} {'x baseline':>11}")
    for step, name, secs, eps, ratio in rows:
        print(f"{step:<16} {name:<34} {secs:8.2f} {eps:12,.0f} {ratio:11.2f}")
    print(f"peak RSS {peak_rss_mb():,.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
