"""The UI path end to end: ``dagster-webserver`` and ``dagster-daemon`` on a free loopback port, one
asset materialized through the GraphQL API exactly as the UI's "Materialize" button does it, and the
asset's metadata read back through GraphQL.

What the UI does (dagster-webserver 1.13 bundle, ``executionParamsForAssetJob`` / ``getCommonJob``): it
loads the asset node (its ``jobNames`` and checks), picks the first job every selected asset belongs
to (the implicit ``__ASSET_JOB``), and sends the ``LaunchPipelineExecution`` mutation with
``runConfigData: "{}"``, the asset selection and the asset's checks that are in that job. The instance
queues runs (QueuedRunCoordinator), so only the daemon starts them: both processes must run.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # the venv running the tests holds dagster-webserver and dagster-daemon
TABLE = "scan.feedback"
KEY = ["current_state", *TABLE.split(".")]
STARTUP_TIMEOUT = 120
RUN_TIMEOUT = 180
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}

ASSET_NODE = """
query LaunchAssetLoader($keys: [AssetKeyInput!]!) {
  assetNodes(assetKeys: $keys) {
    assetKey { path }
    jobNames
    repository { name location { name } }
    assetChecksOrError { __typename ... on AssetChecks { checks { name jobNames } } }
  }
}
"""

LAUNCH = """
mutation LaunchPipelineExecution($executionParams: ExecutionParams!) {
  launchPipelineExecution(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId status pipelineName } }
    ... on PythonError { message stack }
    ... on Error { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""

RUN = """
query Run($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { runId status pipelineName assetSelection { path } }
    ... on Error { message }
  }
}
"""

MATERIALIZATION = """
query AssetMaterialization($key: AssetKeyInput!) {
  assetOrError(assetKey: $key) {
    __typename
    ... on Asset {
      assetMaterializations(limit: 1) {
        runId
        metadataEntries {
          __typename
          label
          ... on IntMetadataEntry { intValue }
          ... on FloatMetadataEntry { floatValue }
          ... on TextMetadataEntry { text }
          ... on PathMetadataEntry { path }
        }
      }
    }
  }
}
"""

CHECKS = """
query AssetChecks($keys: [AssetKeyInput!]!) {
  assetNodes(assetKeys: $keys) {
    assetChecksOrError {
      __typename
      ... on AssetChecks {
        checks { name executionForLatestMaterialization { runId status evaluation { success } } }
      }
    }
  }
}
"""

WORKSPACE = """
{
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError { __typename ... on PythonError { message } }
      }
    }
  }
}
"""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, lines: int = 60) -> str:
    text = path.read_text(errors="replace") if path.exists() else "(no log)"
    return "\n".join(text.splitlines()[-lines:])


