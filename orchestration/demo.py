"""`make demo`: build a sample lake and run the main job in-process on embedded defaults."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from lakehouse import settings

DEMO_EVENTS = int(os.environ.get("DEMO_EVENTS", "200000"))


def step(msg: str) -> None:
    print(f"\n==> {msg}", flush=True)


def main() -> int:
    lake = settings.lake_uri()
    os.environ["DAGSTER_HOME"] = str(settings.dagster_home())
    dagster_yaml = Path(os.environ["DAGSTER_HOME"]) / "dagster.yaml"
    if not dagster_yaml.exists():
        dagster_yaml.parent.mkdir(parents=True, exist_ok=True)
        dagster_yaml.write_text("telemetry:\n  enabled: false\n")
    cli = [sys.executable, "-m", "lakehouse.cli"]
    started = time.monotonic()

    if lake.startswith("s3://") or not Path(lake).exists():
        step(f"generating a sample Eco2 lake ({DEMO_EVENTS:,} events) at {lake}")
        subprocess.run([*cli, "generate", "--lake", lake, "--events", str(DEMO_EVENTS), "--seed", "7",
                        "--flush-size", "5000", "--pk-changes", "--truncates", "--schema-change"],
                       check=True)
    else:
        step(f"using the existing lake at {lake} (delete it to regenerate)")

    step("inspecting the lake (topics, objects, schemas, events per op)")
    subprocess.run([*cli, "inspect", "--lake", lake, "--no-schemas"], check=True)

    step("running the Dagster job 'main' in-process")
    import dagster as dg

    from orchestration.definitions import defs

    quiet = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}
    result = defs.resolve_job_def("main").execute_in_process(instance=dg.DagsterInstance.get(),
                                                             run_config=quiet)
    if not result.success:
        print("the main job failed; see the Dagster run logs", file=sys.stderr)
        return 1
    for event in result.get_asset_materialization_events():
        mat = event.materialization
        meta = {k: getattr(v, "value", v) for k, v in mat.metadata.items() if k != "inventory"}
        print(f"  materialized {mat.asset_key.to_user_string()}: {meta}")

    step(f"done in {time.monotonic() - started:,.0f} s. Where to look:")
    print(f"  lake:          {lake}")
    print(f"  dagster home:  {os.environ['DAGSTER_HOME']}  (run history of this demo)")
    print("  inspect:       .venv/bin/lakehouse inspect --lake " + lake)
    print("  web UI:        DAGSTER_HOME=" + os.environ["DAGSTER_HOME"]
          + " .venv/bin/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000   (then open http://127.0.0.1:3000)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
