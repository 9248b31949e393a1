"""The `lakehouse` CLI on real lake files (the Debezium 3.6.3 samples written as the sink would)."""

from __future__ import annotations

import json

import pytest
from support.sample_lake import write_sample_lake
from typer.testing import CliRunner

from lakehouse.cli import app
from lakehouse.config import TableConfig, TablesConfig, load_config
from lakehouse.lake.reader import LakeNotFoundError
from lakehouse.lake.store import LocalStore
from lakehouse.state.compact import compact

runner = CliRunner()


def test_help_lists_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "generate" in result.output and "inspect" in result.output


def test_inspect_json_counts_ops_per_topic(tmp_path):
    write_sample_lake(LocalStore(tmp_path))
    result = runner.invoke(app, ["inspect", "--lake", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    topics = {t["topic"]: t for t in summary["topics"]}
    assert topics["eco2.scan.scan_feedback"]["ops"] == {"c": 2, "d": 1, "r": 2, "t": 1, "u": 1}
    assert topics["eco2.scan.llm_call_log"]["ops"] == {"c": 3, "d": 2, "r": 2}
    cols = {c[0]: c for c in topics["eco2.scan.scan_results"]["columns"]}
    assert cols["confidence"][1] == "decimal128(5, 4)"
    assert cols["created_at"][1] == "timestamp[us, tz=UTC]"
    assert "bin_color" in cols  # added mid-stream, merged in


def test_inspect_reports_bad_objects_and_exits_nonzero(tmp_path):
    store = LocalStore(tmp_path)
    write_sample_lake(store)
    bad = "topics/eco2.auth.users/partition=0/eco2.auth.users+0+0000000099.snappy.parquet"
    store.put_bytes(bad, b"")
    result = runner.invoke(app, ["inspect", "--lake", str(tmp_path), "--json"])
    assert result.exit_code == 1
    assert bad in result.output and "zero-byte" in result.output
    # the other topics are still inspected
    assert "eco2.scan.scan_results" in result.stdout


@pytest.mark.parametrize("where", ["missing", "file", "empty folder", "empty s3 prefix"])
def test_compact_of_a_lake_that_holds_nothing_fails_in_one_line(where, tmp_path, request):
    """A typo in the lake path must not look like a healthy, idle pipeline ("up-to-date")."""
    lake = {
        "missing": lambda: str(tmp_path / "no-such-lake"),
        "file": lambda: str((tmp_path / "a-file").write_text("x") and tmp_path / "a-file"),
        "empty folder": lambda: str((tmp_path / "empty").mkdir() or tmp_path / "empty"),
        "empty s3 prefix": lambda: request.getfixturevalue("moto_s3")("nothing-here"),
    }[where]()
    result = CliRunner().invoke(app, ["compact", "--lake", lake, "--state", str(tmp_path / "state")])
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert f"lake {lake.rstrip('/')}" in message and "check the path" in message
    assert "Traceback" not in result.output and not (tmp_path / "state").exists()


def test_compact_of_one_unwritten_topic_in_a_lake_with_others_is_up_to_date(tmp_path):
    write_sample_lake(LocalStore(tmp_path / "lake"))
    results = compact(
        str(tmp_path / "lake"),
        str(tmp_path / "state"),
        TablesConfig(tables=(TableConfig(topic="eco2.not.written", primary_key=("id",)),)),
    )
    assert [r.status for r in results] == ["up-to-date"]
    with pytest.raises(LakeNotFoundError, match="does not exist"):
        compact(str(tmp_path / "nowhere"), str(tmp_path / "state"), load_config())


def test_load_and_maintain_turn_expected_failures_into_one_line(tmp_path):
    bad_config = tmp_path / "tables.yaml"
    bad_config.write_text("tables: [\n")
    not_duckdb = tmp_path / "warehouse.duckdb"
    not_duckdb.write_text("not a database")
    state = str(tmp_path / "state")
    cases = [
        (
            [
                "load",
                "--state",
                state,
                "-w",
                str(tmp_path / "w.duckdb"),
                "-t",
                "scan.scans",
                "--tables-config",
                str(bad_config),
            ],
            2,
            "not valid YAML",
        ),
        (
            ["load", "--state", state, "-w", str(not_duckdb), "-t", "scan.scans"],
            2,
            "cannot open the warehouse",
        ),
        (["maintain", "--state", state, "--table", "nope.nope"], 1, "no current-state table here"),
    ]
    for args, code, message in cases:
        result = CliRunner().invoke(app, args)
        assert result.exit_code == code, (args, result.output)
        assert message in " ".join(result.output.split()) and "Traceback" not in result.output, result.output


def test_compact_with_a_state_path_that_is_a_file_fails_in_one_line_before_reading(tmp_path):
    write_sample_lake(LocalStore(tmp_path / "lake"))
    state = tmp_path / "state-file"
    state.write_text("x")
    result = CliRunner().invoke(app, ["compact", "--lake", str(tmp_path / "lake"), "--state", str(state)])
    assert result.exit_code == 2, result.output
    assert "a file, not a folder" in result.output and "Traceback" not in result.output


@pytest.mark.s3
def test_compact_with_storage_unreachable_or_a_missing_bucket_fails_in_one_line(
    moto_s3, tmp_path, monkeypatch
):
    state = str(tmp_path / "state")
    missing = CliRunner().invoke(
        app, ["compact", "--lake", "s3://no-such-bucket-here/lake", "--state", state]
    )
    assert missing.exit_code == 2, missing.output
    assert "NoSuchBucket" in missing.output and "Traceback" not in missing.output
    # nothing listens on port 9 (discard): every request is refused, retried, then reported
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("LAKEHOUSE_STORAGE_RETRY_SECONDS", "2")
    down = CliRunner().invoke(app, ["compact", "--lake", "s3://some-bucket/lake", "--state", state])
    assert down.exit_code == 2, down.output
    assert "storage unavailable" in down.output and "s3://some-bucket/lake/topics/" in down.output
    assert "Traceback" not in down.output
