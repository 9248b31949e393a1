"""No secret leaves where it belongs (issue 15, item 6).

`make demo`'s path (`python -m orchestration.demo`: generated lake -> Dagster job `main` on a real
DAGSTER_HOME: current state, warehouse load, dbt marts and tests, Great Expectations checks, RLHF
dataset export, marts report) runs in a subprocess with sentinel secrets in its environment: a
PostgreSQL password (PGPASSWORD, a DSN in DATABASE_URL), LAKEHOUSE_PSEUDONYM_KEY, a GCP
service-account key (a file in GOOGLE_APPLICATION_CREDENTIALS),
AWS and Metabase credentials. Then everything it wrote (its LAKEHOUSE_HOME, HOME and TMPDIR, the dbt
target and log files it wrote in the repository, its stdout and stderr) is searched for those
secrets, and for every ``password_hash`` and raw ``email`` of the generated lake: those may only be
in the raw lake (``password_hash: drop``, ``email: pseudonymise`` in config/tables.yaml).
"""

from __future__ import annotations

import gzip
import hashlib
import hmac
import json
import os
import re
import sqlite3
import subprocess
import sys
import time
import uuid
import zlib
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from support.secrets_scan import scan_for_secrets

REPO = Path(__file__).resolve().parents[2]
TOAST = "__debezium_unavailable_value"
# repository folders a run of the project does not write (tools, environments, caches, VCS, and
# the real demo's .data: this test runs on its own LAKEHOUSE_HOME)
NOT_WRITTEN_BY_A_RUN = {
    ".git",
    ".venv",
    ".venv-bqemu",
    ".bqemu-home",
    ".tools",
    ".hypothesis",
    ".pytest_cache",
    ".ruff_cache",
    ".data",
    "test-artifacts",
    "__pycache__",
}


def sentinels(tmp: Path) -> tuple[dict[str, str], dict[str, list[str]], Path]:
    """(environment to add, secrets by kind, the key file) with values unique to this run."""
    tag = uuid.uuid4().hex
    pg_password = f"SentinelPgPw{tag[:16]}"
    pseudonym_key = f"SentinelPseudonymKey{tag[16:32]}"
    gcp_body = f"MIIEvQSentinelGcpPrivateKey{tag[:24]}"
    aws_secret = f"SentinelAwsSecret{tag[8:28]}"
    aws_token = f"SentinelAwsToken{tag[4:24]}"
    metabase = f"SentinelMetabase{tag[12:30]}"
    # unique values first and last, so the first and last base64 chunks are unique to this run too
    key = {
        "private_key_id": tag,
        "type": "service_account",
        "project_id": "sentinel-project",
        "private_key": f"-----BEGIN PRIVATE KEY-----\n{gcp_body}\n-----END PRIVATE KEY-----\n",
        "client_email": "sentinel@sentinel-project.iam.gserviceaccount.com",
        "token_uri": "https://oauth2.googleapis.com/token",
        "client_id": str(int(tag[:20], 16)),
    }
    key_file = tmp / "credentials" / "service-account.json"
    key_file.parent.mkdir(parents=True)
    key_file.write_text(json.dumps(key))
    env = {
        "PGPASSWORD": pg_password,
        "DATABASE_URL": f"postgresql://cdc:{pg_password}@127.0.0.1:5432/scan",
        "LAKEHOUSE_PSEUDONYM_KEY": pseudonym_key,
        "GOOGLE_APPLICATION_CREDENTIALS": str(key_file),
        "AWS_ACCESS_KEY_ID": "AKIASENTINEL0000000",
        "AWS_SECRET_ACCESS_KEY": aws_secret,
        "AWS_SESSION_TOKEN": aws_token,
        "METABASE_API_KEY": metabase,
        "METABASE_PASSWORD": metabase,
    }
    secrets = {
        "PostgreSQL DSN password": [pg_password],
        "LAKEHOUSE_PSEUDONYM_KEY": [pseudonym_key],
        "GCP service-account private key": [gcp_body],
        "AWS secret access key / session token": [aws_secret, aws_token],
        "Metabase credential": [metabase],
    }
    return env, secrets, key_file


def lake_values(lake: Path, topic: str, column: str) -> list[str]:
    """Every value of ``column`` in the raw lake's objects of ``topic`` (before and after images),
    read with pyarrow directly rather than through the project's reader."""

    def collect(value, out: set[str]) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                if k == column and isinstance(v, str) and v and v != TOAST:
                    out.add(v)
                else:
                    collect(v, out)
        elif isinstance(value, list):
            for v in value:
                collect(v, out)

    found: set[str] = set()
    for obj in sorted((lake / "topics" / topic).rglob("*.parquet")):
        collect(pq.read_table(obj).to_pylist(), found)
    return sorted(found)


def redact(text: str, secrets: dict[str, list[str]]) -> str:
    """``text`` without any secret value (a failure message must not print one)."""
    for kind, values in secrets.items():
        for value in values:
            text = text.replace(value, f"<{kind}>")
    return text


