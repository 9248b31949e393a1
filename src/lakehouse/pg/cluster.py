"""A throwaway PostgreSQL cluster from the machine's binaries, for tests and the demo.

``initdb`` and ``pg_ctl`` refuse to run as root, so when we are root they run as the ``postgres`` OS
user (``runuser``). The cluster listens on a free loopback port with ``wal_level=logical``; removing
it deletes the data directory, replication slots included.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "wal_level": "logical",
    "max_replication_slots": "10",
    "max_wal_senders": "10",
    "fsync": "off",  # throwaway: durability of the test cluster itself does not matter
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_buffers": "128MB",
    "max_connections": "50",
}


class ClusterError(RuntimeError):
    pass


def find_bindir() -> Path:
    """PostgreSQL server binaries: ``PG_BINDIR``, else the newest /usr/lib/postgresql/*/bin."""
    env = os.environ.get("PG_BINDIR")
    candidates = (
        [env]
        if env
        else sorted(
            glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True
        )
    )
    for c in candidates:
        if c and (Path(c) / "initdb").exists():
            return Path(c)
    raise ClusterError("no PostgreSQL server binaries found (set PG_BINDIR to the folder holding initdb)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PgCluster:
    base_dir: Path
    port: int = field(default_factory=free_port)
    bindir: Path = field(default_factory=find_bindir)
    settings: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_SETTINGS))
    os_user: str = "postgres"

    @classmethod
    def temporary(cls, **kw) -> PgCluster:
        return cls(Path(tempfile.mkdtemp(prefix="lakehouse-pg-")), **kw)

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def log_file(self) -> Path:
        return self.base_dir / "postgres.log"

    def dsn(self, dbname: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={dbname}"

    def _run(self, *args: str | Path) -> subprocess.CompletedProcess:
        cmd = [str(a) for a in args]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", self.os_user, "--", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise ClusterError(
                f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}"
            )
        return proc

    def start(self) -> PgCluster:
        """Create (first time) and start the cluster. As root, ``base_dir`` and its parents must be
        reachable by the ``postgres`` user (``temporary()`` uses the system temp dir)."""
        self.base_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            pw = pwd.getpwnam(self.os_user)
            os.chown(self.base_dir, pw.pw_uid, pw.pw_gid)
            for parent in self.base_dir.resolve().parents:
                if not os.stat(parent).st_mode & 0o001:
                    raise ClusterError(
                        f"{parent} is not reachable by the {self.os_user!r} user that runs "
                        f"PostgreSQL; put the cluster folder elsewhere (e.g. under /tmp)"
                    )
        if not (self.data_dir / "PG_VERSION").exists():
            self._run(
                self.bindir / "initdb",
                "-D",
                self.data_dir,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            )
        conf = "\n".join(
            f"{k} = {v}"
            for k, v in {
                **self.settings,
                "port": str(self.port),
                "unix_socket_directories": f"'{self.base_dir}'",
            }.items()
        )
        (self.data_dir / "postgresql.auto.conf").write_text(conf + "\n")
        if os.geteuid() == 0:
            pw = pwd.getpwnam(self.os_user)
            os.chown(self.data_dir / "postgresql.auto.conf", pw.pw_uid, pw.pw_gid)
        self._run(self.bindir / "pg_ctl", "-D", self.data_dir, "-l", self.log_file, "-w", "-t", "60", "start")
        return self

    def stop(self, mode: str = "fast") -> None:
        if (self.data_dir / "postmaster.pid").exists():
            try:
                self._run(self.bindir / "pg_ctl", "-D", self.data_dir, "-m", mode, "-w", "stop")
            except ClusterError:
                self._run(self.bindir / "pg_ctl", "-D", self.data_dir, "-m", "immediate", "-w", "stop")

    def restart(self) -> None:
        self.stop()
        self.start()

    def remove(self) -> None:
        """Stop and delete everything (data directory, WAL, replication slots)."""
        try:
            self.stop(mode="immediate")
        finally:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (
                subprocess.run(
                    [str(self.bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                    capture_output=True,
                ).returncode
                == 0
            ):
                return
            time.sleep(0.2)
        raise ClusterError(f"PostgreSQL on port {self.port} not ready after {timeout} s; see {self.log_file}")

    def __enter__(self) -> PgCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.remove()
