"""Benchmark: `lakehouse compact` under injected S3 faults and after a kill -9, in one run.

Two parts, each measured against a baseline taken in the same run, every compaction being the real
CLI (``python -m lakehouse.cli compact``) in its own process:

* faults: a lake of ``--events`` (generated locally, kept in the work dir, uploaded with boto3 to
  a moto S3 server this script starts on loopback) is compacted into a fresh state bucket per
  setting, lake and state both read and written through ``tests/support/fault_proxy.py``'s FaultProxy:
  0 % injected errors (the baseline, through the proxy too), then each ``--fault-rates`` setting
  (default 5 % errors + 0.5 % drops, 20 % errors + 2 % drops). A run straight to moto (no proxy)
  shows what the proxy itself costs. Per setting: seconds, events/s, × baseline, the faults the
  proxy injected, the exit code, and whether the resulting state equals the baseline's (every
  table's ``visible_rows()`` sorted by key, read straight from moto, not through the proxy);
* recovery: a lake of ``--recovery-events`` on local folders: an uninterrupted compaction (the
  baseline), then a compaction into a fresh state SIGKILLed after ``--kill-share`` of the baseline
  time (or ``--kill-after`` seconds), the rerun to completion, and a second rerun (nothing to do:
  the floor). The rerun's state is compared with the baseline's the same way.

    .venv/bin/python bench/bench_chaos.py                                    # 1M faults + 10M recovery
    .venv/bin/python bench/bench_chaos.py --events 100000 --recovery-events 200000   # smoke run
    .venv/bin/python bench/bench_chaos.py --only recovery --kill-after 20

Lakes are generated once per (events, seed) into the work dir and reused; states are removed at
the end unless ``--keep``. Report: ``bench/results/chaos.md`` (``--report``); raw JSON and the CLI
logs under ``<workdir>/run/``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from common import (
    MOTO_REGION,
    busy_seconds,
    code_identity,
    cpu_model,
    moto_env,
    moto_server,
    phase_command,
    phase_generate,
    phase_result,
    ram_gib,
    run_phase_here,
    stderr_tail,
    text_table,
    wait_quiet,
    write_job,
)

ROOT = Path(__file__).resolve().parents[1]

PARTS = ("faults", "recovery")
PSEUDONYM_KEY = "bench-chaos"


# ---------------------------------------------------------------------------------------------
# phases run in a fresh process (the last stdout line is their JSON result)
# ---------------------------------------------------------------------------------------------


def _large(t):
    """The same type with 64-bit offsets (string -> large_string, ...): sorting a table whose text
    column holds more than 2 GiB would otherwise overflow when the chunks are concatenated."""
    import pyarrow as pa

    if pa.types.is_string(t):
        return pa.large_string()
    if pa.types.is_binary(t):
        return pa.large_binary()
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return pa.large_list(t.value_field.with_type(_large(t.value_type)))
    if pa.types.is_struct(t):
        return pa.struct([t.field(i).with_type(_large(t.field(i).type)) for i in range(t.num_fields)])
    return t


def phase_verify(job: dict) -> dict:
    """Every table's visible rows, sorted by its key, of each state against the reference state:
    equal (schema and values), or what differs."""
    import pyarrow as pa

    from lakehouse.config import load_config
    from lakehouse.state.export import visible_rows

    os.environ.setdefault("LAKEHOUSE_PSEUDONYM_KEY", PSEUDONYM_KEY)
    out: dict[str, dict] = {name: {} for name in job["others"]}
    ref_rows: dict[str, int] = {}
    for entry in load_config().tables:
        key = list(entry.primary_key or [])

        def rows(uri: str, table: str = entry.table, key: list[str] = key) -> tuple[pa.Schema, pa.Table]:
            t = visible_rows(uri, table)
            schema = t.schema
            t = t.cast(pa.schema([f.with_type(_large(f.type)) for f in schema]))
            return schema, t.sort_by([(k, "ascending") for k in (key or t.column_names)])

        try:
            ref_schema, ref = rows(job["reference"])
        except Exception as exc:  # noqa: BLE001 (reported per table)
            for name in job["others"]:
                out[name][entry.table] = f"reference unreadable: {type(exc).__name__}: {str(exc)[:300]}"
            continue
        ref_rows[entry.table] = ref.num_rows
        for name, uri in job["others"].items():
            try:
                schema, got = rows(uri)
            except Exception as exc:  # noqa: BLE001
                out[name][entry.table] = f"unreadable: {type(exc).__name__}: {str(exc)[:300]}"
                continue
            if not schema.equals(ref_schema):
                out[name][entry.table] = f"other schema: {schema} vs {ref_schema}"
            elif got.num_rows != ref.num_rows:
                out[name][entry.table] = f"{got.num_rows:,} rows vs {ref.num_rows:,}"
            elif got.equals(ref):
                out[name][entry.table] = "equal"
            else:
                diff = [c for c in ref.column_names if not got.column(c).equals(ref.column(c))]
                out[name][entry.table] = f"same {ref.num_rows:,} rows, values differ in {', '.join(diff)}"
            del got
        del ref
    return {"tables": out, "reference_rows": ref_rows}


PHASES = {"generate": phase_generate, "verify": phase_verify}


# ---------------------------------------------------------------------------------------------
# the parent
# ---------------------------------------------------------------------------------------------


def _tree_cpu(proc) -> float:
    import psutil

    total = 0.0
    with contextlib.suppress(psutil.Error):
        for p in [proc, *proc.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                total += t.user + t.system
    return total


class Bench:
    def __init__(self, args, run_dir: Path):
        self.args = args
        self.run_dir = run_dir
        self.logs = run_dir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.infra: list = []  # psutil.Process of moto and this process (the proxy's threads)

    # -- a child process -------------------------------------------------------------------

    def phase(self, label: str, phase: str, job: dict, env: dict | None = None) -> dict:
        job_path = write_job(self.run_dir, label, job)
        print(f"--- {label} ...", file=sys.stderr, flush=True)
        t = time.perf_counter()
        done = subprocess.run(
            phase_command(__file__, phase, job_path),
            capture_output=True,
            text=True,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
        )
        (self.logs / f"{label}.err").write_text(done.stderr)
        result = phase_result(done.stdout) or {
            "error": f"exit code {done.returncode}, no result: {stderr_tail(done.stderr)}"
        }
        result["wall_seconds"] = time.perf_counter() - t
        msg = result.get("error") or f"{result['wall_seconds']:.1f} s"
        print(f"--- {label}: {msg}", file=sys.stderr, flush=True)
        return result

    def cli(self, label: str, args: list[str], env: dict, kill_after: float | None = None) -> dict:
        """``lakehouse <args>`` in a fresh process (its own session); SIGKILLed after
        ``kill_after`` seconds if given, or after ``--timeout``. Wall time from spawn to exit."""
        import psutil

        env = {**env, "LAKEHOUSE_PSEUDONYM_KEY": PSEUDONYM_KEY, "COLUMNS": "240", "PYTHONUNBUFFERED": "1"}
        cmd = [sys.executable, "-m", "lakehouse.cli", *args]
        log = self.logs / f"{label}.log"
        print(f"--- {label}: lakehouse {' '.join(args)}", file=sys.stderr, flush=True)
        deadline = kill_after if kill_after is not None else self.args.timeout
        waited = wait_quiet(self.args.quiet_wait)
        busy0 = busy_seconds()
        infra0 = sum(_tree_cpu(p) for p in self.infra)
        with open(log, "w") as fh:
            started = time.perf_counter()
            proc = subprocess.Popen(
                cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True
            )
            ps = psutil.Process(proc.pid)
            own, peak, killed = 0.0, 0.0, None
            while proc.poll() is None:
                own = max(own, _tree_cpu(ps))
                with contextlib.suppress(psutil.Error):
                    peak = max(peak, sum(p.memory_info().rss for p in [ps, *ps.children(recursive=True)]))
                if time.perf_counter() - started >= deadline:
                    killed = time.perf_counter() - started
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                    break
                time.sleep(0.05)
            wall = time.perf_counter() - started
        infra = sum(_tree_cpu(p) for p in self.infra) - infra0
        output = log.read_text(errors="replace")
        result = {
            "label": label,
            "args": args,
            "seconds": wall,
            "code": proc.returncode,
            "waited_for_quiet": waited,
            "killed_at": killed,
            "timed_out": killed is not None and kill_after is None,
            "cpu_cores": own / wall,
            "infra_cores": infra / wall,
            "other_cores": max(0.0, (busy_seconds() - busy0 - own - infra) / wall),
            "peak_rss_mb": peak / 2**20,
            "tables": parse_summary(output),
            "cpu_seconds": own,
            # the CLI's own error lines (the log's ERROR lines say the same), tracebacks
            "errors": [x.strip() for x in output.splitlines() if x.startswith(("error", "Traceback"))][:20],
            # the product's retry layer: a request retried, or a batch resumed from the last commit
            "retry_warnings": sum("transient storage error" in x for x in output.splitlines()),
        }
        result["events"] = sum(t["events"] for t in result["tables"].values())
        msg = (
            f"killed at {killed:.1f} s"
            if killed
            else f"exit {proc.returncode} in {wall:.1f} s, {result['events']:,} events"
        )
        print(f"--- {label}: {msg}", file=sys.stderr, flush=True)
        return result


def parse_summary(output: str) -> dict[str, dict]:
    """The CLI's summary table (rich, box characters): table -> status, objects, events, rows."""
    tables = {}
    for line in output.splitlines():
        cells = [c.strip() for c in line.split("│")]
        if len(cells) == 12 and cells[0] == "" and cells[-1] == "" and cells[1] != "table":
            try:
                nums = [int(c.replace(",", "")) for c in cells[3:10]]
            except ValueError:
                continue
            tables[cells[1]] = {
                "status": cells[2],
                "objects": nums[0],
                "events": nums[1],
                "rows": nums[6],
                "seconds": float(cells[10]),
            }
    return tables


