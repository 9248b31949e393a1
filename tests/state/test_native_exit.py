"""`lakehouse export` must end cleanly (issue 13 item 5: "a native crash").

It wrote its file, printed its summary, then died with ``terminate called without an active
exception`` (SIGABRT, exit 134), now and then, when a `lakehouse compact` of the same state ran
at the same time. deltalake's default pyarrow dataset reads through a Python filesystem; Arrow
releases those Python file objects on its own worker threads after ``to_table()`` has returned,
and a worker that asks for the GIL once the interpreter is finalizing is ended by CPython 3.11
with ``pthread_exit``, whose unwind through a noexcept C++ destructor aborts the process. State
tables are now read through a native filesystem (``StateTable.dataset``, ``lakehouse.state.arrowfs``).

* ``test_export_hands_no_python_file_to_arrow_threads``: the race made certain. Any Python file
  object the export hands to Arrow is slow to release off the main thread (a worker descheduled
  on a loaded machine): before the fix every export aborted this way, after it none can.
* ``test_exports_racing_compactions_exit_cleanly`` (local and moto S3): the reported scenario
  as it was: exports in their own processes while compactions commit to the same state; every
  export exits 0 and its file holds exactly the visible rows of a version it could have read.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support.lake_copy import copy_companions, land_step

from lakehouse.generate import GeneratorOptions, generate_lake
from lakehouse.state.export import export_type
from lakehouse.state.table import StateTable

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CONFIG = str(ROOT / "config" / "tables.yaml")
# small tables too: the less an export has left to do after its read, the sooner it exits
TABLES = (
    "auth.users",
    "scan.feedback",
    "scan.scans",
    "scan.classification_results",
    "scan.llm_call_log",
    "scan.rag_retrievals",
)
STEPS = 10  # compactions racing exports, after one of half the lake alone
EXPORTS_PER_STEP = 5

# `lakehouse export` with the window of the race held open: a Python file object that deltalake
# hands to Arrow, released on one of Arrow's threads, takes 0.3 s (as a worker descheduled on a
# busy machine would), so the main thread is finalizing the interpreter by then.
SLOW_RELEASE = textwrap.dedent("""
    import sys, threading, time
    import pyarrow as pa
    from deltalake.fs import DeltaStorageHandler

    MAIN = threading.get_ident()

    class SlowRelease:
        def __init__(self, handle):
            self._handle = handle

        def __getattr__(self, name):
            return getattr(self._handle, name)

        def __del__(self):
            if threading.get_ident() != MAIN:
                time.sleep(0.3)

    def open_input_file(self, path):
        return pa.PythonFile(SlowRelease(self._handler.open_input_file(path)))

    DeltaStorageHandler.open_input_file = open_input_file
    DeltaStorageHandler.open_input_stream = open_input_file
    from lakehouse.cli import app
    sys.argv[0] = "lakehouse"
    app()
