"""`lakehouse capture` as a subprocess for tests (the JVM lives there; kill -9 needs a process).

``Capture`` runs the CLI with a 1 s rotation; the autouse fixture ``_no_capture_left_running``
(import it into a test module to activate it there) kills whatever a test left running.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


class Capture:
    """`lakehouse capture` in a subprocess (killed at the end of the test whatever happens)."""

    running: list[Capture] = []

    def __init__(self, dsn: str, lake: Path, state: Path, *extra: str):
        self.dsn, self.lake, self.state, self.extra = dsn, lake, state, extra
        self.proc: subprocess.Popen | None = None
        self.log = state / "capture.log"
        Capture.running.append(self)

    def start(self) -> Capture:
        self.state.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "lakehouse.cli",
            "capture",
            "--dsn",
            self.dsn,
            "--lake",
            str(self.lake),
            "--state-dir",
            str(self.state),
            "--rotate-interval",
            "1",
            "--heap-mb",
            "512",
            *self.extra,
        ]
        self._log_handle = self.log.open("a")  # closed in stop()/kill9(); the child writes to it
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._log_handle, text=True)
        return self

    def stop(self, timeout: float = 60) -> dict:
        self.proc.send_signal(signal.SIGTERM)
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        self._log_handle.close()
        assert self.proc.returncode == 0, self.log.read_text()[-3000:]
        return json.loads(out)

    def kill9(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.proc.stdout.close()
        self._log_handle.close()

    def assert_alive(self) -> None:
        if self.proc.poll() is not None:
            raise AssertionError(f"capture exited {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")


@pytest.fixture(autouse=True)
def _no_capture_left_running():
    yield
    while Capture.running:
        cap = Capture.running.pop()
        if cap.proc is not None and cap.proc.poll() is None:
            cap.proc.kill()
            cap.proc.wait(timeout=30)


def wait_for(predicate, capture: Capture, timeout: float = 90, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        capture.assert_alive()
        last = predicate()
        if last is True:
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}: {last}")
