"""The `dg` CLI on this project ([tool.dg] in pyproject.toml): `dg check defs` loads the code
location the way `dg dev` does, so a broken [tool.dg] table or an import that only works from
the repository root fails here. (`dagster dev -w workspace.yaml` is tests/orchestration/test_ui.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DG = Path(sys.executable).with_name("dg")


def test_dg_check_defs_loads_the_code_location(tmp_path):
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}  # no instance of the developer's
    env.pop("VIRTUAL_ENV", None)
    run = subprocess.run(
        [str(DG), "check", "defs"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "All definitions loaded successfully" in run.stdout + run.stderr


def test_dg_sees_the_location_and_its_assets():
    run = subprocess.run(
        [str(DG), "list", "defs", "--json"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-3000:]
    listed = run.stdout
    for key in ("current_state/scan/feedback", "warehouse/scan/feedback", "marts/mart_rlhf_golden"):
        assert key in listed, key
