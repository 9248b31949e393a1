"""Chaos suite: concurrent writers, flaky storage, a full disk and kill -9, every trial compared
with the truth (the oracle of the lake's events, or a clean one-process build).

Bounded for ``make test``; ``CHAOS_TRIALS=N`` multiplies the trials of every probe (the longer
mode the benchmarks and the issue's probe counts use). Real parts only: the CLI in separate
processes, moto's S3 server behind a fault-injecting proxy (tests/fault_proxy.py), a size-limited
tmpfs for the full disk (an injected ENOSPC where mounting is not allowed, said in the test).
Elsewhere: kill -9 of compaction (tests/test_compact.py, both engines), of capture
(tests/test_truth.py, replay after kill), hostile identifiers end to end (tests/test_capture.py).
"""

from __future__ import annotations

import errno
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.fault_proxy import FaultProxy
from support.oracle import assert_equals_oracle, plain_config

from lakehouse.config import TablesConfig, load_config
from lakehouse.generate import GeneratorOptions, generate_lake
from lakehouse.lake.store import LocalStore, open_store
from lakehouse.state.export import visible_rows
from lakehouse.state.table import StateTable
from lakehouse.warehouse.duckdb_warehouse import DuckDBWarehouse

pytestmark = pytest.mark.slow
TRIALS = max(1, int(os.environ.get("CHAOS_TRIALS", "1")))
KEY = "chaos-pseudonym-key"
AWS_SENTINEL = "chaos-aws-secret-0f3a9c"


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("chaos") / "lake"
    generate_lake(
        root,
        GeneratorOptions(
            events=16_000,
            seed=21,
            flush_size=400,
            partitions=2,
            replays=True,
            pk_changes=True,
            truncates=True,
            schema_change=True,
        ),
    )
    return root


@pytest.fixture(scope="module")
def tables_config(tmp_path_factory) -> Path:
    """The Eco2 tables without a personal-data policy: every column is compared."""
    path = tmp_path_factory.mktemp("chaos-config") / "tables.yaml"
    path.write_text(
        "tables:\n" + "".join(f"  - topic: {t.topic}\n    primary_key: [id]\n" for t in load_config().tables)
    )
    return path


def cli(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "lakehouse.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "LAKEHOUSE_PSEUDONYM_KEY": KEY, **(env or {})},
    )


def finish(proc: subprocess.Popen) -> tuple[int, str]:
    out, err = proc.communicate(timeout=300)
    assert KEY not in out + err, "the pseudonym key reached the output"  # secrets never in messages
    return proc.returncode, out + err


def load_cli(state: str, warehouse: Path, config: Path) -> subprocess.Popen:
    tables = sum((["--table", t.table] for t in load_config().tables), [])
    return cli(
        "load", "--state", state, "--warehouse", str(warehouse), "--tables-config", str(config), *tables
    )


def compact_args(lake: str, state: str, config: Path, batch: int = 1_500) -> list[str]:
    return [
        "compact",
        "--lake",
        lake,
        "--state",
        state,
        "--tables-config",
        str(config),
        "--batch-events",
        str(batch),
    ]


def upload(src: Path, uri: str) -> None:
    target = open_store(uri)
    store = LocalStore(src)
    for info in store.list(""):
        target.put_bytes(info.key, store.get_bytes(info.key))


# -- concurrent writers ----------------------------------------------------------------------


@pytest.mark.parametrize("where", ["local", "s3"])
def test_two_compactions_started_together_equal_one_run(where, lake, tables_config, tmp_path, request):
    """The probe that duplicated rows in 8/10 local and 10/10 S3 trials: now every process exits
    0, no key appears twice and the state equals the oracle; the next run is up to date."""
    lake_uri = str(lake)
    if where == "s3":
        new_bucket = request.getfixturevalue("moto_s3")
        lake_uri = new_bucket("lake")
        upload(lake, lake_uri)
    for trial in range(TRIALS):
        state = (
            str(tmp_path / f"state{trial}") if where == "local" else request.getfixturevalue("moto_s3")("st")
        )
        procs = [cli(*compact_args(lake_uri, state, tables_config)) for _ in range(2)]
        outcomes = [finish(p) for p in procs]
        for code, output in outcomes:
            assert code == 0, output
        assert_equals_oracle(lake, state, plain_config())
        code, output = finish(cli(*compact_args(lake_uri, state, tables_config)))
        assert code == 0 and "applied" not in output, output


