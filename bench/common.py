"""What the bench scripts share: phases in fresh processes, machine load, what a run measured on, moto.

Not a benchmark. The scripts run as ``.venv/bin/python bench/bench_X.py``, so ``bench/`` is on
``sys.path`` as the script's folder and they ``import common`` like any module.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import resource
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the tests' support package (moto, the emulator, fault proxy)

from support.moto import AWS_OVERRIDES, MOTO_REGION, free_port, moto_env, moto_server  # noqa: E402, F401


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def timed(fn: Callable, *args) -> tuple[float, object]:
    """(seconds, result) of ``fn(*args)``."""
    started = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - started, out


# ---------------------------------------------------------------------------------------------
# phases: the script runs itself with --phase NAME --job FILE; the last stdout line is the result
# ---------------------------------------------------------------------------------------------


def phase_generate(job: dict) -> dict:
    from lakehouse.generate import GeneratorOptions, generate_lake

    t = time.perf_counter()
    report = generate_lake(job["lake"], GeneratorOptions(events=job["events"], seed=job["seed"]))
    return {
        "events": report.events,
        "objects": report.objects,
        "bytes": report.bytes,
        "seconds": time.perf_counter() - t,
    }


def run_phase_here(
    phase: Callable[[dict], dict], job_path: str, *, trace_lines: int | None = None, add_rss: bool = False
) -> None:
    """The child's side: run ``phase`` on the job file and print its result as one JSON line. An
    exception (MemoryError included) becomes ``error`` and ``traceback`` (its last ``trace_lines``
    lines, or 4,000 characters): the parent reports it, the other phases go on."""
    job = json.loads(Path(job_path).read_text())
    try:
        result = phase(job)
    except BaseException as exc:  # noqa: BLE001 (reported to the parent, not raised)
        trace = traceback.format_exc()
        result = {
            "error": f"{type(exc).__name__}: {exc}",
            "traceback": trace[-4000:]
            if trace_lines is None
            else "".join(trace.splitlines(True)[-trace_lines:]),
        }
    if add_rss:
        result.setdefault("peak_rss_mb", peak_rss_mb())
    print(json.dumps(result), flush=True)


def write_job(folder: Path, label: str, job: dict) -> Path:
    path = folder / f"job-{label}.json"
    path.write_text(json.dumps(job))
    return path


def phase_command(script: str, phase: str, job_path: Path, python: str | None = None) -> list[str]:
    return [python or sys.executable, str(Path(script).resolve()), "--phase", phase, "--job", str(job_path)]


def phase_result(stdout: str) -> dict | None:
    """The phase's result: its last stdout line that is a JSON object (None: it printed none)."""
    lines = [x for x in stdout.splitlines() if x.startswith("{")]
    return json.loads(lines[-1]) if lines else None


def stderr_tail(stderr: str, lines: int = 5) -> str:
    return " | ".join(stderr.strip().splitlines()[-lines:])


# ---------------------------------------------------------------------------------------------
# the machine: how busy it is, what it is
# ---------------------------------------------------------------------------------------------


def busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (all cores), to tell a contender's load from others'."""
    import psutil

    t = psutil.cpu_times()  # guest time is already inside user on Linux
    return t.user + t.nice + t.system + t.irq + t.softirq + t.steal


def wait_quiet(max_seconds: float) -> float:
    """Wait (at most ``max_seconds``) until the machine has been idle for 5 s (< 0.3 cores busy):
    on a shared machine, start each measured run in a lull. Returns the seconds waited."""
    import psutil

    started = time.perf_counter()
    while time.perf_counter() - started < max_seconds:
        if psutil.cpu_percent(interval=5.0) / 100 * (os.cpu_count() or 1) < 0.3:
            break
    return time.perf_counter() - started


def cpu_model() -> str:
    with contextlib.suppress(OSError, StopIteration):
        return next(
            x.split(":", 1)[1].strip()
            for x in Path("/proc/cpuinfo").read_text().splitlines()
            if x.startswith("model name")
        )
    return "?"


def ram_gib() -> float:
    import psutil

    return psutil.virtual_memory().total / 2**30


def machine(*, python: bool = True) -> str:
    """One line for a report: cores, CPU model, RAM, OS (and the Python version)."""
    line = (
        f"{os.cpu_count()} cores ({cpu_model()}), {ram_gib():.0f} GiB RAM, "
        f"{platform.system()} {platform.release()}"
    )
    return line + (f", Python {platform.python_version()}" if python else "")


# ---------------------------------------------------------------------------------------------
# the code measured
# ---------------------------------------------------------------------------------------------


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True).stdout


def git_head() -> str:
    return _git("rev-parse", "--short", "HEAD").strip()


def uncommitted(*folders: str) -> list[str]:
    """Paths with uncommitted changes under ``folders`` (git status)."""
    return [x[3:] for x in _git("status", "--porcelain", "--", *folders).splitlines()]


def code_identity() -> str:
    """Which product code was measured: HEAD plus a digest of uncommitted changes under src/."""
    import hashlib

    head, changed = git_head(), uncommitted("src")
    if not changed:
        return f"{head} (clean src/)"
    diff = subprocess.run(["git", "-C", str(ROOT), "diff", "HEAD", "--", "src"], capture_output=True).stdout
    names = ", ".join(changed)
    return f"{head} + uncommitted changes in {names} (diff sha1 {hashlib.sha1(diff).hexdigest()[:10]})"


# ---------------------------------------------------------------------------------------------
# reports
# ---------------------------------------------------------------------------------------------


def text_table(heads: list[str], rows: list[list[str]]) -> tuple[str, list[str]]:
    """The same table as aligned text and as Markdown lines."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(heads)]
    text = [
        " | ".join(h.ljust(w) for h, w in zip(heads, widths, strict=True)),
        "-+-".join("-" * w for w in widths),
    ]
    text += [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    md = ["| " + " | ".join(heads) + " |", "|" + "|".join("---" for _ in heads) + "|"]
    md += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(text), md


# ---------------------------------------------------------------------------------------------
# moto's S3 server
# ---------------------------------------------------------------------------------------------