class DagsterUi:
    """The webserver and the daemon of one throwaway instance, and a GraphQL client for the webserver."""

    def __init__(self, home: Path, port: int):
        self.home = home
        self.url = f"http://127.0.0.1:{port}"
        self.logs = {"webserver": home / "webserver.log", "daemon": home / "daemon.log"}
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, env: dict[str, str], port: int) -> None:
        commands = {
            "webserver": [
                str(BIN / "dagster-webserver"),
                "-w",
                "workspace.yaml",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
            ],
            "daemon": [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"],
        }
        for name, cmd in commands.items():
            with self.logs[name].open("wb") as log:  # the child keeps its own descriptor
                self.procs[name] = subprocess.Popen(
                    cmd,
                    cwd=ROOT,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )

    def stop(self) -> None:
        """SIGTERM each process group (the code servers and run workers are in them), SIGKILL what stays."""
        for proc in self.procs.values():
            self._signal(proc, signal.SIGTERM)
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=20)
            self._signal(proc, signal.SIGKILL)
            proc.wait(timeout=10)

    @staticmethod
    def _signal(proc: subprocess.Popen, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):  # start_new_session: the group id is the child's pid
            os.killpg(proc.pid, sig)

    def report(self) -> str:
        return "\n".join(f"--- {name} ({path}) ---\n{_tail(path)}" for name, path in self.logs.items())

    def _check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}\n{self.report()}")

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(
            f"{self.url}/graphql", data=body, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                payload = json.load(response)
        except urllib.error.HTTPError as e:  # a query the schema rejects comes back as 400 with the errors
            payload = json.loads(e.read() or b"{}")
        if payload.get("errors") or "data" not in payload:
            raise AssertionError(f"GraphQL errors: {json.dumps(payload.get('errors', payload), indent=1)}")
        return payload["data"]

    def wait_ready(self, timeout: float) -> None:
        """Until the webserver answers and the code location is loaded (``/server_info`` alone comes first)."""
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive()
            try:
                with urllib.request.urlopen(f"{self.url}/server_info", timeout=5) as response:
                    if response.status == 200:
                        entries = self.graphql(WORKSPACE)["workspaceOrError"]["locationEntries"]
                        for entry in entries:
                            if entry["locationOrLoadError"]["__typename"] == "PythonError":
                                raise RuntimeError(
                                    f"code location {entry['name']} failed to load: "
                                    f"{entry['locationOrLoadError']['message']}"
                                )
                        if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                            return
            except (OSError, AssertionError):  # not listening yet, or still starting up
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"Dagster UI not ready after {timeout} s\n{self.report()}")
            time.sleep(0.5)

    def wait_for_run(self, run_id: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            run = self.graphql(RUN, {"runId": run_id})["runOrError"]
            assert run["__typename"] == "Run", run
            if run["status"] in FINISHED:
                return run
            self._check_alive()
            if time.monotonic() > deadline:
                raise AssertionError(f"run {run_id} still {run['status']} after {timeout} s\n{self.report()}")
            time.sleep(1)


@pytest.fixture
def dagster_ui(tmp_path) -> Iterator[DagsterUi]:
    """A generated lake under a throwaway LAKEHOUSE_HOME, and the webserver and daemon serving it."""
    from lakehouse.generate import GeneratorOptions, generate_lake

    generate_lake(tmp_path / "lake", GeneratorOptions(events=3_000, seed=2))
    dagster_home = tmp_path / "dagster"
    dagster_home.mkdir()
    shutil.copy(ROOT / "orchestration" / "dagster.yaml", dagster_home / "dagster.yaml")
    # nothing from the caller's environment may point the code location elsewhere
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LAKEHOUSE_", "DAGSTER_"))}
    env.update(
        LAKEHOUSE_HOME=str(tmp_path), LAKEHOUSE_PSEUDONYM_KEY="test-key", DAGSTER_HOME=str(dagster_home)
    )

    port = _free_port()
    ui = DagsterUi(tmp_path, port)
    try:
        ui.start(env, port)
        ui.wait_ready(STARTUP_TIMEOUT)
        yield ui
    finally:
        ui.stop()
        print(ui.report())  # pytest shows it (captured teardown output) only when the test fails


def common_job(nodes: list[dict]) -> str | None:
    """The UI's ``getCommonJob`` without a preferred job: the first job every selected asset is in."""
    common = [j for j in nodes[0]["jobNames"] if all(j in n["jobNames"] for n in nodes)]
    return common[0] if common else None


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_ui_materializes_state_table_and_shows_its_metadata(dagster_ui, tmp_path):
    from lakehouse.state.export import visible_rows

    ui = dagster_ui
    [node] = ui.graphql(ASSET_NODE, {"keys": [{"path": KEY}]})["assetNodes"]
    repository = node["repository"]
    assert (repository["location"]["name"], repository["name"]) == ("cdc_lakehouse", "__repository__")
    job = common_job([node])
    assert job == "__ASSET_JOB"  # the implicit job every asset is in, listed first
    assert node["assetChecksOrError"]["__typename"] == "AssetChecks"
    checks = [c["name"] for c in node["assetChecksOrError"]["checks"] if job in c["jobNames"]]
    assert set(checks) == {"primary_key_unique_not_null", "no_toast_placeholder", "freshness"}

    params = {
        "mode": "default",
        "executionMetadata": {"tags": []},
        "runConfigData": "{}",
        "selector": {
            "repositoryLocationName": repository["location"]["name"],
            "repositoryName": repository["name"],
            "pipelineName": job,
            "assetSelection": [{"path": KEY}],
            "assetCheckSelection": [{"assetKey": {"path": KEY}, "name": name} for name in checks],
        },
    }
    launched = ui.graphql(LAUNCH, {"executionParams": params})["launchPipelineExecution"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    assert launched["run"]["status"] == "QUEUED"  # the daemon dequeues and starts it

    run = ui.wait_for_run(run_id, RUN_TIMEOUT)
    assert run["status"] == "SUCCESS", f"{run}\n{ui.report()}"
    assert run["assetSelection"] == [{"path": KEY}]

    asset = ui.graphql(MATERIALIZATION, {"key": {"path": KEY}})["assetOrError"]
    assert asset["__typename"] == "Asset", asset
    [materialization] = asset["assetMaterializations"]
    assert materialization["runId"] == run_id
    meta = {e["label"]: e for e in materialization["metadataEntries"]}
    assert meta["status"]["text"] == "applied"
    expected_rows = visible_rows(str(tmp_path / "state"), TABLE).num_rows
    assert expected_rows > 0
    assert meta["rows"]["intValue"] == expected_rows
    assert meta["dagster/row_count"]["intValue"] == expected_rows
    assert meta["inserts"]["intValue"] >= expected_rows  # every visible row was inserted in this first run
    assert meta["events_c"]["intValue"] > 0
    assert (
        meta["lag_seconds"]["__typename"] == "FloatMetadataEntry" and meta["lag_seconds"]["floatValue"] >= 0
    )
    assert meta["table_uri"]["path"] == f"{(tmp_path / 'state').resolve()}/{TABLE}"

    # the checks the UI selected ran against this materialization and passed
    [checked] = ui.graphql(CHECKS, {"keys": [{"path": KEY}]})["assetNodes"]
    executions = {
        c["name"]: c["executionForLatestMaterialization"] for c in checked["assetChecksOrError"]["checks"]
    }
    assert set(executions) == set(checks)
    for name, execution in executions.items():
        assert execution is not None, name
        assert (execution["runId"], execution["status"], execution["evaluation"]["success"]) == (
            run_id,
            "SUCCEEDED",
            True,
        ), name