def ensure_lake(bench: Bench, events: int, seed: int) -> tuple[Path, dict]:
    """A lake of ``events`` generated once into the work dir (a record beside it), then reused."""
    lake = Path(bench.args.workdir) / f"lake-{events}-s{seed}"
    record = lake.with_name(lake.name + ".json")
    if record.exists() and lake.is_dir():
        gen = json.loads(record.read_text())
        gen["reused"] = True
        print(f"--- reusing {lake} ({gen['events']:,} events)", file=sys.stderr)
        return lake, gen
    shutil.rmtree(lake, ignore_errors=True)
    gen = bench.phase(f"generate-{events}", "generate", {"lake": str(lake), "events": events, "seed": seed})
    if "error" in gen:
        sys.exit(f"generation failed: {gen['error']}\n{gen.get('traceback', '')}")
    record.write_text(json.dumps(gen))
    return lake, gen


def upload(lake: Path, client, bucket: str) -> dict:
    from concurrent.futures import ThreadPoolExecutor

    files = [p for p in lake.rglob("*") if p.is_file() and not p.name.startswith(".")]
    t = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda p: client.upload_file(str(p), bucket, p.relative_to(lake).as_posix()), files))
    return {
        "objects": len(files),
        "bytes": sum(p.stat().st_size for p in files),
        "seconds": time.perf_counter() - t,
    }


