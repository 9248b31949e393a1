"""Benchmark: one tick of the lake sensor on a large lake, beside a naive full re-list each tick.

A synthetic lake of ``--objects`` tiny objects (keys as the S3 sink writes them:
``topics/<topic>/partition=<p>/<topic>+<p>+<offset, 10 digits>.snappy.parquet``, the six Eco2
topics of config/tables.yaml, ``--partitions`` Kafka partitions each; contents are a few bytes,
since a sensor tick never reads them) in a local folder, and with ``--s3`` also in a bucket of a
moto S3 server on loopback (its own process, like tests/conftest.py's ``moto_s3``).

Measured in one fresh process per backend, each tick ``--repeat`` times (median shown):

* ``watch()`` first tick: no cursor, a full listing (the sensor's first tick, and its hourly one);
* ``watch()`` incremental, nothing new: per-folder ``StartAfter`` listings from the cursor;
* ``watch()`` incremental after ``--new`` objects landed (spread over every topic and partition);
* baseline, the same run: a naive sensor re-lists the whole lake each tick, either
  ``watch(store, None)`` or ``store.list("topics/")`` into a set diffed with the previous one;
* the real Dagster sensor (``assets.raw.lake_sensor``) evaluated through
  ``dagster.build_sensor_context`` with the ``lake`` and ``state`` resources, for the same three
  cases (after one unmeasured warm-up evaluation, as in the daemon's long-lived code server): watch() plus Dagster's own overhead (run requests, observations, cursor) — not the
  daemon's gRPC round trip to the code server nor its run submission.

    .venv/bin/python bench/bench_sensor.py                       # 100k objects, local folder
    .venv/bin/python bench/bench_sensor.py --objects 100000 --s3 # local and moto S3

The new objects a run lands are removed at its end; the lake itself is rebuilt each run in
``--workdir`` (a few seconds locally; S3 uploads take longer, see the report).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from common import (
    AWS_OVERRIDES,
    MOTO_REGION,
    busy_seconds,
    machine,
    moto_env,
    moto_server,
    peak_rss_mb,
    phase_command,
    phase_result,
    run_phase_here,
    stderr_tail,
    text_table,
    timed,
    wait_quiet,
    write_job,
)

ROOT = Path(__file__).resolve().parents[1]
TOPICS = (
    "eco2.auth.users",
    "eco2.scan.scans",
    "eco2.scan.classification_results",
    "eco2.scan.rag_retrievals",
    "eco2.scan.llm_call_log",
    "eco2.scan.feedback",
)
OFFSET_STEP = 1000  # records per object (flush.size): offsets grow by this
BODY = b"PAR1"  # contents never matter to a sensor tick


def object_key(topic: str, partition: int, offset: int) -> str:
    return f"topics/{topic}/partition={partition}/{topic}+{partition}+{offset:010d}.snappy.parquet"


def lake_keys(objects: int, partitions: int) -> list[str]:
    """``objects`` keys spread evenly over every (topic, partition) folder."""
    folders = [(t, p) for t in TOPICS for p in range(partitions)]
    return [object_key(*folders[i % len(folders)], (i // len(folders)) * OFFSET_STEP) for i in range(objects)]


def new_keys(objects: int, partitions: int, batch: int, count: int) -> list[str]:
    """The ``batch``-th group of ``count`` new objects: after every existing one in each folder."""
    folders = [(t, p) for t in TOPICS for p in range(partitions)]
    per_folder = -(-objects // len(folders))
    out = []
    for j in range(count):
        n = batch * count + j
        t, p = folders[n % len(folders)]
        out.append(object_key(t, p, (per_folder + n // len(folders)) * OFFSET_STEP))
    return out


# ---------------------------------------------------------------------------------------------
# the measured phase (a fresh process per backend; the last stdout line is its JSON result)
# ---------------------------------------------------------------------------------------------


def phase_measure(job: dict) -> dict:
    os.environ.setdefault("LAKEHOUSE_PSEUDONYM_KEY", "bench")
    sys.path.insert(0, str(ROOT))
    import dagster as dg

    from assets.raw import lake_sensor
    from assets.resources import LakeResource, StateResource
    from lakehouse.lake.store import open_store
    from lakehouse.lake.watch import watch

    uri, repeat, count = job["uri"], job["repeat"], job["new"]
    store = open_store(uri)
    landed: list[str] = []
    batches = iter(range(1_000_000))

    def land() -> None:
        keys = new_keys(job["objects"], job["partitions"], next(batches), count)
        for k in keys:
            store.put_bytes(k, BODY)
        landed.extend(keys)

    def stats(samples: list[tuple[float, object]], new: int | None = None) -> dict:
        secs = [s for s, _ in samples]
        last = samples[-1][1]
        out = {"median": statistics.median(secs), "min": min(secs), "max": max(secs), "n": len(secs)}
        if hasattr(last, "listed"):
            out |= {
                "listed": last.listed,
                "calls": last.calls,
                "found": sum(len(v) for v in last.new.values()),
            }
        if new is not None:
            out["found"] = new
        return out

    res: dict = {}
    cursor = None
    try:
        # watch(): the first tick (full listing), then incremental ticks from its cursor
        first = timed(watch, store, None)
        res["first"] = stats([first])
        cursor = first[1].cursor
        res["objects_seen"] = sum(first[1].cursor.counts.values())
        quiet = [timed(watch, store, cursor) for _ in range(repeat)]
        res["incremental_quiet"] = stats(quiet)
        after = []
        for _ in range(repeat):
            land()
            s = timed(watch, store, cursor)
            after.append(s)
            if sum(len(v) for v in s[1].new.values()) != count:
                raise RuntimeError(
                    f"incremental tick found {sum(len(v) for v in s[1].new.values())} "
                    f"new objects, {count} landed"
                )
            cursor = s[1].cursor
        res["incremental_new"] = stats(after)

        # baselines: a naive sensor re-lists the whole lake each tick
        res["naive_watch"] = stats([timed(watch, store, None) for _ in range(repeat)])
        seen = {o.key for o in store.list("topics/")}
        naive = []
        for _ in range(repeat):
            land()
            t = time.perf_counter()
            now = {o.key for o in store.list("topics/")}
            fresh = now - seen
            naive.append((time.perf_counter() - t, None))
            if len(fresh) != count:
                raise RuntimeError(f"naive listing found {len(fresh)} new objects, {count} landed")
            seen = now
        res["naive_list"] = stats(naive, count)
        res["naive_list"]["listed"] = len(seen)
        cursor = watch(store, cursor).cursor  # catch the cursor up with the naive landings
    except Exception as exc:  # noqa: BLE001 (what was measured so far is kept)
        res["error"] = f"{type(exc).__name__}: {exc}"
        res["traceback"] = traceback.format_exc()[-4000:]
    try:
        # the Dagster sensor function with its resources (watch + run requests + cursor JSON)
        resources = {
            "lake": LakeResource(uri=uri),
            "state": StateResource(uri=job["state"], tables_config=job["tables_config"]),
        }

        # a SQLite instance as under `dagster dev` (the sensor may query runs, e.g. queued ones per table)
        Path(job["dagster_home"]).mkdir(parents=True, exist_ok=True)
        instance = dg.DagsterInstance.local_temp(tempdir=job["dagster_home"])

        def evaluate(cursor_json: str | None):
            with dg.build_sensor_context(cursor=cursor_json, resources=resources, instance=instance) as ctx:
                return lake_sensor(ctx)

        evaluate(cursor.to_json())  # warm-up (the daemon's code server is warm too): not measured
        samples = [timed(evaluate, None) for _ in range(repeat)]
        res["sensor_first"] = stats(samples) | {"runs": len(samples[-1][1].run_requests or [])}
        cur = samples[-1][1].cursor
        samples = [timed(evaluate, cur) for _ in range(repeat)]
        res["sensor_quiet"] = stats(samples) | {"runs": len(samples[-1][1].run_requests or [])}
        samples = []
        for _ in range(repeat):
            land()
            s = timed(evaluate, cur)
            samples.append(s)
            cur = s[1].cursor
        res["sensor_new"] = stats(samples) | {"runs": len(samples[-1][1].run_requests or [])}
    except Exception as exc:  # noqa: BLE001
        res.setdefault("error", f"{type(exc).__name__}: {exc}")
        res.setdefault("traceback", traceback.format_exc()[-4000:])
    finally:
        for k in landed:
            store.delete(k)
    res["peak_rss_mb"] = peak_rss_mb()
    return res


# ---------------------------------------------------------------------------------------------
# the parent: builds the lakes, runs the measuring process per backend, prints and writes
# ---------------------------------------------------------------------------------------------


def build_local(path: Path, keys: list[str]) -> float:
    shutil.rmtree(path, ignore_errors=True)
    t = time.perf_counter()
    for folder in sorted({k.rsplit("/", 1)[0] for k in keys}):
        (path / folder).mkdir(parents=True)
    for k in keys:
        with open(path / k, "wb") as f:
            f.write(BODY)
    return time.perf_counter() - t


@contextlib.contextmanager
def moto_environ():
    """moto's S3 server (common.moto_server), this process's AWS environment pointed at it until the
    end; yields (endpoint, server pid)."""
    with moto_server(new_session=True) as (proc, endpoint):
        pointed = moto_env(endpoint, {})  # just the variables moto needs set
        saved = {k: os.environ.get(k) for k in (*pointed, *AWS_OVERRIDES)}
        try:
            for k in AWS_OVERRIDES:
                os.environ.pop(k, None)
            os.environ |= pointed
            yield endpoint, proc.pid
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def build_s3(endpoint: str, bucket: str, keys: list[str]) -> float:
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "s3", endpoint_url=endpoint, region_name=MOTO_REGION, config=Config(max_pool_connections=16)
    )
    client.create_bucket(Bucket=bucket)
    t = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        for _ in pool.map(lambda k: client.put_object(Bucket=bucket, Key=k, Body=BODY), keys, chunksize=256):
            pass
    return time.perf_counter() - t


def _cpu_of(pid: int | None) -> float:
    import psutil

    if pid is None:
        return 0.0
    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def measure(work: Path, label: str, job: dict, quiet_wait: float, server_pid: int | None = None) -> dict:
    job_path = write_job(work, label, job)
    waited = wait_quiet(quiet_wait) if quiet_wait else 0.0
    print(f"--- {label}: measuring ...", file=sys.stderr, flush=True)
    env = dict(os.environ)
    env.setdefault("LAKEHOUSE_PSEUDONYM_KEY", "bench")
    env["LAKEHOUSE_TABLES_CONFIG"] = job["tables_config"]  # also read when the code location is imported
    t = time.perf_counter()
    busy0, ru0, server0 = busy_seconds(), resource.getrusage(resource.RUSAGE_CHILDREN), _cpu_of(server_pid)
    proc = subprocess.run(
        phase_command(__file__, "measure", job_path),
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
    )
    wall = time.perf_counter() - t
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    server = _cpu_of(server_pid) - server0  # the moto server answering this process
    (work / f"{label}.err").write_text(proc.stderr)
    result = phase_result(proc.stdout) or {
        "error": f"exit code {proc.returncode}, no result; stderr: {stderr_tail(proc.stderr)}"
    }
    result |= {
        "wall_seconds": wall,
        "cpu_cores": own / wall,
        "waited_for_quiet_s": waited,
        "server_cores": server / wall,
        "other_cores": max(0.0, (busy_seconds() - busy0 - own - server) / wall),
    }
    print(
        f"--- {label}: {result.get('error') or f'done in {wall:.0f} s'}, other processes kept "
        f"{result['other_cores']:.1f} cores busy meanwhile",
        file=sys.stderr,
        flush=True,
    )
    return result


ROWS = [  # (result key, label, baseline key)
    ("first", "watch(): first tick (no cursor: full listing)", None),
    ("incremental_quiet", "watch(): incremental, nothing new", "naive_watch"),
    ("incremental_new", "watch(): incremental, {new} new objects", "naive_watch"),
    ("naive_watch", "baseline: watch(store, None) every tick", None),
    ("naive_list", "baseline: list('topics/') + set diff, {new} new", None),
    ("sensor_first", "lake_sensor (Dagster): first tick (full listing)", "naive_watch"),
    ("sensor_quiet", "lake_sensor (Dagster): nothing new", "naive_watch"),
    ("sensor_new", "lake_sensor (Dagster): {new} new objects", "naive_watch"),
]


def _ms(x: float) -> str:
    return f"{x * 1000:,.1f}" if x < 10 else f"{x * 1000:,.0f}"


def render(args, results: dict[str, dict], builds: dict[str, float]) -> tuple[str, str]:
    heads = [
        "tick",
        *[f"{b} ms (min-max)" for b in results],
        *[f"{b} × baseline" for b in results],
        "listed / calls",
        "new found",
        "runs",
    ]
    rows = []
    for key, label, base in ROWS:
        row = [label.format(new=args.new)]
        cells, ratios, listed, found, runs = [], [], "-", "-", "-"
        for r in results.values():
            m = r.get(key)
            if not m:
                cells.append("-")
                ratios.append("-")
                continue
            cells.append(f"{_ms(m['median'])} ({_ms(m['min'])}-{_ms(m['max'])})")
            b = r.get(base) if base else None
            ratios.append(f"{m['median'] / b['median']:.3f}×" if b else "")
            if "listed" in m:
                listed = f"{m['listed']:,} / {m.get('calls', '-')}"
            found = f"{m['found']:,}" if "found" in m else found
            runs = str(m["runs"]) if "runs" in m else runs
        rows.append(row + cells + ratios + [listed, found, runs])
    table, md_table = text_table(heads, rows)
    errors = {b: r for b, r in results.items() if "error" in r}
    for b, r in errors.items():
        table += f"\n\n{b}: {r['error']}\n{r.get('traceback', '')}"

    import importlib.metadata as md

    versions = ", ".join(f"{p} {md.version(p)}" for p in ("dagster", "boto3", "moto"))
    folders = len(TOPICS) * args.partitions
    md_lines = [
        f"# Sensor tick benchmark, {args.objects:,} objects ({datetime.now(UTC):%Y-%m-%d})",
        "",
        f"Machine: {machine()}. Versions: {versions}.",
        "",
        "Command: `" + " ".join([".venv/bin/python bench/bench_sensor.py", *sys.argv[1:]]) + "`",
        "",
        f"Lake: {args.objects:,} objects of {len(BODY)} bytes in {folders} folders ({len(TOPICS)} topics × "
        f"{args.partitions} Kafka partitions, default partitioner), keys as the S3 sink writes them. "
        + "; ".join(f"{b}: built in {s:.0f} s" for b, s in builds.items())
        + ".",
        "",
        f"Each tick {args.repeat}× (moto S3: {args.s3_repeat}×) in one fresh process per backend (median, "
        "min-max; the first tick of `watch()` once, the first call in the process). `× baseline` = the "
        "tick's median ÷ a naive full re-list (`watch(store, None)`) measured in the same process. "
        "`listed / calls` = objects the listing returned / listing calls (S3 LIST requests before "
        "pagination: 1,000 keys a page), from `WatchResult` of the last repeat. "
        f"Before each 'new objects' tick, {args.new} objects land spread over every folder. "
        "`lake_sensor (Dagster)` is the real sensor evaluated with `build_sensor_context` and its "
        "resources (it also loads the tables config and builds run requests); the daemon adds its gRPC "
        "call to the code server and run submission on top. A full listing pays one LIST request per 1,000 "
        "keys besides the calls counted (100+ at 100k objects); an incremental tick pays 1 + topics + folders "
        "calls, whatever the lake's size. moto's milliseconds are not S3's: moto filters every key of the "
        "bucket on each LIST request (about 0.1 s per call at 100k keys, where S3 answers a StartAfter "
        "listing in tens of milliseconds), so its incremental ticks look slower than S3's would; the "
        "listed / calls columns carry over to S3.",
        "",
        *md_table,
    ]
    for b, r in results.items():
        if "wall_seconds" in r and "peak_rss_mb" in r:
            server = f", the moto server {r['server_cores']:.1f}" if r.get("server_cores") else ""
            md_lines += [
                "",
                f"{b}: the measuring process ran {r['wall_seconds']:.0f} s, kept "
                f"{r['cpu_cores']:.1f} cores busy on average{server}, while other processes kept "
                f"{r['other_cores']:.1f} busy (of {os.cpu_count()}: above ~0.2 the machine was shared "
                f"and the times are inflated); peak RSS {r['peak_rss_mb']:,.0f} MB.",
            ]
    for b, r in errors.items():
        md_lines += ["", f"{b} failed: `{r['error']}`", "", "```", r.get("traceback", ""), "```"]
    return table, "\n".join(md_lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--objects", type=int, default=100_000, help="objects in the lake")
    ap.add_argument("--partitions", type=int, default=4, help="Kafka partitions per topic (folders)")
    ap.add_argument("--new", type=int, default=50, help="objects landing before an incremental tick")
    ap.add_argument("--repeat", type=int, default=5, help="ticks measured per case")
    ap.add_argument("--s3", action="store_true", help="also on moto S3 (loopback server)")
    ap.add_argument(
        "--s3-repeat",
        type=int,
        default=3,
        help="ticks per case on moto S3 (moto answers a 100k-object listing slowly)",
    )
    ap.add_argument(
        "--quiet-wait",
        type=float,
        default=120.0,
        help="wait at most this long for an idle machine before each measuring process",
    )
    ap.add_argument("--workdir", default="/tmp/bench-sensor")
    ap.add_argument("--report", default=str(ROOT / "bench" / "results" / "sensor.md"))
    ap.add_argument("--phase", help=argparse.SUPPRESS)
    ap.add_argument("--job", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phase:
        run_phase_here(phase_measure, args.job)
        return

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    keys = lake_keys(args.objects, args.partitions)
    # the sensor maps topics to tables with a tables config: the six topics, written here (the repo's
    # config/tables.yaml may be mid-edit while this runs; the sensor only reads topics and tables)
    tables_config = work / "tables.yaml"
    tables_config.write_text(
        "tables:\n" + "".join(f"  - topic: {t}\n    primary_key: [id]\n" for t in TOPICS)
    )
    job = {
        "objects": args.objects,
        "partitions": args.partitions,
        "new": args.new,
        "repeat": args.repeat,
        "state": str(work / "state"),
        "tables_config": str(tables_config),
    }
    shutil.rmtree(work / "dagster", ignore_errors=True)
    results: dict[str, dict] = {}
    builds: dict[str, float] = {}
    print(f"--- local: writing {len(keys):,} objects ...", file=sys.stderr, flush=True)
    builds["local"] = build_local(work / "lake", keys)
    results["local"] = measure(
        work,
        "local",
        job | {"uri": str(work / "lake"), "dagster_home": str(work / "dagster" / "local")},
        args.quiet_wait,
    )
    if args.s3:
        with moto_environ() as (endpoint, server_pid):
            print(f"--- s3: uploading {len(keys):,} objects to moto ...", file=sys.stderr, flush=True)
            builds["moto S3"] = build_s3(endpoint, "lake", keys)
            results["moto S3"] = measure(
                work,
                "s3",
                job
                | {
                    "uri": "s3://lake",
                    "repeat": args.s3_repeat,
                    "dagster_home": str(work / "dagster" / "s3"),
                },
                args.quiet_wait,
                server_pid,
            )
    shutil.rmtree(work / "lake", ignore_errors=True)

    table, markdown = render(args, results, builds)
    print(table)
    report = Path(args.report)
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(markdown)
    print(f"\nreport: {report}")


if __name__ == "__main__":
    main()
