"""Chaos suite, the Dagster part: kill -9 of sensor-launched compaction runs' workers at random points,
then recovery compared with the truth (the oracle of the lake's events).

The real parts (tests/test_ui.py's ``DagsterUi``): ``dagster-webserver`` and ``dagster-daemon`` on a
loopback port with a throwaway DAGSTER_HOME, the ``lake_sensor`` turned on through GraphQL
(``startSensor``, what the UI's toggle sends), the daemon's QueuedRunCoordinator launching one
``compact_tables`` run per table through the DefaultRunLauncher: the run worker is a process the
daemon's code server spawns (multiprocessing), whose pid the run logs ("Started process for run
(pid: N)"). The test SIGKILLs two tables' workers at random points (while the worker loads the code,
mid-compaction, during the checks, or after the last step), then asserts what must follow:

(a) the killed run ends FAILURE with a message naming SIGKILL (the code server notices its dead child
    within a second; SUCCESS when the kill came after the run's end was recorded), never stays
    STARTED, and the table's pool slot it held is freed (run monitoring, dagster.yaml:
    without it the slot stays claimed by the dead run and the table's next run waits in the queue
    forever; this test then fails with the pool's state);
(b) the run is re-executed whole (run retries, dagster.yaml; ``dagster/retry_strategy`` of
    compact_tables, assets/state/__init__.py) under the same ``lakehouse/table`` tag and asset, and
    succeeds; nothing else failed; no two runs of a table ever overlap;
(c) every table equals the oracle and holds each key once.

Timing only (a test cannot wait for production's 30 s polls): this DAGSTER_HOME's dagster.yaml is
the production file with shorter run-monitoring intervals. ``CHAOS_TRIALS=N`` repeats the whole
session N times with other seeds; ``CHAOS_SEED`` picks other tables, phases and delays. Not covered
here: the worker dying with the code server that launched it (then only ``dagster/max_runtime``
ends the run; the test checks the tag is on every run).
"""

from __future__ import annotations

import os
import random
import re
import signal
import time
from pathlib import Path

import dagster as dg
import pytest
import yaml
from support.oracle import assert_equals_oracle, plain_config
from test_ui import FINISHED, ROOT, STARTUP_TIMEOUT, DagsterUi, _free_port

from lakehouse.checks import state_keys
from lakehouse.config import load_config
from lakehouse.generate import GeneratorOptions, generate_lake

pytestmark = pytest.mark.slow
TRIALS = max(1, int(os.environ.get("CHAOS_TRIALS", "1")))
EVENTS = 60_000  # the largest table's state step takes about a second; its run about 15 s on 2 cores
KILLS = 2  # runs killed per session: different tables, different phases
BIG = ["scan.scans", "scan.classification_results", "scan.rag_retrievals", "scan.llm_call_log"]
STARTED_PROCESS = re.compile(r"Started process for run \(pid: (\d+)\)")
# where a kill lands: a random delay (up to the seconds given) after the event that opens the phase
PHASES = {
    # the worker loading the code location (STARTING: 5 s alone, 40 s on a loaded machine), resources
    "startup": (3.0, lambda e: STARTED_PROCESS.search(e.get("message") or "")),
    "compaction": (0.8, lambda e: _step_start(e, "current_state__")),
    "checks": (0.3, lambda e: _step_start(e, "state_checks_")),
    # steps done: the run's end being recorded (FAILURE if the kill comes first, and retried), or
    # recorded and the worker tearing down (SUCCESS; what a quiet machine mostly gets)
    "end": (0.3, lambda e: (e.get("message") or "").startswith("Finished steps in process")),
}
RECOVERY_TIMEOUT = 300  # kills and recovery; 45-120 s on 2 cores, more when other suites share them
SENSOR = {
    "repositoryLocationName": "cdc_lakehouse",
    "repositoryName": "__repository__",
    "sensorName": "lake_sensor",
}

SENSOR_STATE = """
query SensorState($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) {
    __typename
    ... on Sensor { name sensorState { status } }
    ... on Error { message }
  }
}
"""

START_SENSOR = """
mutation StartSensor($selector: SensorSelector!) {
  startSensor(sensorSelector: $selector) {
    __typename
    ... on Sensor { name sensorState { status } }
    ... on PythonError { message stack }
    ... on Error { message }
  }
}
"""

RUNS = """
query CompactionRuns($filter: RunsFilter!) {
  runsOrError(filter: $filter) {
    __typename
    ... on Runs { results { runId status startTime endTime tags { key value } assetSelection { path } } }
    ... on Error { message }
  }
}
"""