def compact_args(lake: str, state: str, args) -> list[str]:
    extra = []
    if args.batch_events:
        extra += ["--batch-events", str(args.batch_events)]
    if args.workers:
        extra += ["--workers", str(args.workers)]
    return ["compact", "--lake", lake, "--state", state, *extra]


def part_faults(bench: Bench, args) -> dict:
    import boto3
    import psutil
    from support.fault_proxy import FaultProxy

    lake, gen = ensure_lake(bench, args.events, args.seed)
    settings = [("0 % (baseline)", 0.0, 0.0)]
    for spec in filter(None, (s.strip() for s in args.fault_rates.split(","))):
        err, _, drop = spec.partition(":")
        settings.append(
            (f"{float(err):.0%} errors + {float(drop or 0):.1%} drops", float(err), float(drop or 0))
        )
    out: dict = {"lake": str(lake), "generate": gen, "runs": []}
    with moto_server(bench.logs / "moto.log") as (server, endpoint):
        bench.infra = [psutil.Process(server.pid), psutil.Process()]
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name=MOTO_REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        client.create_bucket(Bucket="lake")
        out["upload"] = upload(lake, client, "lake")
        print(
            f"--- uploaded {out['upload']['objects']} objects in {out['upload']['seconds']:.1f} s",
            file=sys.stderr,
            flush=True,
        )
        direct_env = moto_env(endpoint)
        for k, v in (
            ("LAKEHOUSE_STORAGE_ATTEMPTS", args.attempts),
            ("LAKEHOUSE_STORAGE_RETRY_SECONDS", args.retry_seconds),
        ):
            if v is not None:
                direct_env[k] = str(v)
        plan = ([("direct", None, None)] if args.direct else []) + settings
        states: dict[str, str] = {}
        for i, (label, err, drop) in enumerate(plan):
            bucket = f"state-{i}"
            client.create_bucket(Bucket=bucket)
            state = f"s3://{bucket}"
            argv = compact_args("s3://lake", state, args)
            if err is None:
                r = bench.cli(f"s3-{i}-direct", argv, direct_env)
                r.update(setting=label + " (no proxy)", error_rate=None, drop_rate=None)
                states[r["setting"]] = state
                out["runs"].append(r)
                continue
            with FaultProxy(endpoint, error_rate=err, drop_rate=drop, seed=args.seed + i) as proxy:
                env = {**direct_env, "AWS_ENDPOINT_URL": proxy.endpoint}
                for attempt in range(1 + args.reruns):
                    seen = (proxy.requests, proxy.injected_errors, proxy.dropped)
                    name = f"s3-{i}-e{err:g}-d{drop:g}" + (f"-rerun{attempt}" if attempt else "")
                    r = bench.cli(name, argv, env)
                    r.update(
                        setting=label + (f", rerun {attempt} (same faults)" if attempt else ""),
                        error_rate=err,
                        drop_rate=drop,
                        rerun=attempt,
                        requests=proxy.requests - seen[0],
                        injected_errors=proxy.injected_errors - seen[1],
                        dropped=proxy.dropped - seen[2],
                    )
                    out["runs"].append(r)
                    if r["code"] == 0 or attempt == args.reruns:
                        break
                    r["state_note"] = "(see the rerun)"
            states[r["setting"]] = state  # the last run's: the state as the reruns left it
        base_label = settings[0][0]
        others = {k: v for k, v in states.items() if k != base_label}
        if not args.no_verify and others:
            ver = bench.phase(
                "verify-faults", "verify", {"reference": states[base_label], "others": others}, env=direct_env
            )  # straight to moto, not through the proxy
            out["verify"] = ver
        bench.infra = []
    return out


