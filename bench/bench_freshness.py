"""Benchmark: object landed in the lake -> current state committed, under ``dagster dev`` with the
lake sensor running (target: p95 <= 60 s), beside compaction alone in the same run.

1. A staging lake (``generate_lake``, small ``--flush-size`` so every table has many objects) is
   split per table: its newest objects are held back, the rest is hard-linked into the watched
   lake ``<workdir>/home/lake`` and compacted once (``compact()``, a fresh process) so the state
   starts up to date.
2. Baseline, one fresh process per table: the held-back table's first object is added to a copy
   of that lake and state and ``compact(tables=[table])`` applies it (third-party imports outside
   the timer); the process also times ``import orchestration.definitions``, the code a run worker
   loads before its step starts. Compaction alone is the floor of the latency.
3. ``dagster dev -w workspace.yaml`` (cwd the code; ``LAKEHOUSE_HOME=<workdir>/home``,
   ``DAGSTER_HOME=<workdir>/home/dagster`` holding a copy of ``orchestration/dagster.yaml``,
   ``LAKEHOUSE_PSEUDONYM_KEY=bench``) in its own process group; ``lake_sensor`` is started with
   the GraphQL ``startSensor`` mutation; its first tick (a full listing: one run per table, each
   finding nothing new) and those runs are waited out.
4. The held-back objects land one every ``--interval`` seconds, round-robin over the tables (per
   table in Kafka order), each written with write-then-rename (``LocalStore.put_bytes``); the
   landing time is taken when the object is visible. Every 0.5 s the Delta logs of tables with
   pending objects are checked; each new version's manifest (``StateTable.load(version).applied()``)
   says which objects it applied, and its Delta commit timestamp is the object's commit time.
5. From Dagster (GraphQL): the runs and their events (created, starting, worker started,
   step started) split each object's latency into sensor wait, run queue, worker start, step start
   and compaction; the sensor's ticks (count, spacing, duration).

    .venv/bin/python bench/bench_freshness.py                        # 40 objects, one every 6 s
    .venv/bin/python bench/bench_freshness.py --objects 60 --interval 4

Everything lives in ``--workdir`` (the staging lake is kept and reused; the rest is rebuilt
each run). The code location is measured from a snapshot copied there at the start (``src``,
``assets``, ``orchestration``, ``config``, ``dbt_project``; first on ``PYTHONPATH``), so edits to
the repo during the run change nothing measured (``--live-code`` runs the repo itself). ``dagster
dev`` is stopped at the end (its process group, then any process left with this run's
``DAGSTER_HOME``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from common import (
    busy_seconds,
    free_port,
    git_head,
    machine,
    peak_rss_mb,
    phase_command,
    phase_result,
    run_phase_here,
    stderr_tail,
    text_table,
    uncommitted,
    wait_quiet,
    write_job,
)

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = ROOT / ".venv" / "bin"
LOCATION = "cdc_lakehouse"  # workspace.yaml
SENSOR = {"repositoryLocationName": LOCATION, "repositoryName": "__repository__", "sensorName": "lake_sensor"}
ACTIVE = {"QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING"}

Q_SENSOR = """query($s: SensorSelector!) { sensorOrError(sensorSelector: $s) { __typename
  ... on Sensor { sensorState { status ticks(limit: 1000) { status timestamp endTimestamp runIds skipReason } } }
  ... on PythonError { message } ... on SensorNotFoundError { message } } }"""
M_START = """mutation($s: SensorSelector!) { startSensor(sensorSelector: $s) { __typename
  ... on Sensor { sensorState { status } } ... on PythonError { message } ... on SensorNotFoundError { message } } }"""
Q_LOCATION = """query { workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus
  locationOrLoadError { __typename ... on PythonError { message } } } } } }"""
Q_RUNS = """query { runsOrError(filter: {pipelineName: "compact_tables"}, limit: 1000) { __typename
  ... on Runs { results { runId status creationTime startTime endTime tags { key value } } } } }"""
Q_EVENTS = """query($id: ID!) { logsForRun(runId: $id, limit: 5000) { __typename
  ... on EventConnection { events { __typename ... on MessageEvent { timestamp } } } } }"""
RUN_EVENTS = {
    "RunStartingEvent": "starting",
    "RunStartEvent": "started",
    "ExecutionStepStartEvent": "step",
    "RunSuccessEvent": "ended",
    "RunFailureEvent": "ended",
}
SEGMENTS = [  # (name, from point, to point) of an object's timeline: landed -> ... -> committed
    ("sensor wait + tick", "landed", "created"),
    ("run queue", "created", "starting"),
    ("worker start (spawn, code load)", "starting", "started"),
    ("step start", "started", "step"),
    ("compaction to commit", "step", "committed"),
]


# ---------------------------------------------------------------------------------------------
# fresh-process phase: compaction (the seed, or one held-back object of one table)
# ---------------------------------------------------------------------------------------------


def phase_compact(job: dict) -> dict:
    out: dict = {}
    if job.get("load_code"):  # what a run worker imports before its step can start
        t = time.perf_counter()
        import orchestration.definitions

        out["import_seconds"] = time.perf_counter() - t
        out["code_from"] = str(Path(orchestration.definitions.__file__).resolve().parents[1])
    if not job.get("lake"):
        return out
    import deltalake  # noqa: F401  (third-party imports outside the timer)
    import pandas  # noqa: F401
    import polars  # noqa: F401
    import pyarrow.dataset  # noqa: F401
    import pyarrow.parquet  # noqa: F401

    from lakehouse.config import load_config
    from lakehouse.state.compact import compact

    t = time.perf_counter()
    results = compact(job["lake"], job["state"], load_config(), tables=job.get("tables"))
    out["seconds"] = time.perf_counter() - t
    out["tables"] = {
        r.table: {
            "status": r.status,
            "objects": r.objects,
            "events": r.events,
            "seconds": r.seconds,
            "error": r.error,
        }
        for r in results
    }
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def run_phase(work: Path, label: str, job: dict, env: dict, code: Path) -> dict:
    proc = subprocess.run(
        phase_command(__file__, "compact", write_job(work, label, job)),
        capture_output=True,
        text=True,
        cwd=code,
        env=env,
    )
    (work / f"{label}.err").write_text(proc.stderr)
    res = phase_result(proc.stdout) or {"error": f"exit code {proc.returncode}: {stderr_tail(proc.stderr)}"}
    bad = [t["error"] for t in res.get("tables", {}).values() if t.get("error")]
    if "error" in res or bad:
        sys.exit(f"{label}: {res.get('error') or bad}\n{res.get('traceback', '')}")
    if res.get("code_from", str(code)) != str(code):
        sys.exit(f"{label}: loaded the code location from {res['code_from']}, not {code}")
    return res


# ---------------------------------------------------------------------------------------------
# the lake: staging lake, held-back objects
# ---------------------------------------------------------------------------------------------


def plan_landing(
    stage: Path, tables: list[tuple[str, str]], objects: int
) -> tuple[list[str], list[tuple[str, str]]]:
    """(seed keys, [(table, key)] to land in order): the newest objects of each table, round-robin."""
    from lakehouse.lake.layout import IgnoredObject, parse_object_key
    from lakehouse.lake.store import open_store

    store = open_store(stage)
    per_table: dict[str, list[str]] = {}
    seed: list[str] = []
    for topic, table in tables:
        values = []
        for info in store.list(f"topics/{topic}/"):
            ref = parse_object_key(info.key)
            if isinstance(ref, IgnoredObject):
                seed.append(info.key)
            else:
                values.append((ref.kafka_partition, ref.start_offset, info.key))
        per_table[table] = [k for *_, k in sorted(values)]
    take = dict.fromkeys(per_table, 0)
    room = sum(len(v) - 1 for v in per_table.values())
    if room < objects:
        sys.exit(f"the staging lake holds {room} objects to hold back, {objects} asked: raise --events")
    while sum(take.values()) < objects:
        for t, keys in per_table.items():
            if take[t] < len(keys) - 1 and sum(take.values()) < objects:
                take[t] += 1
    queues = {t: keys[len(keys) - take[t] :] for t, keys in per_table.items()}
    for t, keys in per_table.items():
        seed += keys[: len(keys) - take[t]]
    order = []
    while any(queues.values()):
        for t, q in queues.items():
            if q:
                order.append((t, q.pop(0)))
    return seed, order


def link_into(src: Path, dest: Path, keys: list[str]) -> None:
    for k in keys:
        target = dest / k
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src / k, target)
        except OSError:
            shutil.copy2(src / k, target)


# ---------------------------------------------------------------------------------------------
# Dagster: dev server, GraphQL
# ---------------------------------------------------------------------------------------------


class Dagster:
    def __init__(self, env: dict, log: Path, port: int, code: Path):
        self.url = f"http://127.0.0.1:{port}"
        self.home = env["DAGSTER_HOME"]
        self.log = open(log, "w")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(
            [str(VENV_BIN / "dagster"), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
            cwd=code,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.cpu_seen: dict[int, float] = {}  # pid -> user+system seconds, last sample

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dagster dev exited with {self.proc.returncode}; see {self.log.name}")
            with contextlib.suppress(OSError, ValueError):
                with urllib.request.urlopen(f"{self.url}/server_info", timeout=2) as r:
                    json.load(r)
                entries = self.query(Q_LOCATION)["workspaceOrError"].get("locationEntries", [])
                loc = next((e for e in entries if e["name"] == LOCATION), None)
                if loc and loc["loadStatus"] == "LOADED":
                    err = loc["locationOrLoadError"] or {}
                    if err.get("__typename") == "PythonError":
                        raise RuntimeError(f"the code location failed to load: {err['message']}")
                    return  # the webserver answers and the code location is loaded
            if time.monotonic() > deadline:
                raise RuntimeError(f"dagster dev not ready after {timeout:.0f} s; see {self.log.name}")
            time.sleep(1)

    def query(self, q: str, variables: dict | None = None) -> dict:
        body = json.dumps({"query": q, "variables": variables or {}}).encode()
        req = urllib.request.Request(f"{self.url}/graphql", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            out = json.load(r)
        if out.get("errors"):
            raise RuntimeError(f"GraphQL: {out['errors']}")
        return out["data"]

    def ticks(self) -> list[dict]:
        s = self.query(Q_SENSOR, {"s": SENSOR})["sensorOrError"]
        return sorted(s["sensorState"]["ticks"], key=lambda t: t["timestamp"])

    def runs(self) -> list[dict]:
        return self.query(Q_RUNS)["runsOrError"]["results"]

    def run_events(self, run_id: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for e in self.query(Q_EVENTS, {"id": run_id})["logsForRun"].get("events", []):
            name = RUN_EVENTS.get(e["__typename"])
            if name and name not in out and e.get("timestamp"):
                out[name] = int(e["timestamp"]) / 1000
        return out

    def sample_cpu(self) -> None:
        import psutil

        with contextlib.suppress(psutil.Error):
            root = psutil.Process(self.proc.pid)
            for p in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    t = p.cpu_times()
                    self.cpu_seen[p.pid] = t.user + t.system

    def stop(self) -> None:
        """SIGTERM to the process group, SIGKILL after 30 s; then any child that left the group."""
        import psutil

        children = []
        with contextlib.suppress(psutil.Error):
            children = psutil.Process(self.proc.pid).children(recursive=True)
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        _, alive = psutil.wait_procs(children, timeout=10)
        for p in alive:
            with contextlib.suppress(psutil.Error):
                p.kill()
        # processes started meanwhile (a code server reloading, a run worker launching): ours by their
        # DAGSTER_HOME, which is unique to this run
        for _ in range(3):
            ours = []
            for p in psutil.process_iter():
                with contextlib.suppress(psutil.Error):
                    if p.pid != os.getpid() and p.environ().get("DAGSTER_HOME") == self.home:
                        ours.append(p)
            if not ours:
                break
            for p in ours:
                with contextlib.suppress(psutil.Error):
                    p.terminate()
            _, alive = psutil.wait_procs(ours, timeout=10)
            for p in alive:
                with contextlib.suppress(psutil.Error):
                    p.kill()
        self.log.close()


# ---------------------------------------------------------------------------------------------
# watching the state tables
# ---------------------------------------------------------------------------------------------


def delta_version(table_dir: Path) -> int:
    with contextlib.suppress(FileNotFoundError):
        names = os.listdir(table_dir / "_delta_log")
        versions = [int(n[:20]) for n in names if len(n) == 25 and n.endswith(".json") and n[:20].isdigit()]
        return max(versions, default=-1)
    return -1


class StateWatcher:
    """Which pending objects each new Delta version of a state table applied, and when it committed."""

    def __init__(self, state: Path, tables: list[str]):
        self.state = state
        self.seen = {t: delta_version(state / t) for t in tables}
        self.pending: dict[str, dict[str, dict]] = {t: {} for t in tables}
        self.done: list[dict] = []

    def add(self, table: str, record: dict) -> None:
        self.pending[table][record["key"]] = record

    def poll(self) -> None:
        from deltalake import DeltaTable

        from lakehouse.state.table import StateTable

        for table, waiting in self.pending.items():
            if not waiting:
                continue
            now_v = delta_version(self.state / table)
            if now_v <= self.seen[table]:
                continue
            detected = time.time()
            st = StateTable(str(self.state), table)
            stamps = {h["version"]: h["timestamp"] / 1000 for h in DeltaTable(st.uri).history(50)}
            for v in range(self.seen[table] + 1, now_v + 1):
                st.load(version=v)
                applied = set(st.applied().column("key").to_pylist())
                for key in [k for k in waiting if k in applied]:
                    rec = waiting.pop(key)
                    rec |= {"committed": stamps.get(v, detected), "detected": detected, "version": v}
                    self.done.append(rec)
            self.seen[table] = now_v

    def waiting(self) -> int:
        return sum(len(w) for w in self.pending.values())


# ---------------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    """Percentile with linear interpolation between ranks (numpy's default)."""
    s = sorted(values)
    if len(s) == 1:
        return s[0]
    x = (len(s) - 1) * q
    lo = int(x)
    return s[lo] + (s[min(lo + 1, len(s) - 1)] - s[lo]) * (x - lo)


def wait_for(what: str, check, timeout: float, every: float = 1.0):
    deadline = time.monotonic() + timeout
    while True:
        out = check()
        if out:
            return out
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def attribute_runs(records: list[dict], runs: list[dict], dagster: Dagster) -> None:
    """Give each applied object the run that committed it (the run of its table whose first step
    started before the commit and that ended after it) and that run's timeline points."""
    by_table: dict[str, list[dict]] = {}
    for r in runs:
        table = next((t["value"] for t in r["tags"] if t["key"] == "lakehouse/table"), None)
        if r.get("startTime"):
            points = dagster.run_events(r["runId"])
            by_table.setdefault(table, []).append(
                {
                    "run": r["runId"],
                    "created": r["creationTime"],
                    "started": r["startTime"],
                    **{k: v for k, v in points.items() if k in ("starting", "started", "step")},
                    "ended": points.get("ended") or r.get("endTime") or time.time(),
                }
            )
    for rec in records:
        for r in by_table.get(rec["table"], []):
            if r.get("step", r["started"]) <= rec["committed"] <= r["ended"]:
                rec |= {k: v for k, v in r.items() if k != "ended"}
                break


def segments(rec: dict) -> dict[str, float] | None:
    """Split landed -> committed at the run's points, each clipped to the landing time (a run created
    before the object landed, e.g. for an earlier object, still applies it: its wait is 0)."""
    points = ["landed", *(to for *_, to in SEGMENTS)]
    if any(p not in rec for p in points):
        return None
    t = [max(rec[p], rec["landed"]) for p in points]
    for i in range(1, len(t)):
        t[i] = max(t[i], t[i - 1])
    t[-1] = rec["committed"]
    return {name: t[i + 1] - t[i] for i, (name, *_) in enumerate(SEGMENTS)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--objects", type=int, default=40, help="objects landed during the run")
    ap.add_argument("--interval", type=float, default=6.0, help="seconds between landings")
    ap.add_argument("--events", type=int, default=30_000, help="events of the staging lake")
    ap.add_argument("--flush-size", type=int, default=25, help="records per object of the staging lake")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--settle", type=float, default=300.0, help="max wait after the last landing")
    ap.add_argument("--startup-timeout", type=float, default=300.0)
    ap.add_argument(
        "--quiet-wait",
        type=float,
        default=120.0,
        help="wait at most this long for an idle machine before starting dagster dev",
    )
    ap.add_argument("--workdir", default="/tmp/bench-freshness")
    ap.add_argument(
        "--live-code",
        action="store_true",
        help="run the repo's code itself, not a snapshot taken at the start (<workdir>/code)",
    )
    ap.add_argument("--report", default=str(ROOT / "bench" / "results" / "freshness.md"))
    ap.add_argument("--phase", help=argparse.SUPPRESS)
    ap.add_argument("--job", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phase:
        run_phase_here(phase_compact, args.job)
        return

    def say(msg: str) -> None:
        print(f"--- {msg}", file=sys.stderr, flush=True)

    work = Path(args.workdir)
    home = work / "home"
    shutil.rmtree(home, ignore_errors=True)
    for p in work.glob("job-*.json"):
        p.unlink()
    home.mkdir(parents=True)
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("LAKEHOUSE_LAKE", "LAKEHOUSE_STATE", "LAKEHOUSE_DUCKDB", "LAKEHOUSE_TABLES_CONFIG")
    }
    env |= {
        "LAKEHOUSE_HOME": str(home),
        "LAKEHOUSE_PSEUDONYM_KEY": "bench",
        "DAGSTER_HOME": str(home / "dagster"),
        # the venv's tools first, as in an activated venv: the code location runs `dbt` from PATH
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    lake, state = home / "lake", home / "state"

    # the code measured: a snapshot taken now (the repo may change during the run), or the repo itself
    code_start = _code_identity()
    code = ROOT
    if not args.live_code:
        code = work / "code"
        say(f"code snapshot ({code_start}) -> {code}")
        snapshot_code(code)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(code), str(code / "src"), *filter(None, [env.get("PYTHONPATH")])]
        )
        sys.path[:0] = [str(code), str(code / "src")]
    from lakehouse.config import load_config
    from lakehouse.generate import GeneratorOptions, generate_lake
    from lakehouse.lake.store import LocalStore

    interval = int(
        re.search(
            r"SENSOR_INTERVAL_SECONDS\s*=\s*(\d+)", (code / "orchestration" / "sensors.py").read_text()
        )[1]
    )

    # 1. staging lake, seed, seed compaction
    stage = work / f"stage-{args.events}-s{args.seed}-f{args.flush_size}"
    if not (stage / ".bench-generated").exists():
        shutil.rmtree(stage, ignore_errors=True)
        say(f"generating the staging lake ({args.events:,} events, flush size {args.flush_size})")
        generate_lake(stage, GeneratorOptions(events=args.events, seed=args.seed, flush_size=args.flush_size))
        (stage / ".bench-generated").write_text("")
    tables = [(e.topic, e.table) for e in load_config(code / "config" / "tables.yaml").tables]
    seed, order = plan_landing(stage, tables, args.objects)
    link_into(stage, lake, seed)
    say(f"seed lake: {len(seed):,} objects; compacting it")
    seed_res = run_phase(work, "seed", {"lake": str(lake), "state": str(state)}, env, code)

    # 2. baseline: compaction of one held-back object per table, fresh process each
    baseline: dict[str, dict] = {}
    scratch = work / "baseline"
    for table in dict.fromkeys(t for t, _ in order):
        first = next(k for t, k in order if t == table)
        shutil.rmtree(scratch, ignore_errors=True)
        link_into(stage, scratch / "lake", [*seed, first])
        shutil.copytree(state, scratch / "state")
        say(f"baseline: compact one object of {table}")
        baseline[table] = run_phase(
            work,
            f"baseline-{table}",
            {
                "lake": str(scratch / "lake"),
                "state": str(scratch / "state"),
                "tables": [table],
                "load_code": True,
            },
            env,
            code,
        )
    shutil.rmtree(scratch, ignore_errors=True)
    # dagster dev sets DAGSTER_IS_DEV_CLI=1 and its run workers inherit it: the code they load may
    # prepare more in that mode (DbtProject.prepare_if_dev re-parses the dbt project)
    say("baseline: code load with DAGSTER_IS_DEV_CLI=1, as dagster dev's run workers")
    dev_imports = [
        run_phase(work, f"import-dev-{n}", {"load_code": True}, env | {"DAGSTER_IS_DEV_CLI": "1"}, code)[
            "import_seconds"
        ]
        for n in range(3)
    ]

    # 3. dagster dev, the sensor, its first tick (in a lull, if the machine is shared)
    if args.quiet_wait:
        info_wait = wait_quiet(args.quiet_wait)
        say(f"waited {info_wait:.0f} s for an idle machine")
    (home / "dagster").mkdir()
    shutil.copy(code / "orchestration" / "dagster.yaml", home / "dagster" / "dagster.yaml")
    port = free_port()
    say(f"starting dagster dev on port {port} (log: {work / 'dagster-dev.log'})")
    t0 = time.monotonic()
    dagster = Dagster(env, work / "dagster-dev.log", port, code)
    info: dict = {"port": port, "code": code_start if args.live_code else f"snapshot of {code_start}"}
    watcher = StateWatcher(state, [t for _, t in tables])
    busy0 = own0 = 0.0
    try:
        dagster.wait_ready(args.startup_timeout)
        info["startup_seconds"] = time.monotonic() - t0
        say(f"dagster dev ready in {info['startup_seconds']:.0f} s; starting lake_sensor")
        started = dagster.query(M_START, {"s": SENSOR})["startSensor"]
        if started["__typename"] != "Sensor":
            raise RuntimeError(f"startSensor: {started}")
        t0 = time.monotonic()
        first_tick = wait_for(
            "the sensor's first tick",
            lambda: [t for t in dagster.ticks() if t["endTimestamp"]],
            args.startup_timeout,
        )[0]
        wait_for(
            "the first tick's runs",
            lambda: not any(r["status"] in ACTIVE for r in dagster.runs()),
            args.startup_timeout,
            every=2.0,
        )
        info["first_tick"] = {"runs": len(first_tick["runIds"]), "seconds": time.monotonic() - t0}
        say(
            f"first tick: {len(first_tick['runIds'])} runs, all done {info['first_tick']['seconds']:.0f} s "
            "after the sensor started"
        )

        # 4. land objects, watch the state tables
        store = LocalStore(lake)
        say(f"landing {len(order)} objects, one every {args.interval:g} s")
        land_start = time.time()
        busy0, own0 = busy_seconds(), resource.getrusage(resource.RUSAGE_SELF)
        own0 = own0.ru_utime + own0.ru_stime
        dagster.sample_cpu()
        cpu_base = sum(dagster.cpu_seen.values())
        i = 0
        while True:
            now = time.time()
            if i < len(order) and now >= land_start + i * args.interval:
                table, key = order[i]
                store.put_bytes(key, (stage / key).read_bytes())
                watcher.add(table, {"i": i, "table": table, "key": key, "landed": time.time()})
                i += 1
            watcher.poll()
            dagster.sample_cpu()
            if i == len(order) and (
                not watcher.waiting() or now > land_start + i * args.interval + args.settle
            ):
                break
            nxt = land_start + i * args.interval if i < len(order) else now + 0.5
            time.sleep(max(0.0, min(0.5, nxt - time.time())))
        land_end = time.time()
        dagster.sample_cpu()
        wall = land_end - land_start
        own1 = resource.getrusage(resource.RUSAGE_SELF)
        info["cores"] = {
            "dagster": (sum(dagster.cpu_seen.values()) - cpu_base) / wall,
            "bench": (own1.ru_utime + own1.ru_stime - own0) / wall,
        }
        info["cores"]["other"] = max(0.0, (busy_seconds() - busy0) / wall - sum(info["cores"].values()))
        info["window"] = wall
        say(f"{len(watcher.done)}/{len(order)} objects applied; collecting Dagster runs and ticks")

        # 5. Dagster's view
        runs = [r for r in dagster.runs() if r["creationTime"] >= land_start - 60]
        attribute_runs(watcher.done, runs, dagster)
        ticks = [t for t in dagster.ticks() if land_start <= t["timestamp"] <= land_end]
        info["runs"] = {
            "count": len([r for r in runs if r["creationTime"] >= land_start]),
            "committing": len({r["run"] for r in watcher.done if "run" in r}),
            "failed": sum(r["status"] == "FAILURE" for r in runs),
            "statuses": sorted({r["status"] for r in runs}),
        }
        info["ticks"] = {
            "count": len(ticks),
            "requested_runs": sum(len(t["runIds"]) for t in ticks),
            "gap": statistics.median([b["timestamp"] - a["timestamp"] for a, b in zip(ticks, ticks[1:])])
            if len(ticks) > 1
            else None,
            "duration": statistics.median(
                [t["endTimestamp"] - t["timestamp"] for t in ticks if t["endTimestamp"]]
            )
            if ticks
            else None,
        }
    finally:
        say("stopping dagster dev")
        dagster.stop()

    info["dev_imports"] = dev_imports
    if args.live_code and _code_identity() != code_start:
        info["code"] = f"{code_start}, then {_code_identity()} by the end (the code CHANGED during the run)"
    text, markdown = render(args, info, watcher, order, seed, seed_res, baseline, interval)
    print(text)
    report = Path(args.report)
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(markdown)
    (work / "records.json").write_text(json.dumps({"records": watcher.done, "info": info}, default=str))
    print(f"\nreport: {report}\nraw records: {work / 'records.json'}")


SNAPSHOT = ("src", "assets", "orchestration", "config", "dbt_project", "workspace.yaml", "pyproject.toml")


def snapshot_code(dest: Path) -> None:
    """Copy the code location (packages, configs, dbt project) so edits to the repo during the run
    change nothing measured; processes get it first on PYTHONPATH, ahead of the editable install."""
    shutil.rmtree(dest, ignore_errors=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", "logs")
    for name in SNAPSHOT:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=ignore, symlinks=True)
        elif src.exists():
            shutil.copy2(src, dest / name)


def _code_identity() -> str:
    """Which code was measured: HEAD plus uncommitted changes in the code location's folders."""
    head, changed = git_head(), uncommitted("src", "assets", "orchestration", "config")
    return f"{head} (clean)" if not changed else f"{head} + uncommitted changes in {', '.join(changed)}"


def render(
    args,
    info: dict,
    watcher: StateWatcher,
    order: list,
    seed: list,
    seed_res: dict,
    baseline: dict,
    interval: int,
) -> tuple[str, str]:
    import importlib.metadata as md_

    done = sorted(watcher.done, key=lambda r: r["i"])
    lat = [r["committed"] - r["landed"] for r in done]
    det = [r["detected"] - r["landed"] for r in done]
    ok = bool(lat) and len(done) == len(order) and pct(lat, 0.95) <= 60

    def q(values: list[float]) -> list[str]:
        if not values:
            return ["-"] * 4
        return [
            f"{pct(values, 0.5):.1f}",
            f"{pct(values, 0.95):.1f}",
            f"{max(values):.1f}",
            f"{min(values):.1f}",
        ]

    head = ["", "count", "p50 s", "p95 s", "max s", "min s"]
    rows = [
        [
            f"landed -> committed (Delta commit time), lake_sensor every {interval} s",
            f"{len(done)}/{len(order)}",
            *q(lat),
        ],
        ["landed -> seen committed (0.5 s polling)", f"{len(done)}/{len(order)}", *q(det)],
    ]
    segs = [s for s in (segments(r) for r in done) if s]
    for name, *_ in SEGMENTS:
        rows.append([f"  part: {name}", f"{len(segs)}", *q([s[name] for s in segs])])
    imp = [b["import_seconds"] for b in baseline.values()]
    comp = [b["seconds"] for b in baseline.values()]
    rows.append(["baseline: compact() of 1 object (fresh process, per table)", f"{len(comp)}", *q(comp)])
    rows.append(["baseline: import orchestration.definitions (fresh process)", f"{len(imp)}", *q(imp)])
    dev = info.get("dev_imports", [])
    rows.append(
        ["baseline: the same with DAGSTER_IS_DEV_CLI=1 (dagster dev's run workers)", f"{len(dev)}", *q(dev)]
    )
    summary, md_summary = text_table(head, rows)
    verdict = (
        f"p95 {pct(lat, 0.95):.1f} s against the 60 s target: {'MET' if ok else 'NOT MET'}"
        if lat
        else "no object was applied"
    )
    t = info.get("ticks", {})
    runs = info.get("runs", {})
    idle = (
        "; the others found their objects applied by an earlier run"
        if runs.get("committing", 0) < runs.get("count", 0)
        else ""
    )
    dag = (
        f"dagster dev ready in {info.get('startup_seconds', 0):.0f} s; the sensor's first tick (full listing) "
        f"requested {info.get('first_tick', {}).get('runs', '?')} runs, done "
        f"{info.get('first_tick', {}).get('seconds', 0):.0f} s after the start. While landing: "
        f"{t.get('count', 0)} ticks, median spacing {t.get('gap') or 0:.1f} s, median evaluation "
        f"{t.get('duration') or 0:.2f} s, {t.get('requested_runs', 0)} runs requested "
        f"({runs.get('count', 0)} compact_tables runs created, {runs.get('committing', 0)} of them committed "
        f"landed objects{idle}; {runs.get('failed', 0)} failed; statuses at the end "
        f"{', '.join(runs.get('statuses', []))})."
    )
    c = info.get("cores", {})
    cores = (
        f"Average cores busy over the {info.get('window', 0):.0f} s window: dagster dev and its runs "
        f"{c.get('dagster', 0):.2f}, this script (landing, polling) {c.get('bench', 0):.2f}, anything else "
        f"{c.get('other', 0):.2f} (of {os.cpu_count()}: 'anything else' above ~0.2 means a shared machine)."
    )
    per_table = {}
    for r in done:
        per_table.setdefault(r["table"], []).append(r["committed"] - r["landed"])
    base_rows = [
        [
            tbl,
            f"{b['tables'][tbl]['objects']}",
            f"{b['tables'][tbl]['events']:,}",
            f"{b['seconds']:.2f}",
            f"{b['import_seconds']:.1f}",
            f"{len(per_table.get(tbl, []))}",
            f"{pct(per_table[tbl], 0.5):.1f}" if per_table.get(tbl) else "-",
        ]
        for tbl, b in baseline.items()
    ]
    base_txt, base_md = text_table(
        ["table", "objects", "events", "compact() s", "code load s", "landed", "p50 landed -> committed s"],
        base_rows,
    )
    obj_rows = []
    for r in done:
        s = segments(r)
        obj_rows.append(
            [
                str(r["i"]),
                r["table"],
                r["key"].rsplit("/", 1)[-1],
                datetime.fromtimestamp(r["landed"], UTC).strftime("%H:%M:%S.%f")[:-3],
                f"{r['committed'] - r['landed']:.1f}",
                str(r["version"]),
                r.get("run", "-")[:8],
                *([f"{s[n]:.1f}" for n, *_ in SEGMENTS] if s else ["-"] * len(SEGMENTS)),
            ]
        )
    obj_txt, obj_md = text_table(
        ["#", "table", "object", "landed (UTC)", "latency s", "version", "run", *[n for n, *_ in SEGMENTS]],
        obj_rows,
    )
    missing = [f"{k} ({t})" for t, w in watcher.pending.items() for k in w]
    text = "\n\n".join([verdict, summary, dag, cores, base_txt]) + (
        f"\n\nnot applied: {', '.join(missing)}" if missing else ""
    )
    versions = ", ".join(f"{p} {md_.version(p)}" for p in ("dagster", "deltalake"))
    seed_secs = seed_res["seconds"]
    md = [
        f"# Freshness benchmark: object landed -> state committed ({datetime.now(UTC):%Y-%m-%d})",
        "",
        f"Machine: {machine()}. Versions: {versions}. Code: {info.get('code', '?')}.",
        "",
        "Command: `" + " ".join([".venv/bin/python bench/bench_freshness.py", *sys.argv[1:]]) + "`",
        "",
        f"**{verdict}** ({len(done)} of {len(order)} objects applied; lake_sensor interval "
        f"{interval} s, `compact_tables` runs launched by `dagster dev`'s daemon, one process per run).",
        "",
        f"Lake: a staging lake of {args.events:,} generated events (seed {args.seed}, flush size "
        f"{args.flush_size}); {len(seed):,} of its objects were the watched lake from the start (compacted "
        f"in {seed_secs:.1f} s before Dagster started); the {len(order)} newest objects (round-robin over "
        f"the tables, Kafka order within each) landed one every {args.interval:g} s while `lake_sensor` ran.",
        "",
        *md_summary,
        "",
        "Latency = the Delta commit timestamp of the first table version whose manifest lists the object minus "
        "the moment the object became visible in the lake. The parts split it at the committing run's "
        "points: created (by the sensor's tick), RunStarting (the daemon's run queue launched it; the queue "
        "also holds a run while its table's pool is taken), RunStart (the worker process is up and has loaded "
        "the code location), step start; each clipped at the landing time, so an object that lands while a run of "
        "its table is already past a point waits 0 there (the run's compaction lists the topic and applies it). "
        "The baseline rows are measured before Dagster starts, one fresh process per table on a copy of the "
        "lake and state: `compact()` applying just that object, and the import of the code location that "
        "every run worker pays before its step starts; then three processes import it with "
        "`DAGSTER_IS_DEV_CLI=1`, the variable `dagster dev` sets and its run workers inherit.",
        "",
        dag,
        "",
        cores,
        "",
        "Baseline per table, with the landed objects' median latency:",
        "",
        *base_md,
        "",
        "<details><summary>Every landed object</summary>",
        "",
        *obj_md,
        "",
        "</details>",
    ]
    if missing:
        md += ["", f"Not applied within {args.settle:.0f} s of the last landing: {', '.join(missing)}."]
    return text + "\n\n" + obj_txt, "\n".join(md) + "\n"


if __name__ == "__main__":
    main()
