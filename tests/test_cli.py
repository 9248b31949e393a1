"""The `lakehouse` CLI on real lake files (the Debezium 3.6.3 samples written as the sink would)."""

from __future__ import annotations

import json

from sample_lake import write_sample_lake
from typer.testing import CliRunner

from lakehouse.cli import app
from lakehouse.lake.store import LocalStore

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