def part_recovery(bench: Bench, args) -> dict:
    lake, gen = ensure_lake(bench, args.recovery_events, args.seed)
    states = bench.run_dir / "recovery"
    shutil.rmtree(states, ignore_errors=True)
    states.mkdir(parents=True)
    env = dict(os.environ)
    out: dict = {"lake": str(lake), "generate": gen}
    base_state, state = str(states / "baseline"), str(states / "killed")
    out["baseline"] = bench.cli("recovery-baseline", compact_args(str(lake), base_state, args), env)
    kill_at = args.kill_after if args.kill_after is not None else args.kill_share * out["baseline"]["seconds"]
    out["kill_at"] = kill_at
    out["killed"] = bench.cli(
        "recovery-killed", compact_args(str(lake), state, args), env, kill_after=kill_at
    )
    out["committed_before_kill"] = _committed(state)
    out["rerun"] = bench.cli("recovery-rerun", compact_args(str(lake), state, args), env)
    out["noop"] = bench.cli("recovery-noop", compact_args(str(lake), state, args), env)
    if not args.no_verify:
        out["verify"] = bench.phase(
            "verify-recovery", "verify", {"reference": base_state, "others": {"rerun": state}}
        )
    return out


def _committed(state: str) -> dict[str, int | None]:
    """Per table, the Delta version the killed run left committed (None: no table yet)."""
    from lakehouse.config import load_config

    res = {}
    for entry in load_config().tables:
        log = Path(state) / entry.table / "_delta_log"
        versions = (
            [int(p.name.split(".")[0]) for p in log.glob("*.json") if p.name.split(".")[0].isdigit()]
            if log.is_dir()
            else []
        )
        res[entry.table] = max(versions) if versions else None
    return res