LOGS = """
query RunLogs($runId: ID!) {
  logsForRun(runId: $runId) {
    __typename
    ... on EventConnection { events { __typename ... on MessageEvent { message timestamp stepKey } } }
    ... on Error { message }
  }
}
"""

POOL = """
query Pool($key: String!) {
  instance { concurrencyLimit(concurrencyKey: $key) { claimedSlots { runId stepKey } pendingSteps { runId } } }
}
"""


def _step_start(event: dict, prefix: str) -> bool:
    return event["__typename"] == "ExecutionStepStartEvent" and (event.get("stepKey") or "").startswith(
        prefix
    )


def pool_of(table: str) -> str:
    return f"lakehouse_state_{table.replace('.', '_')}"  # assets.state.pool_for


class Chaos:
    """The GraphQL questions the test asks, on top of ``DagsterUi``."""

    def __init__(self, ui: DagsterUi):
        self.ui = ui

    def runs(self) -> list[dict]:
        """Every compact_tables run, newest first, with its tags as a dict."""
        answer = self.ui.graphql(RUNS, {"filter": {"pipelineName": "compact_tables"}})["runsOrError"]
        assert answer["__typename"] == "Runs", answer
        return [{**r, "tags": {t["key"]: t["value"] for t in r["tags"]}} for r in answer["results"]]

    def events(self, run_id: str) -> list[dict]:
        answer = self.ui.graphql(LOGS, {"runId": run_id})["logsForRun"]
        assert answer["__typename"] == "EventConnection", answer
        return answer["events"]

    def pool(self, table: str) -> dict:
        return self.ui.graphql(POOL, {"key": pool_of(table)})["instance"]["concurrencyLimit"]

    def turn_sensor_on(self) -> None:
        state = self.ui.graphql(SENSOR_STATE, {"selector": SENSOR})["sensorOrError"]
        assert state["__typename"] == "Sensor", state
        if state["sensorState"]["status"] != "RUNNING":  # off by default (no default_status)
            started = self.ui.graphql(START_SENSOR, {"selector": SENSOR})["startSensor"]
            assert started["__typename"] == "Sensor", started
            assert started["sensorState"]["status"] == "RUNNING", started

    def describe(self, runs: list[dict] | None = None) -> str:
        """Runs and pool slots, for failure messages (with the UI's logs)."""
        runs = self.runs() if runs is None else runs
        lines = [
            f"{r['tags'].get('lakehouse/table')}: {r['runId']} {r['status']}"
            f" (retry of {r['tags'].get('dagster/parent_run_id', '-')})"
            for r in reversed(runs)
        ]
        tables = sorted({r["tags"].get("lakehouse/table") for r in runs} - {None})
        lines += [f"pool {pool_of(t)}: {self.pool(t)}" for t in tables]
        return "\n".join(lines) + "\n" + self.ui.report()


def ancestors(pid: int) -> list[int]:
    """``pid``'s parent, grandparent, ... (from /proc)."""
    chain = []
    while pid > 1:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat.rsplit(")", 1)[1].split()[1])  # field 4, after the parenthesised command
        chain.append(pid)
    return chain


def kill_run_worker(ui: DagsterUi, pid: int) -> bool:
    """SIGKILL ``pid`` if it is still a process the daemon started (its code server's child); False
    when it has already exited."""
    if ui.procs["daemon"].pid not in ancestors(pid):
        return False  # gone (or, in theory, a reused pid that is not ours): never signal it
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True


def anchor_time(events: list[dict], phase: str) -> float | None:
    """When the event that opens ``phase`` was logged (epoch seconds), if it was."""
    opens = PHASES[phase][1]
    return next((int(e["timestamp"]) / 1000 for e in events if opens(e)), None)