def test_compaction_and_maintenance_at_once_equal_one_after_the_other(lake, tables_config, tmp_path):
    """maintain merges small files of the version it read; a compaction committing meanwhile wins,
    and the merge is redone on its version (never carrying an older manifest forward)."""
    tables = [t.table for t in load_config().tables]
    for trial in range(TRIALS):
        state = str(tmp_path / f"state{trial}")
        half = tmp_path / f"half{trial}"
        _copy_first_objects(lake, half, 0.5)
        code, output = finish(cli(*compact_args(str(half), state, tables_config, batch=400)))
        assert code == 0, output
        procs = [
            cli(*compact_args(str(lake), state, tables_config, batch=400)),
            cli(
                "maintain",
                "--state",
                state,
                *sum((["--table", t] for t in tables), []),
                "--retention-hours",
                "0",
            ),
        ]
        for code, output in (finish(p) for p in procs):
            assert code == 0, output
        assert_equals_oracle(lake, state, plain_config())


def test_two_warehouse_loads_at_once_wait_for_each_other(lake, tables_config, tmp_path):
    """DuckDB allows one writer per file: the second load waits for the lock (saying so) and then
    finds the tables up to date; the warehouse equals the state."""
    state, warehouse = str(tmp_path / "state"), tmp_path / "warehouse.duckdb"
    assert finish(cli(*compact_args(str(lake), state, tables_config)))[0] == 0
    for _ in range(TRIALS):
        procs = [load_cli(state, warehouse, tables_config) for _ in range(2)]
        for code, output in (finish(p) for p in procs):
            assert code == 0, output
        _assert_warehouse_equals_state(warehouse, state)


# -- flaky storage -----------------------------------------------------------------------------


@pytest.mark.s3
def test_compaction_through_20_percent_s3_faults_and_an_outage_equals_the_truth(lake, tables_config, moto_s3):
    """S3 answering 20 % of requests with 500/503, dropping 5 % of connections and going away
    entirely for a while: the run retries (never calling an object unreadable), exits 0, and the
    state equals the oracle."""
    for trial in range(TRIALS):
        lake_uri, state = moto_s3("lake"), moto_s3("state")
        upload(lake, lake_uri)
        with FaultProxy(moto_s3.endpoint, error_rate=0.2, drop_rate=0.05, seed=trial) as proxy:
            # moto takes any key: a sentinel secret shows that no retry warning or error prints it
            proc = cli(
                *compact_args(lake_uri, state, tables_config),
                env={
                    "AWS_ENDPOINT_URL": proxy.endpoint,
                    "LAKEHOUSE_STORAGE_RETRY_SECONDS": "60",
                    "AWS_SECRET_ACCESS_KEY": AWS_SENTINEL,
                },
            )
            time.sleep(random.Random(trial).uniform(2.0, 5.0))
            proxy.outage(6.0)
            code, output = finish(proc)
            injected = proxy.injected_errors + proxy.dropped
        assert code == 0, output
        assert "unreadable" not in output and "not a readable" not in output, output
        assert AWS_SENTINEL not in output  # no warning or error prints the secret key
        assert injected > 50, injected
        assert_equals_oracle(lake, state, plain_config())