# ---------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------


def _machine() -> str:
    # nproc, not os.cpu_count(): the cores this process may use (a cgroup or affinity may limit them)
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip() or str(os.cpu_count())
    return (
        f"nproc {nproc} ({cpu_model()}), {ram_gib():.1f} GiB RAM, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
    )


def _origin(gen: dict) -> str:
    return "reused from an earlier run" if gen.get("reused") else f"generated in {gen['seconds']:.0f} s"


def _same(ver: dict | None, name: str) -> str:
    if ver is None:
        return "-"
    if "error" in ver:
        return f"verify failed: {ver['error']}"
    tables = ver.get("tables", {}).get(name)
    if not tables:
        return "-"
    bad = {t: v for t, v in tables.items() if v != "equal"}
    return (
        f"yes ({len(tables)} tables)" if not bad else "NO: " + "; ".join(f"{t}: {v}" for t, v in bad.items())
    )


def _status(r: dict) -> str:
    if r.get("timed_out"):
        return f"killed after the {r['killed_at']:.0f} s timeout"
    statuses = sorted({t["status"] for t in r["tables"].values()})
    return f"exit {r['code']}" + (f" ({', '.join(statuses)})" if statuses else "")


def render(
    args, code: str, faults: dict | None, rec: dict | None, started: datetime, wall: float
) -> tuple[str, str]:
    text: list[str] = []
    md = [
        f"# Chaos benchmark: `lakehouse compact` under S3 faults and kill -9 ({started:%Y-%m-%d})",
        "",
        f"Machine: {_machine()}. Date: {started:%Y-%m-%d %H:%M} UTC; the run took {wall / 60:.1f} min.",
        "",
        "Command: `.venv/bin/python bench/bench_chaos.py" + "".join(f" {a}" for a in sys.argv[1:]) + "`",
        "",
        f"Product code: {code}.",
        "",
        "Compaction options: "
        + (
            f"`--batch-events {args.batch_events}`"
            if args.batch_events
            else "the CLI's default batch (`--batch-events 250000`)"
        )
        + ", "
        + (f"`--workers {args.workers}`" if args.workers else "default workers (one per core, at most 4)")
        + ". "
        f"Storage retries: LAKEHOUSE_STORAGE_ATTEMPTS="
        f"{args.attempts if args.attempts is not None else os.environ.get('LAKEHOUSE_STORAGE_ATTEMPTS', '8 (default)')}, "
        f"LAKEHOUSE_STORAGE_RETRY_SECONDS="
        f"{args.retry_seconds if args.retry_seconds is not None else os.environ.get('LAKEHOUSE_STORAGE_RETRY_SECONDS', '120 (default)')}.",
        "",
    ]
    if faults:
        gen, up = faults["generate"], faults.get("upload", {})
        runs = faults["runs"]
        base = next((r for r in runs if r.get("error_rate") == 0.0), None)
        N = gen["events"]
        heads = [
            "setting",
            "seconds",
            "× baseline",
            "events applied",
            "events/s",
            "CPU s",
            "requests",
            "injected errors",
            "drops",
            "product retries logged",
            "exit",
            "state = baseline's",
            "cores cli/moto+proxy/other",
        ]
        rows = []
        for r in runs:
            s = r["seconds"]
            rows.append(
                [
                    r["setting"],
                    f"{s:.1f}",
                    f"{s / base['seconds']:.2f}×" if base else "-",
                    f"{r['events']:,}",
                    f"{N / s:,.0f}" if r["code"] == 0 else f"({r['events'] / s:,.0f})",
                    f"{r['cpu_seconds']:.1f}",
                    f"{r['requests']:,}" if "requests" in r else "-",
                    f"{r['injected_errors']:,}" if "injected_errors" in r else "-",
                    f"{r['dropped']:,}" if "dropped" in r else "-",
                    str(r["retry_warnings"]),
                    _status(r),
                    "(reference)"
                    if r is base
                    else r.get("state_note") or _same(faults.get("verify"), r["setting"]),
                    f"{r['cpu_cores']:.1f} / {r['infra_cores']:.1f} / {r['other_cores']:.1f}",
                ]
            )
        t, m = text_table(heads, rows)
        lake_line = (
            f"lake: {N:,} events, {gen['objects']:,} objects, {gen['bytes'] / 1e6:,.0f} MB "
            f"({_origin(gen)}, seed {args.seed}), "
            f"uploaded to moto in {up.get('seconds', 0):.0f} s"
        )
        text += ["== S3 faults: lake and state on moto S3, through the fault proxy", lake_line, "", t, ""]
        md += [
            f"## Throughput under injected S3 faults ({N:,} events)",
            "",
            lake_line + ". Lake and state both on a moto S3 server on loopback (started by the script); "
            "each setting compacts the whole lake into a fresh state bucket, through "
            "`tests/support/fault_proxy.py` (requests the proxy answers with 500 InternalError / "
            "503 SlowDown, or closes without an answer, never reach moto). The baseline goes through the proxy too "
            "(at 0 %); the no-proxy row shows the proxy's own cost.",
            "",
            *m,
            "",
            "seconds: wall time of the CLI process, interpreter start and imports included; × baseline "
            "divides it by the 0 % run's. events applied: the sum of the CLI's summary (less than the lake "
            "when a table failed; it also under-counts when a batch's commit landed but a later request "
            "of the same attempt failed: the table resumes from that commit and reports itself "
            "up-to-date with 0 events). events/s: the lake's events ÷ seconds for a run that exited 0, "
            "(events applied ÷ seconds) for one that failed. CPU s: CPU time of the CLI process. "
            "requests: HTTP requests the proxy saw (retries included). product retries logged: the "
            "product's own retry layer logging a transient error (a request retried, or a batch resumed "
            "from its last commit); the SDKs' internal retries (boto3, pyarrow's AWS SDK, delta-rs) are "
            "silent. A failed setting is run again under the same faults (`--reruns`), into the same "
            "state bucket, as its message asks. state = baseline's: every table's `visible_rows()` sorted by its "
            "key, read straight from moto, equal to the baseline's. cores: average cores busy in the "
            "CLI process / in moto's server and this script (the proxy) / anything else on the machine "
            "(2 cores in all).",
        ]
        errs = [(r["setting"], r["errors"]) for r in runs if r["errors"] or r["code"] not in (0, None)]
        if errs:
            md += ["", "Errors printed by the CLI:", ""]
            for label, lines in errs:
                md += [f"- {label}:", "", "```", *(lines or ["(none printed)"]), "```"]
                text += [f"errors ({label}):", *(f"  {x}" for x in lines)]
    if rec:
        gen = rec["generate"]
        N = gen["events"]
        b, k, r1, r2 = rec["baseline"], rec["killed"], rec["rerun"], rec["noop"]
        B = b["seconds"]
        heads = [
            "run",
            "seconds",
            "× baseline",
            "CPU s",
            "events applied",
            "outcome",
            "peak RSS MB",
            "cores own/other",
        ]

        def row(name: str, r: dict, outcome: str) -> list[str]:
            return [
                name,
                f"{r['seconds']:.1f}",
                f"{r['seconds'] / B:.2f}×",
                f"{r['cpu_seconds']:.1f}",
                f"{r['events']:,}" if r["tables"] else "-",
                outcome,
                f"{r['peak_rss_mb']:,.0f}",
                f"{r['cpu_cores']:.1f} / {r['other_cores']:.1f}",
            ]

        killed_outcome = (
            f"SIGKILL at {k['killed_at']:.1f} s"
            if k["killed_at"] is not None
            else f"finished before the kill ({_status(k)})"
        )
        rows = [
            row("uninterrupted (baseline)", b, _status(b)),
            row(
                f"killed ({args.kill_share:.0%} of baseline)"
                if args.kill_after is None
                else f"killed (after {args.kill_after:g} s)",
                k,
                killed_outcome,
            ),
            row(
                "rerun after the kill",
                r1,
                _status(r1) + "; state = baseline's: " + _same(rec.get("verify"), "rerun"),
            ),
            row("second rerun (nothing to do)", r2, _status(r2)),
        ]
        t, m = text_table(heads, rows)
        lost = k["seconds"] + r1["seconds"] - B
        left = r1["events"]
        committed = rec["committed_before_kill"]
        tables_done = [n for n, v in r1["tables"].items() if v["status"] == "up-to-date"]
        cpu_lost = k["cpu_seconds"] + r1["cpu_seconds"] - b["cpu_seconds"]
        summary = (
            f"rerun / baseline = {r1['seconds'] / B:.2f}; killed run + rerun = "
            f"{(k['seconds'] + r1['seconds']) / B:.2f}× baseline in wall time ({lost:+.1f} s), "
            f"{(k['cpu_seconds'] + r1['cpu_seconds']) / b['cpu_seconds']:.2f}× in CPU time "
            f"({cpu_lost:+.1f} CPU s: the work lost to the kill, less sensitive to other load than "
            f"wall time); the rerun applied {left:,} of {N:,} events "
            f"({left / N:.0%}), so {N - left:,} ({(N - left) / N:.0%}) were committed before the kill; "
            f"tables already complete then: {', '.join(tables_done) or 'none'}; "
            f"second rerun (the floor) {r2['seconds'] / B:.2f}× baseline"
        )
        lake_line = (
            f"lake: {N:,} events, {gen['objects']:,} objects, {gen['bytes'] / 1e6:,.0f} MB, local folders "
            f"({_origin(gen)}, seed {args.seed})"
        )
        text += [
            "== recovery after kill -9 (local folders)",
            lake_line,
            "",
            t,
            "",
            summary,
            f"Delta versions committed per table at the kill: {committed}",
        ]
        md += [
            "",
            f"## Recovery after kill -9 ({N:,} events)",
            "",
            lake_line + ".",
            "",
            "The baseline compacts the lake into a fresh state, uninterrupted. A second compaction into "
            "another fresh state is sent SIGKILL (to its process group) at the time shown; then the same "
            "command is run again until it ends, and once more (nothing left to do: the floor).",
            "",
            *m,
            "",
            summary + ".",
            "",
            "Delta versions the killed run left committed per table (the rerun starts from these; a batch "
            "in flight at the kill is lost and redone): "
            + ", ".join(f"{t} {'-' if v is None else f'v{v}'}" for t, v in committed.items())
            + ".",
            "",
            "Rerun per table: "
            + ", ".join(
                f"{t} {v['status']} ({v['events']:,} events, {v['seconds']:.1f} s)"
                for t, v in r1["tables"].items()
            )
            + ".",
            "",
            "seconds: wall time of the CLI process (start-up included). cores own/other: average cores "
            "busy in the CLI process / in anything else on the machine (2 cores in all: other > 0.2 means "
            "a shared machine inflated the row).",
        ]
        for name, r in (("baseline", b), ("rerun", r1), ("second rerun", r2)):
            if r["errors"] or r["code"] != 0:
                md += ["", f"Errors ({name}):", "", "```", *(r["errors"] or ["(none printed)"]), "```"]
    return "\n".join(text), "\n".join(md) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000, help="lake size of the S3 fault runs")
    ap.add_argument("--recovery-events", type=int, default=10_000_000, help="lake size of the kill -9 runs")
    ap.add_argument(
        "--seed", type=int, default=1, help="generator seed (and the proxy's, plus the setting's index)"
    )
    ap.add_argument("--only", default="", help=f"comma-separated parts to run, from: {','.join(PARTS)}")
    ap.add_argument(
        "--fault-rates",
        default="0.05:0.005,0.2:0.02",
        help="comma-separated ERROR_RATE:DROP_RATE settings after the 0 %% baseline",
    )
    ap.add_argument(
        "--reruns",
        type=int,
        default=1,
        help="after a fault setting's run fails, run the same compaction again under the same "
        "faults, at most this many times (its message says: run again)",
    )
    ap.add_argument(
        "--no-direct",
        dest="direct",
        action="store_false",
        help="skip the run straight to moto (no proxy), which shows the proxy's cost",
    )
    ap.add_argument(
        "--kill-share", type=float, default=0.5, help="SIGKILL after this share of the baseline time"
    )
    ap.add_argument("--kill-after", type=float, default=None, help="SIGKILL after this many seconds instead")
    ap.add_argument(
        "--batch-events", type=int, default=None, help="compact --batch-events (default: the CLI's)"
    )
    ap.add_argument("--workers", type=int, default=None, help="compact --workers (default: the CLI's)")
    ap.add_argument("--attempts", type=int, default=None, help="LAKEHOUSE_STORAGE_ATTEMPTS for the S3 runs")
    ap.add_argument(
        "--retry-seconds", type=float, default=None, help="LAKEHOUSE_STORAGE_RETRY_SECONDS for the S3 runs"
    )
    ap.add_argument("--timeout", type=float, default=1800.0, help="kill a compaction after this many s")
    ap.add_argument(
        "--quiet-wait",
        type=float,
        default=0.0,
        help="before each timed run, wait up to this many s for an idle machine (shared machines)",
    )
    ap.add_argument("--workdir", default="/tmp/bench-chaos", help="lakes (kept, reused), states and logs")
    ap.add_argument("--report", default=str(ROOT / "bench" / "results" / "chaos.md"))
    ap.add_argument("--no-verify", action="store_true", help="skip the state comparisons")
    ap.add_argument("--keep", action="store_true", help="keep the local state folders")
    ap.add_argument("--phase", choices=sorted(PHASES), help=argparse.SUPPRESS)
    ap.add_argument("--job", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phase:
        run_phase_here(PHASES[args.phase], args.job, trace_lines=30)
        return
    chosen = [p.strip() for p in args.only.split(",") if p.strip()] or list(PARTS)
    if set(chosen) - set(PARTS):
        ap.error(f"unknown part(s) {sorted(set(chosen) - set(PARTS))}; known: {', '.join(PARTS)}")

    started, t0 = datetime.now(UTC), time.perf_counter()
    run_dir = Path(args.workdir) / "run"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    bench = Bench(args, run_dir)
    code = code_identity()
    faults = part_faults(bench, args) if "faults" in chosen else None
    rec = part_recovery(bench, args) if "recovery" in chosen else None
    wall = time.perf_counter() - t0
    text, md = render(args, code, faults, rec, started, wall)
    print(text)
    report = Path(args.report)
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(md)
    (run_dir / "results.json").write_text(
        json.dumps({"faults": faults, "recovery": rec}, default=str, indent=1)
    )
    print(
        f"\nreport: {report}\nraw results: {run_dir / 'results.json'} (logs: {run_dir / 'logs'}); "
        f"{wall / 60:.1f} min"
    )
    if not args.keep:
        shutil.rmtree(run_dir / "recovery", ignore_errors=True)


if __name__ == "__main__":
    main()