def kill_runs_at_random_points(chaos: Chaos, rng: random.Random, deadline: float) -> dict[str, dict]:
    """Kill the run workers of ``KILLS`` tables, each at a random delay into a random phase. A run seen
    ended before its point still has its worker tearing down for a while: that is killed instead;
    a table whose worker is already gone is replaced by one whose run has not ended yet."""
    plan = {
        t: (phase, rng.uniform(0, PHASES[phase][0]))
        for t, phase in zip(rng.sample(BIG, KILLS), rng.sample(list(PHASES), KILLS), strict=True)
    }
    order = list(dict.fromkeys(BIG + [e.table for e in load_config().tables]))
    killed: dict[str, dict] = {}
    while len(killed) < KILLS:
        if time.monotonic() > deadline:
            raise AssertionError(f"killed {list(killed)} of the planned {plan}\n{chaos.describe()}")
        runs = chaos.runs()
        for run in runs:
            table = run["tags"].get("lakehouse/table")
            if (
                table not in plan
                or table in killed
                or run["status"] not in ("STARTING", "STARTED", *FINISHED)
            ):
                continue
            phase, delay = plan[table]
            events = chaos.events(run["runId"])
            pids = [int(m.group(1)) for e in events if (m := STARTED_PROCESS.search(e.get("message") or ""))]
            at = anchor_time(events, phase)
            if run["status"] in FINISHED:  # seen ended: its worker is tearing down
                at, delay, phase = time.time(), 0.0, f"teardown (the run ended before its {phase} point)"
            if not pids or at is None:
                continue
            time.sleep(max(0.0, at + delay - time.time()))
            if kill_run_worker(chaos.ui, pids[0]):
                late = time.time() - at  # the planned delay, or later when the poll saw the event late
                before = chaos.events(run["runId"])
                last = next((e for e in reversed(before) if e["__typename"] != "LogsCapturedEvent"), {})
                killed[table] = {"run": run, "pid": pids[0], "phase": phase}
                print(
                    f"kill -9 {table} run {run['runId']} (pid {pids[0]}) {late:.2f} s into {phase}; "
                    f"last event logged: {last.get('__typename')} {last.get('stepKey') or ''}"
                )
            elif run["status"] in FINISHED:  # its worker is gone too: a table whose run is still to come
                del plan[table]
                ended = {r["tags"].get("lakehouse/table") for r in runs if r["status"] in FINISHED}
                spare = [t for t in order if t not in plan and t not in killed and t not in ended]
                assert spare, f"every run ended before a kill could land\n{chaos.describe(runs)}"
                plan[spare[0]] = ("startup", rng.uniform(0, PHASES["startup"][0]))
        time.sleep(0.1)
    return killed


def wait_for_recovery(chaos: Chaos, tables: list[str], deadline: float) -> list[dict]:
    """Until every compaction run has ended and every table's newest run (the retry of a killed one)
    succeeded."""
    while True:
        runs = chaos.runs()
        newest = {}
        for r in runs:  # newest first
            newest.setdefault(r["tags"].get("lakehouse/table"), r)
        if (
            all(r["status"] in FINISHED for r in runs)
            and set(tables) <= set(newest)
            and all(newest[t]["status"] == "SUCCESS" for t in tables)
        ):
            return runs
        if time.monotonic() > deadline:
            raise AssertionError(f"no recovery after {RECOVERY_TIMEOUT} s\n{chaos.describe(runs)}")
        time.sleep(1)


@pytest.fixture
def plain_tables(tmp_path) -> Path:
    """The Eco2 tables without a personal-data policy (as tests/test_chaos.py): every column is compared."""
    path = tmp_path / "tables.yaml"
    path.write_text(
        "tables:\n" + "".join(f"  - topic: {t.topic}\n    primary_key: [id]\n" for t in load_config().tables)
    )
    return path


def instance_config(home: Path) -> None:
    """The production dagster.yaml, with the run monitoring's polls shortened for a test."""
    instance = yaml.safe_load((ROOT / "orchestration" / "dagster.yaml").read_text())
    monitoring, retries = instance["run_monitoring"], instance["run_retries"]
    # what recovery needs is in the production file itself; only the timing is changed here
    assert monitoring["enabled"] and monitoring["free_slots_after_run_end_seconds"] > 0, monitoring
    assert retries["enabled"] and retries["max_retries"] >= 1, retries
    assert retries["retry_on_asset_or_op_failure"] is False, retries  # crashes only
    monitoring.update(poll_interval_seconds=2, free_slots_after_run_end_seconds=1)
    (home / "dagster.yaml").write_text(yaml.safe_dump(instance))
    # create the SQLite databases before four processes open them at once: each stamps its schema's
    # alembic version on first open, and two at a time can leave two heads that fail the code server
    # ("Version table 'alembic_version' has more than one head present", seen on a loaded machine)
    with dg.DagsterInstance.from_config(str(home)):
        pass