@pytest.mark.s3
def test_every_s3_client_keeps_retrying_through_a_long_error_storm(moto_s3, monkeypatch):
    """pyarrow's S3 filesystem (state and lake reads), boto3 (our store) and delta-rs each make
    hundreds of requests at 20 % errors without one failing: no client runs out of retries
    (pyarrow's standard strategy shares a quota that ran dry after ~380 such requests)."""
    from lakehouse.lake.store import s3_filesystem

    bucket = moto_s3("storm")
    store = open_store(bucket)
    store.put_bytes("object", b"x" * 1000)
    with FaultProxy(moto_s3.endpoint, error_rate=0.2, seed=9) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
        fs, flaky = s3_filesystem(), open_store(bucket)
        path = f"{bucket.removeprefix('s3://')}/object"
        for _ in range(500):
            assert fs.get_file_info(path).size == 1000
        for _ in range(100):
            assert flaky.get_bytes("object") == b"x" * 1000
        assert proxy.injected_errors > 100, proxy.injected_errors


def test_bigquery_engine_and_load_through_20_percent_faults_equal_the_truth(
    lake, tables_config, tmp_path, bigquery_emulator
):
    """The BigQuery emulator behind the proxy (500/503 on 20 % of requests, 3 % dropped): the
    client's retries and ours carry compaction on the BigQuery engine and the warehouse load; the
    state equals the oracle and the warehouse equals the state."""
    import uuid

    from lakehouse.warehouse.bigquery_warehouse import BigQueryWarehouse, bigquery_client

    state = str(tmp_path / "state")
    # two tables (updates, deletes, key changes; every BigQuery job is slow on the emulator)
    tables = [a for t in ("scan.scans", "scan.feedback") for a in ("--table", t)]
    with FaultProxy(bigquery_emulator.endpoint, error_rate=0.2, drop_rate=0.03, seed=3) as proxy:
        env = {
            "LAKEHOUSE_ENGINE": "bigquery",
            "LAKEHOUSE_BIGQUERY_PROJECT": bigquery_emulator.project,
            "LAKEHOUSE_BIGQUERY_ENDPOINT": proxy.endpoint,
            "LAKEHOUSE_BIGQUERY_ENGINE_DATASET": f"engine_{uuid.uuid4().hex[:8]}",
        }
        code, output = finish(
            cli(*compact_args(str(lake), state, tables_config, batch=8_000), *tables, env=env)
        )
        assert code == 0, output
        assert "engine bigquery:" in output
        names = {"dataset_prefix": f"c{uuid.uuid4().hex[:8]}_", "meta_dataset": f"m{uuid.uuid4().hex[:8]}"}
        flaky = BigQueryWarehouse(
            lambda: bigquery_client(bigquery_emulator.project, None, endpoint=proxy.endpoint),
            bigquery_emulator.project,
            **names,
        )
        config = TablesConfig(tables=tuple(t for t in plain_config().tables if t.table in tables))
        for entry in config.tables:
            flaky.load(state, entry)
        injected = proxy.injected_errors + proxy.dropped
    assert injected > 5, injected
    assert_equals_oracle(lake, state, config)
    # read back without the proxy
    _assert_warehouse_equals_state(
        BigQueryWarehouse(bigquery_emulator.client, bigquery_emulator.project, **names), state, config
    )


# -- a full disk -------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB tmpfs (root in this sandbox and in CI); grown with remount once the test has seen
    it fill up. Without mount rights (not root) the test is skipped and says why; the disk-full
    path is then still tested by the injected ENOSPC below, which always runs."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a size-limited tmpfs here ({done.stderr.decode().strip()})")

    def grow(size: str = "256m") -> None:
        subprocess.run(["mount", "-o", f"remount,size={size}", str(mount)], check=True)

    try:
        yield mount, grow
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_disk_that_fills_up_mid_write_fails_cleanly_and_the_rerun_completes(
    lake, tables_config, small_disk
):
    """State on a 2 MB disk: tables fail with "no space left" naming the table (no traceback),
    every table still reads as exactly the objects its manifest lists, and after the disk grows
    the next run ends equal to the oracle."""
    disk, grow = small_disk
    state = str(disk / "state")
    code, output = finish(cli(*compact_args(str(lake), state, tables_config, batch=800)))
    assert code == 1, output
    assert "no space left on device" in output.lower(), output
    assert "Traceback" not in output, output
    for entry in plain_config().tables:
        st = StateTable(state, entry.table)
        if st.load() is not None:  # a committed version is whole: its rows read back
            visible_rows(state, entry.table)
    grow()
    code, output = finish(cli(*compact_args(str(lake), state, tables_config, batch=800)))
    assert code == 0, output
    assert_equals_oracle(lake, state, plain_config())