def written_since(root: Path, started: float) -> list[Path]:
    """Files under the repository that changed since ``started`` (outside tools and environments)."""
    out = []
    for d, dirs, names in os.walk(root):
        dirs[:] = [x for x in dirs if x not in NOT_WRITTEN_BY_A_RUN]
        for name in names:
            p = Path(d) / name
            try:
                if p.stat().st_mtime >= started:
                    out.append(p)
            except FileNotFoundError:
                continue  # another process's temporary file
    return out


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_demo_path_writes_no_secret_anywhere(tmp_path):
    env_secrets, secrets, key_file = sentinels(tmp_path)
    root = tmp_path / "run"
    home, user_home, tmp = root / "lakehouse", root / "home", root / "tmp"
    for d in (home, user_home, tmp):
        d.mkdir(parents=True)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LAKEHOUSE_", "DAGSTER_", "DEMO_", "AWS_", "GOOGLE_", "METABASE_", "PG"))
    }
    env.update(
        env_secrets,
        LAKEHOUSE_HOME=str(home),
        HOME=str(user_home),
        TMPDIR=str(tmp),
        DEMO_EVENTS="10000",
        PYTHONUNBUFFERED="1",
    )
    started = time.time() - 1  # file times have coarse resolution on some file systems
    proc = subprocess.run(
        [sys.executable, "-m", "orchestration.demo"], cwd=REPO, env=env, capture_output=True, timeout=280
    )
    (root / "demo.stdout").write_bytes(proc.stdout)
    (root / "demo.stderr").write_bytes(proc.stderr)
    assert proc.returncode == 0, redact(proc.stderr.decode(errors="replace")[-3000:], secrets)
    out = proc.stdout.decode()
    assert re.search(r"marts built: [1-9]", out) and "asset checks" in out and "failed:" not in out, redact(
        out[-2000:], secrets
    )

    lake = home / "lake"
    password_hashes = lake_values(lake, "eco2.auth.users", "password_hash")
    emails = lake_values(lake, "eco2.auth.users", "email")
    assert len(password_hashes) > 50 and len(emails) > 50, "the generated lake has no users to check"

    repo_files = written_since(REPO, started)
    assert any(p.is_relative_to(REPO / "dbt_project" / "target") for p in repo_files), (
        "the dbt run of the job wrote no target files: is the scan looking in the right place?"
    )
    everything = [root, *repo_files]
    seen: list[str] = []
    # secrets of the environment: allowed nowhere the run writes (the raw lake included)
    leaks = scan_for_secrets(everything, secrets, exclude=[key_file.parent], seen=seen)
    # personal data the tables config keeps out of the state: allowed only in the raw lake's objects
    raw_lake = lake / "topics"
    leaks += scan_for_secrets(
        everything,
        {
            "password_hash of the raw lake (policy: drop)": password_hashes,
            "raw email of the raw lake (policy: pseudonymise)": emails,
        },
        exclude=[key_file.parent, raw_lake],
    )
    assert not leaks, "secrets found where they must not be:\n  " + "\n  ".join(leaks)

    # the scan looked where it should (decoded, not only raw bytes)
    scanned = "\n".join(seen)
    for expected in (
        f"{home / 'warehouse.duckdb'}:auth.users.email",  # the warehouse, every table
        f"{home / 'warehouse.duckdb'}:main_marts.",  # dbt marts
        "event_logs.event",  # Dagster's SQLite event log
        "snapshots.snapshot_body (zlib)",  # Dagster's job snapshot (resource config)
        "compute_logs",  # Dagster's captured step output
        f"{home / 'state' / 'auth.users'}",  # the Delta state tables
        "_delta_log",
        "[email]",  # decoded Parquet cells
        f"{home / 'report' / 'index.html'}",
        "rlhf_golden",
        "data.jsonl",
        "demo.stdout",
        "demo.stderr",
        "dbt.log",
        "run_results.json",
    ):
        assert expected in scanned, f"the scan did not cover {expected}"
    # positive controls on this run's own output: the raw lake does hold the hashes, and the
    # pseudonyms (HMAC of the emails with the sentinel key) are found decoded in the state's Parquet
    # and the warehouse, so the scan does reach the values there
    assert scan_for_secrets(
        [raw_lake / "eco2.auth.users"], {"password_hash": password_hashes[:3]}, exclude=[]
    )
    key = env_secrets["LAKEHOUSE_PSEUDONYM_KEY"].encode()
    pseudonyms = [hmac.new(key, e.encode(), hashlib.sha256).hexdigest() for e in emails]
    found = scan_for_secrets(
        [home / "state" / "auth.users", home / "warehouse.duckdb"], {"pseudonym": pseudonyms}, exclude=[]
    )
    assert any("[email]: pseudonym" in f for f in found), found
    assert f"{home / 'warehouse.duckdb'}:auth.users.email: pseudonym" in found, found