@pytest.mark.timeout(480)
@pytest.mark.parametrize("trial", range(TRIALS))
def test_sensor_runs_killed_at_random_points_recover_to_the_truth(trial, tmp_path, plain_tables):
    from assets.state import COMPACT_MAX_RUNTIME_SECONDS

    seed = int(os.environ.get("CHAOS_SEED", "1500")) + trial  # CHAOS_SEED: other random points
    rng = random.Random(seed)
    t0 = time.monotonic()
    lake, state = tmp_path / "lake", tmp_path / "state"
    generate_lake(lake, GeneratorOptions(events=EVENTS, seed=seed, flush_size=500))
    tables = [e.table for e in load_config(plain_tables).tables]
    home = tmp_path / "dagster"
    home.mkdir()
    instance_config(home)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LAKEHOUSE_", "DAGSTER_"))}
    env.update(
        LAKEHOUSE_HOME=str(tmp_path),
        LAKEHOUSE_PSEUDONYM_KEY="test-key",
        DAGSTER_HOME=str(home),
        LAKEHOUSE_TABLES_CONFIG=str(plain_tables),
    )

    port = _free_port()
    ui = DagsterUi(tmp_path, port)
    chaos = Chaos(ui)
    try:
        ui.start(env, port)
        ui.wait_ready(STARTUP_TIMEOUT)
        chaos.turn_sensor_on()
        started = time.monotonic()
        print(f"seed {seed}: lake and UI ready in {started - t0:.0f} s")
        killed = kill_runs_at_random_points(chaos, rng, started + RECOVERY_TIMEOUT)
        runs = wait_for_recovery(chaos, tables, started + RECOVERY_TIMEOUT)

        # (a) each killed run ended FAILURE saying why (or SUCCESS: killed after its end was recorded,
        # the code server then leaves it alone), and left no claimed slot behind
        by_id = {r["runId"]: r for r in runs}
        for table, kill in killed.items():
            run_id = kill["run"]["runId"]
            status = by_id[run_id]["status"]
            messages = [e.get("message") or "" for e in chaos.events(run_id)]
            print(f"{table}: the killed run ended {status}")
            if status == "SUCCESS":
                assert kill["phase"] == "end" or kill["phase"].startswith("teardown"), kill
                assert any(m.startswith("Finished execution of run") for m in messages), messages[-5:]
            else:
                assert status == "FAILURE", chaos.describe(runs)
                assert any(
                    f"Run execution process for {run_id} was terminated by signal 9 (SIGKILL)" in m
                    for m in messages
                ), messages[-5:]
            # every run carries the max runtime that ends it if its code server died with it
            assert by_id[run_id]["tags"].get("dagster/max_runtime") == str(COMPACT_MAX_RUNTIME_SECONDS)
        for table in tables:
            pool = chaos.pool(table)
            assert pool["claimedSlots"] == [] and pool["pendingSteps"] == [], (table, pool)

        # (b) ...was re-executed whole in its table's place (same tag and asset) and succeeded;
        # nothing else failed
        failed = {r["runId"] for r in runs if r["status"] == "FAILURE"}
        for table, kill in killed.items():
            retries = [r for r in runs if r["tags"].get("dagster/root_run_id") == kill["run"]["runId"]]
            assert bool(retries) == (kill["run"]["runId"] in failed), chaos.describe(runs)
            assert all(r["tags"].get("lakehouse/table") == table for r in retries), retries
            assert all(
                r["assetSelection"] == [{"path": ["current_state", *table.split(".")]}] for r in retries
            ), retries
        assert failed <= {k["run"]["runId"] for k in killed.values()}, chaos.describe(runs)
        # one run per table at a time: a table's runs never overlap
        for table in tables:
            spans = sorted(
                (r["startTime"], r["endTime"])
                for r in runs
                if r["tags"].get("lakehouse/table") == table and r["startTime"] is not None
            )
            assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), (table, spans, chaos.describe(runs))
        print(f"recovered in {time.monotonic() - started:.0f} s after the sensor started ({len(runs)} runs)")
    finally:
        ui.stop()
        print(ui.report())  # shown when the test fails

    # (c) the truth: every table equals the oracle of the lake's events (its keys, every column) and
    # holds each key once (the oracle's comparison goes through a dict, which would hide a doubled key)
    assert_equals_oracle(lake, state, plain_config())
    for table in tables:
        keys = state_keys(str(state), table)
        assert (keys.duplicate_keys, keys.null_keys) == (0, 0), (table, keys)
    print(f"equal to the oracle; {time.monotonic() - t0:.0f} s in all")