def test_an_injected_enospc_in_the_manifest_write_commits_nothing(lake, tables_config, tmp_path, monkeypatch):
    """Where the disk cannot be made small: ENOSPC injected into the one write of ours before a
    commit (the applied-objects manifest); the table fails with a clear line and nothing lands."""
    from lakehouse.state.compact import compact

    real_put = LocalStore.put_bytes

    def full(self, key, data):
        if key.startswith("scan.scans/_lakehouse/applied-"):
            raise OSError(errno.ENOSPC, "No space left on device", key)
        return real_put(self, key, data)

    monkeypatch.setenv("LAKEHOUSE_PSEUDONYM_KEY", KEY)
    monkeypatch.setattr(LocalStore, "put_bytes", full)
    results = {r.table: r for r in compact(str(lake), str(tmp_path / "state"), plain_config())}
    monkeypatch.undo()
    assert results["scan.scans"].failed and "no space left" in results["scan.scans"].error.lower()
    assert StateTable(str(tmp_path / "state"), "scan.scans").load() is None
    assert all(not r.failed for t, r in results.items() if t != "scan.scans")


# -- kill -9 -----------------------------------------------------------------------------------


def test_kill9_of_warehouse_loads_then_a_load_equals_the_state(lake, tables_config, tmp_path):
    """A load killed at random moments leaves the DuckDB file at its last committed load; the
    next load finishes and the warehouse equals the state."""
    state, warehouse = str(tmp_path / "state"), tmp_path / "warehouse.duckdb"
    half = tmp_path / "half"
    _copy_first_objects(lake, half, 0.5)
    assert finish(cli(*compact_args(str(half), state, tables_config)))[0] == 0
    assert finish(load_cli(state, warehouse, tables_config))[0] == 0
    assert finish(cli(*compact_args(str(lake), state, tables_config)))[0] == 0
    rng = random.Random(5)
    for _ in range(3 * TRIALS):
        proc = load_cli(state, warehouse, tables_config)
        time.sleep(rng.uniform(0.5, 2.5))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()
    code, output = finish(load_cli(state, warehouse, tables_config))
    assert code == 0, output
    _assert_warehouse_equals_state(warehouse, state)


# -- helpers -----------------------------------------------------------------------------------


def _copy_first_objects(src: Path, dst: Path, share: float) -> None:
    """The first ``share`` of every partition's objects (and the companions): an earlier lake."""
    from support.lake_copy import copy_companions, copy_objects, keys_by_partition

    copy_companions(src, dst)
    for keys in keys_by_partition(src).values():
        copy_objects(src, dst, keys[: max(1, int(len(keys) * share))])


def _assert_warehouse_equals_state(warehouse, state: str, config: TablesConfig | None = None) -> None:
    wh = DuckDBWarehouse(warehouse) if isinstance(warehouse, Path) else warehouse
    for entry in (config or plain_config()).tables:
        want = visible_rows(state, entry.table)
        got = wh.read(entry.table)
        key = list(entry.primary_key)
        assert got.num_rows == want.num_rows, entry.table
        got_rows = got.select(want.column_names).sort_by([(k, "ascending") for k in key]).to_pylist()
        want_rows = want.sort_by([(k, "ascending") for k in key]).to_pylist()
        assert got_rows == want_rows, entry.table