def test_the_scanner_finds_a_planted_secret_in_every_format(tmp_path):
    """Negative control: a sentinel planted in scratch files is reported, by file and kind, decoded
    where the bytes alone would not show it; excluded places and clean files are not reported."""
    secret = f"PlantedSentinel{uuid.uuid4().hex}"
    other = f"OtherSentinel{uuid.uuid4().hex}"
    secrets = {"planted secret": [secret], "other secret": [other], "unused kind": []}
    scratch = tmp_path / "scratch"
    (scratch / "nested").mkdir(parents=True)
    (scratch / "clean.log").write_text("nothing to see\n" * 100)
    (scratch / "nested" / "app.log").write_text(f"INFO connecting with {secret}\n")
    (scratch / "event.json").write_text(json.dumps({"msg": f"said {secret}/x"}).replace("/", "\\/"))
    (scratch / "logs.gz").write_bytes(gzip.compress(f"gzip {secret} and {other}".encode()))
    zstd = pa.BufferOutputStream()
    with pa.CompressedOutputStream(zstd, "zstd") as stream:
        stream.write(f"zstd {secret}".encode())
    (scratch / "logs.zst").write_bytes(zstd.getvalue().to_pybytes())
    (scratch / "blob.z").write_bytes(zlib.compress(f"zlib {secret}".encode()))
    # Parquet, zstd-compressed (among enough other values that zstd codes the literals), no
    # statistics, the value also nested: not in the raw bytes, only in the decoded cells
    table = pa.table(
        {
            "id": list(range(2000)),
            "flat": [secret if i == 1234 else uuid.uuid4().hex for i in range(2000)],
            "nested": [{"inner": [secret if i == 7 else uuid.uuid4().hex]} for i in range(2000)],
        }
    )
    pq.write_table(table, scratch / "state.parquet", compression="zstd", write_statistics=False)
    assert secret.encode() not in (scratch / "state.parquet").read_bytes()
    with sqlite3.connect(scratch / "events.db") as con:
        con.execute("CREATE TABLE event_logs (id INTEGER, event TEXT, body BLOB)")
        con.execute("INSERT INTO event_logs VALUES (1, ?, ?)", ("clean", f"blob {secret}".encode()))
        # as Dagster stores its job snapshots: zlib-compressed JSON
        con.execute("CREATE TABLE snapshots (id INTEGER, snapshot_body BLOB)")
        con.execute(
            "INSERT INTO snapshots VALUES (1, ?)", (zlib.compress(json.dumps({"d": secret}).encode()),)
        )
    con.close()
    with duckdb.connect(str(scratch / "warehouse.duckdb")) as con:
        con.execute("CREATE SCHEMA auth")
        con.execute(
            "CREATE TABLE auth.users AS SELECT i AS id, 'h' || i AS password_hash FROM range(5000) t(i)"
        )
        con.execute("INSERT INTO auth.users VALUES (5000, ?)", [secret])
        con.execute("CREATE TABLE clean AS SELECT 1 AS x")
    excluded = scratch / "raw-lake"
    excluded.mkdir()
    (excluded / "allowed.log").write_text(secret)

    seen: list[str] = []
    found = scan_for_secrets([scratch], secrets, exclude=[excluded], seen=seen)

    expect = {
        f"{scratch / 'nested' / 'app.log'}: planted secret",
        f"{scratch / 'event.json'}: planted secret",
        f"{scratch / 'logs.gz'} (gunzip): planted secret",
        f"{scratch / 'logs.gz'} (gunzip): other secret",
        f"{scratch / 'logs.zst'} (unzstd): planted secret",
        f"{scratch / 'state.parquet'}[flat]: planted secret",
        f"{scratch / 'state.parquet'}[nested]: planted secret",
        f"{scratch / 'events.db'}:event_logs.body: planted secret",
        f"{scratch / 'events.db'}:snapshots.snapshot_body (zlib): planted secret",
        f"{scratch / 'blob.z'} (zlib): planted secret",
        f"{scratch / 'warehouse.duckdb'}:auth.users.password_hash: planted secret",
    }
    assert expect <= set(found), sorted(expect - set(found))
    assert not [f for f in found if "clean" in f or "raw-lake" in f or "[id]" in f], found
    assert all(secret not in f and other not in f for f in found), "a finding must never show the secret"
    assert f"{scratch / 'clean.log'}" in seen and not any("raw-lake" in s for s in seen)
    # a single file as a path, and nothing found once its folder is excluded
    assert scan_for_secrets([scratch / "nested" / "app.log"], secrets, exclude=[]) == [
        f"{scratch / 'nested' / 'app.log'}: planted secret"
    ]
    assert scan_for_secrets([scratch / "nested" / "app.log"], secrets, exclude=[scratch / "nested"]) == []


def test_many_values_match_as_literals():
    """Thousands of values (every password hash of a big lake) in one matcher; regex characters in
    them are literals; a prefix of a value is not a match."""
    from support.secrets_scan import _matcher

    values = [f"$2b$12$abc{i:05d}.*+?/[x]" for i in range(5000)]
    rx = _matcher(values)
    assert rx.search(b"... $2b$12$abc04999.*+?/[x] ...")
    assert rx.search(json.dumps({"h": values[17]}).replace("/", "\\/").encode())
    assert not rx.search(b"$2b$12$abc04999")
    assert not rx.search(b"$2b$12$abc0499X.*+?/[x]")
