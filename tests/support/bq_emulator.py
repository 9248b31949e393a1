"""A local BigQuery for the tests: bqemulator 1.4.0 over REST on loopback.

The emulator lives in its own pinned venv (``.venv-bqemu``, from ``tools/bqemulator/requirements.txt``)
with the DuckDB extensions it needs offline (spatial, avro) installed under a repo-local HOME
(``.bqemu-home/.duckdb``); ``make bqemu`` builds both, and ``make test`` / ``make test-fast`` depend on
it. See shared/spec/stack-notes.md §4 and §6.2.

``bigquery_emulator`` (session scope) starts one ephemeral (in-memory) emulator for the whole session
and yields a :class:`BigQueryEmulator`:

* ``endpoint``: ``http://127.0.0.1:<port>``, the REST root (``api_endpoint`` for the client, dbt's
  ``api_endpoint``, ``EmulatorBigQueryResource``);
* ``project``: ``"local-proj"``;
* ``client(**kwargs)``: a ``google.cloud.bigquery.Client`` with anonymous credentials pointed at it.

The state is shared by every test of the session: create datasets with unique names.

Known gaps (stack-notes §4.5): pre-create tables before Parquet loads; no schema evolution; use
``load_table_from_file`` with Parquet bytes (``load_table_from_dataframe`` fails); unnamed aggregate
columns are called ``count_star()`` etc., not ``f0_``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from google.cloud import bigquery

REPO = Path(__file__).resolve().parents[2]
BQEMU_VENV = REPO / ".venv-bqemu"
BQEMU_HOME = REPO / ".bqemu-home"  # DuckDB reads extensions from $HOME/.duckdb
PROJECT = "local-proj"
START_TIMEOUT_S = 60.0
MAKE_HINT = "run `make bqemu` (builds .venv-bqemu and installs its DuckDB extensions into .bqemu-home)"


@dataclass(frozen=True)
class BigQueryEmulator:
    endpoint: str
    project: str
    grpc_port: int
    log_path: Path
    startup_s: float

    def client(self, **kwargs: Any) -> bigquery.Client:
        """An official client on the emulator (extra kwargs, e.g. ``location``, go to the Client)."""
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import bigquery

        return bigquery.Client(
            project=self.project,
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": self.endpoint},
            **kwargs,
        )


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _log_tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:]) or "(empty log)"


def _die_with_parent() -> None:
    """In the child: get SIGTERM if the pytest process dies (no orphaned emulator after a kill -9)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG


def _stop(proc: subprocess.Popen) -> None:
    """Terminate the emulator's whole process group (SIGTERM, then SIGKILL after 10 s)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # leftovers in the group, if any
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


def _start(workdir: Path) -> tuple[subprocess.Popen, BigQueryEmulator]:
    exe = BQEMU_VENV / "bin" / "bqemulator"
    if not exe.exists():
        pytest.fail(f"BigQuery emulator not installed ({exe} is missing): {MAKE_HINT}", pytrace=False)
    if not (BQEMU_HOME / ".synced").exists():
        pytest.fail(
            f"DuckDB extensions for the emulator not installed in {BQEMU_HOME}: {MAKE_HINT}", pytrace=False
        )

    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("BQEMU_") and k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
    }
    env["HOME"] = str(BQEMU_HOME)
    env["BQEMU_UPLOAD_STAGING_DIR"] = str(workdir / "uploads")  # default: a shared /tmp/bqemu_uploads
    env["PYTHONUNBUFFERED"] = "1"

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never a proxy
    for attempt in range(3):  # ports picked here may be taken before the emulator binds them
        rest_port, grpc_port = _free_ports(2)
        log_path = workdir / f"bqemulator-{attempt}.log"
        cmd = [
            str(exe),
            *f"start --rest-host 127.0.0.1 --rest-port {rest_port} --grpc-host 127.0.0.1 "
            f"--grpc-port {grpc_port} --ephemeral --project {PROJECT} --log-level warning".split(),
        ]
        t0 = time.monotonic()
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                cmd,
                env=env,
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        endpoint = f"http://127.0.0.1:{rest_port}"
        deadline = t0 + START_TIMEOUT_S
        while True:
            try:
                with opener.open(f"{endpoint}/readyz", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:  # refused, or HTTPError 503 while starting
                pass
            if proc.poll() is not None:
                break
            if time.monotonic() > deadline:
                _stop(proc)
                pytest.fail(
                    f"bqemulator did not become ready on {endpoint} within {START_TIMEOUT_S:.0f} s "
                    f"({' '.join(cmd)}); log tail ({log_path}):\n{_log_tail(log_path)}",
                    pytrace=False,
                )
            time.sleep(0.1)
        if proc.poll() is None:
            return proc, BigQueryEmulator(endpoint, PROJECT, grpc_port, log_path, time.monotonic() - t0)
        tail = _log_tail(log_path)
        if "address already in use" in tail.lower() and attempt < 2:
            continue
        pytest.fail(
            f"bqemulator exited with code {proc.returncode} before it was ready "
            f"({' '.join(cmd)}); log tail ({log_path}):\n{tail}",
            pytrace=False,
        )
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def bigquery_emulator(tmp_path_factory):
    """bqemulator on free loopback ports in its own process group; yields a :class:`BigQueryEmulator`."""
    proc, emulator = _start(tmp_path_factory.mktemp("bqemulator"))
    try:
        yield emulator
    finally:
        _stop(proc)


def fold_engine(kind: str, request: pytest.FixtureRequest) -> tuple[Any, dict[str, str]]:
    """The fold engine ``kind`` as the settings make it (lakehouse.warehouse.engines.open_engine),
    and the environment that makes the same one in a child process (``lakehouse compact``).
    bigquery: the session's emulator, a dataset of its own."""
    import uuid
    from unittest import mock

    from lakehouse.warehouse.engines import open_engine

    env = {"LAKEHOUSE_ENGINE": kind}
    if kind == "bigquery":
        emulator = request.getfixturevalue("bigquery_emulator")
        env |= {
            "LAKEHOUSE_BIGQUERY_PROJECT": emulator.project,
            "LAKEHOUSE_BIGQUERY_ENDPOINT": emulator.endpoint,
            "LAKEHOUSE_BIGQUERY_ENGINE_DATASET": f"engine_{uuid.uuid4().hex[:8]}",
        }
    with mock.patch.dict(os.environ, env):
        return open_engine(), env