""")


@pytest.fixture(autouse=True)
def _pseudonym_key(monkeypatch):
    monkeypatch.setenv("LAKEHOUSE_PSEUDONYM_KEY", "test-key")


@pytest.fixture(scope="module")
def source_lake(tmp_path_factory) -> Path:
    lake = tmp_path_factory.mktemp("native-exit") / "lake"
    generate_lake(
        lake, GeneratorOptions(events=24_000, seed=13, flush_size=200, pk_changes=True, truncates=True)
    )
    return lake


def lakehouse(*args: str) -> list[str]:
    return [sys.executable, "-m", "lakehouse.cli", *args]


def compact_cmd(lake: Path, state: str) -> list[str]:
    return lakehouse("compact", "--lake", str(lake), "--state", state, "--tables-config", CONFIG)


def export_cmd(state: str, table: str, out: Path) -> list[str]:
    return lakehouse("export", "--state", state, "--table", table, "--out", str(out))


def exported_form(rows: pa.Table) -> pa.Table:
    """``StateTable.visible()`` rows in the types `lakehouse export` writes."""
    target = pa.schema([pa.field(f.name, export_type(f.type)) for f in rows.schema])
    return pa.Table.from_arrays(
        [c.cast(f.type, safe=False) for c, f in zip(rows.columns, target)], schema=target
    )


def visible_at(state: str, table: str, version: int) -> tuple[pa.Table, list[str]]:
    st = StateTable(state, table)
    meta = st.require(version)
    return exported_form(st.visible()), list(meta.key)


def version_of(state: str, table: str) -> int:
    st = StateTable(state, table)
    st.require()
    assert st.version is not None
    return st.version


def same_rows(a: pa.Table, b: pa.Table, key: list[str]) -> bool:
    order = [(k, "ascending") for k in key]
    return a.schema.equals(b.schema) and a.sort_by(order).equals(b.sort_by(order))


def test_export_hands_no_python_file_to_arrow_threads(source_lake, tmp_path):
    state = str(tmp_path / "state")
    run = subprocess.run(compact_cmd(source_lake, state), capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    for table in TABLES:
        out = tmp_path / f"{table}.parquet"
        run = subprocess.run(
            [sys.executable, "-c", SLOW_RELEASE, *export_cmd(state, table, out)[3:]],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0, f"{table}: exit {run.returncode}\n{run.stderr[-2000:]}"
        assert f"exported {table}" in run.stdout
        want, key = visible_at(state, table, version_of(state, table))
        assert same_rows(pq.read_table(out), want, key)


def race(source_lake: Path, work: Path, state: str, steps: int, exports_per_step: int) -> None:
    """Compact half the lake; then land the other half in ``steps`` slices and compact each while
    exports of the same state run."""
    lake = work / "lake"
    lake.mkdir(parents=True)
    copy_companions(source_lake, lake)
    for part in range(steps):
        land_step(source_lake, lake, part, 2 * steps)
    run = subprocess.run(compact_cmd(lake, state), capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    rng = random.Random(13)
    env = dict(os.environ, PYTHONFAULTHANDLER="1")
    failures: list[str] = []
    checked = 0
    for step in range(steps):
        land_step(source_lake, lake, steps + step, 2 * steps)
        before = {t: version_of(state, t) for t in TABLES}
        compaction = subprocess.Popen(
            compact_cmd(lake, state), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        exports = []
        for i in range(exports_per_step):
            time.sleep(rng.random() * 0.15)  # spread over the compaction: reads of old and new versions
            table = rng.choice(TABLES)
            out = work / f"{step}-{i}-{table}.parquet"
            exports.append(
                (
                    table,
                    out,
                    subprocess.Popen(
                        export_cmd(state, table, out),
                        stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE,
                        text=True,
                        env=env,
                    ),
                )
            )
        finished = []
        for table, out, proc in exports:
            stdout, stderr = proc.communicate(timeout=300)
            finished.append((table, out, proc.returncode, stdout, stderr))
        _, compact_err = compaction.communicate(timeout=300)
        assert compaction.returncode == 0, compact_err
        for table, out, code, stdout, stderr in finished:
            if code != 0:
                # stderr starts with the abort message and faulthandler's stacks of every thread
                failures.append(f"step {step} {table}: exit {code}\n{stdout[-300:]}{stderr[:2500]}")
                continue
            got = pq.read_table(out)
            # the export read one version: the one before this compaction or one it committed
            for version in range(before[table], version_of(state, table) + 1):
                want, key = visible_at(state, table, version)
                if same_rows(got, want, key):
                    break
            else:
                failures.append(
                    f"step {step} {table}: {out.name} ({got.num_rows} rows) is no version's "
                    f"visible rows (versions {before[table]}..{version_of(state, table)})"
                )
            checked += 1
    assert not failures, f"{len(failures)} of {steps * exports_per_step} exports failed:\n" + "\n".join(
        failures
    )
    assert checked == steps * exports_per_step


def test_exports_racing_compactions_exit_cleanly(source_lake, tmp_path):
    race(source_lake, tmp_path, str(tmp_path / "state"), STEPS, EXPORTS_PER_STEP)


@pytest.mark.s3
def test_exports_racing_compactions_exit_cleanly_s3(source_lake, tmp_path, moto_s3):
    race(source_lake, tmp_path, moto_s3("state"), STEPS // 2, EXPORTS_PER_STEP)
