"""moto's S3 server on loopback, for the tests (``moto_s3`` in tests/conftest.py) and the benchmarks
(bench/common.py): one way to start it, one way to point the AWS environment at it."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

MOTO_REGION = "us-east-1"
# variables that would send boto3 elsewhere than moto's endpoint, or to another region
AWS_OVERRIDES = ("AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def moto_server(
    log: Path | None = None, *, new_session: bool = False
) -> Iterator[tuple[subprocess.Popen, str]]:
    """moto's S3 server in its own process on a free loopback port its output to ``log`` (or nowhere); yields (process, endpoint)."""
    port = free_port()
    with open(log or os.devnull, "w") as fh:
        server = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=new_session,
        )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.1)
        yield server, endpoint
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def moto_env(endpoint: str, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) pointed at moto: test credentials, and none of
    the variables that would override its endpoint or region."""
    env = {k: v for k, v in (os.environ if base is None else base).items() if k not in AWS_OVERRIDES}
    env.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION=MOTO_REGION,
    )
    return env
