"""`make demo`: build a sample lake and run the main job in-process on embedded defaults."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from lakehouse.settings import get_settings

DEMO_EVENTS = int(os.environ.get("DEMO_EVENTS", "200000"))
# DEMO_SOURCE=generator (default): a generated lake. DEMO_SOURCE=postgres: a throwaway PostgreSQL
# with the Eco2 databases, a scripted workload, and `lakehouse capture` (embedded Debezium).
DEMO_SOURCE = os.environ.get("DEMO_SOURCE", "generator")
DEMO_SCANS = int(os.environ.get("DEMO_SCANS", "1500"))
# the S3 sink's format.class: parquet (default), avro, or json (generator only)
DEMO_FORMAT = os.environ.get("DEMO_FORMAT", "parquet")
# demo only: the HMAC key for pseudonymised columns when LAKEHOUSE_PSEUDONYM_KEY is unset (production
# sets its own secret); handed to the job's state resource, never written to os.environ
DEMO_PSEUDONYM_KEY = "demo-only-not-a-secret"


def step(msg: str) -> None:
    print(f"\n==> {msg}", flush=True)


def capture_from_postgres(lake: str, cli: list[str]) -> None:
    """Throwaway PostgreSQL (auth and scan databases) → scripted workload → lakehouse capture."""
    from lakehouse.lake.store import open_store
    from lakehouse.pg.cluster import PgCluster
    from lakehouse.pg.workload import Eco2Workload, create_databases, load_schema

    step("starting a throwaway PostgreSQL 15 cluster (wal_level=logical, loopback only)")
    cluster = PgCluster.temporary().start()
    try:
        create_databases(cluster.dsn())
        auth, scan = cluster.dsn("auth"), cluster.dsn("scan")
        load_schema(auth, "auth")
        load_schema(scan, "scan")
        work = Eco2Workload(auth, scan, seed=7)
        step(f"Eco2 workload, before capture: sign-ups and {DEMO_SCANS:,} scans (the snapshot)")
        work.sign_ups(max(50, DEMO_SCANS // 10))
        work.scans(DEMO_SCANS)
        state = get_settings().capture_dir
        procs = []
        for db, dsn in (("auth", auth), ("scan", scan)):
            step(f"lakehouse capture {db} -> {lake} (snapshot, then streaming)")
            # two captures under one prefix: each its own transaction topic (config/tables.yaml)
            procs.append(
                subprocess.Popen(
                    [
                        *cli,
                        "capture",
                        "--dsn",
                        dsn,
                        "--lake",
                        lake,
                        "--state-dir",
                        str(state),
                        "--transaction-topic",
                        f"eco2.transaction_{db}",
                        "--format",
                        "avro" if DEMO_FORMAT == "avro" else "parquet",
                        "--rotate-interval",
                        "2",
                        "--stop-when-idle",
                        "8",
                        "--heap-mb",
                        "512",
                    ]
                )
            )
        store = open_store(lake)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not any(store.list("topics/eco2.scan.feedback/")):
            time.sleep(0.5)
        step(
            f"Eco2 workload, while capturing: {DEMO_SCANS // 3:,} more scans, re-scored classifications, "
            "changed and withdrawn feedback, an account closure"
        )
        work.scans(DEMO_SCANS // 3)
        work.changes()
        for p in procs:
            if p.wait(timeout=600) != 0:
                raise SystemExit("capture failed; see its log above")
    finally:
        cluster.remove()


def print_watermarks() -> None:
    """Each database's consistent watermark: where the warehouse, marts and dataset read it."""
    import datetime as dt

    from lakehouse.config import load_config
    from lakehouse.state.consistent import databases, published

    step("consistent watermarks (every table of a database at one transaction boundary; docs/consistency.md)")
    for database, entries in databases(load_config()).items():
        mark = published(get_settings().state, database)
        if mark is None:
            print(f"  {database}: none published (no transaction topic): the loads read the newest state")
            continue
        when = dt.datetime.fromtimestamp(mark.commit_ts_ms / 1000, dt.UTC) if mark.commit_ts_ms else None
        lag = (
            "" if mark.lag_seconds is None else f", {mark.lag_seconds:.0f} s behind the newest landed commit"
        )
        at = f"{when:%Y-%m-%d %H:%M:%S} UTC" if when else "at the snapshot"
        print(
            f"  {database}: commit LSN {mark.lsn} (txId {mark.tx_id}, committed {at}){lag}; "
            f"{len(mark.tables)} of {len(entries)} tables"
        )


def print_history_example() -> None:
    """One feedback whose verdict changed, version by version (history: true on scan.feedback)."""
    import polars as pl

    from lakehouse.state.export import table_history

    step("row history (SCD2) of scan.feedback: a verdict the user changed; docs/history.md")
    try:
        versions = pl.from_arrow(table_history(get_settings().state, "scan.feedback"))
    except Exception as exc:  # noqa: BLE001 - history off in a custom tables config
        print(f"  no history: {exc}")
        return
    changed = versions.group_by("id").len().filter(pl.col("len") > 1).get_column("id")
    if changed.is_empty():
        print("  no feedback changed yet")
        return
    one = versions.filter(pl.col("id") == changed.min()).sort("valid_from")
    for v in one.iter_rows(named=True):
        until = f"{v['valid_to']:%Y-%m-%d %H:%M:%S}" if v["valid_to"] else "now (current)"
        print(
            f"  feedback {v['id']}: thumbs_up={v['thumbs_up']!s:<5} corrected={v['corrected_category']!s:<10} "
            f"valid {v['valid_from']:%Y-%m-%d %H:%M:%S} .. {until}"
        )
    print(
        f"  as it was: lakehouse export --state {get_settings().state} --table scan.feedback "
        f"--as-of {one['valid_from'][0].isoformat()} --out feedback.parquet"
    )


def install_instance_config(dagster_home: Path) -> None:
    """The code location's instance settings (concurrency pools, no telemetry) in DAGSTER_HOME,
    unless it has a dagster.yaml already: an operator's own settings are never overwritten."""
    dagster_home.mkdir(parents=True, exist_ok=True)
    ours, theirs = Path(__file__).with_name("dagster.yaml"), dagster_home / "dagster.yaml"
    if not theirs.exists():
        shutil.copyfile(ours, theirs)
    elif theirs.read_text() != ours.read_text():
        print(f"  keeping {theirs} as it is (orchestration/dagster.yaml has the project's settings)")


def main() -> int:
    s = get_settings()
    lake = s.lake
    # the settings go to the job explicitly (instance folder, state resource with the key): the
    # environment of this process and of the CLI processes it starts is left as it was
    dagster_home = s.dagster_home
    install_instance_config(dagster_home)
    cli = [sys.executable, "-m", "lakehouse.cli"]
    started = time.monotonic()

    if DEMO_SOURCE == "postgres":
        capture_from_postgres(lake, cli)
    elif lake.startswith("s3://") or not Path(lake).exists():
        step(
            f"generating a sample Eco2 lake ({DEMO_EVENTS:,} events, {DEMO_FORMAT} objects as the S3 sink writes "
            f"them; DEMO_FORMAT=parquet|avro|json) at {lake}, with a schema change mid-stream (a column added, "
            "a type widened: the state follows PostgreSQL, see docs/schema-changes.md)"
        )
        subprocess.run(
            [
                *cli,
                "generate",
                "--lake",
                lake,
                "--events",
                str(DEMO_EVENTS),
                "--seed",
                "7",
                "--format",
                DEMO_FORMAT,
                "--flush-size",
                "5000",
                "--pk-changes",
                "--truncates",
                "--schema-change",
                "--transactions",
                # about nine days of traffic: daily marts, and the price change of 2026-11-05
                "--events-per-second",
                str(DEMO_EVENTS / (9 * 86_400)),
            ],
            check=True,
        )
    else:
        step(f"using the existing lake at {lake} (delete it to regenerate)")

    step("inspecting the lake (topics, objects, schemas, events per op)")
    subprocess.run([*cli, "inspect", "--lake", lake, "--no-schemas"], check=True)

    step(
        "running the Dagster job 'main' in-process: current state, warehouse, dbt marts, checks, dataset export"
    )
    import dagster as dg

    from orchestration.definitions import defs
    from orchestration.environment import state_resource

    quiet = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}
    result = defs.resolve_job_def("main").execute_in_process(
        instance=dg.DagsterInstance.from_config(str(dagster_home)),
        run_config=quiet,
        # a key from the environment stays a dg.EnvVar (never in the run's stored config); only the
        # demo's own non-secret default is passed as a value
        resources={"state": state_resource(None if s.pseudonym_key else DEMO_PSEUDONYM_KEY)},
    )
    if not result.success:
        print("the main job failed; see the Dagster run logs", file=sys.stderr)
        return 1
    dataset, report = {}, None
    for event in result.get_asset_materialization_events():
        mat = event.materialization
        if mat.asset_key.path[0] in ("staging", "intermediate", "marts", "seeds"):
            continue  # dbt's own log above lists those
        keep = (
            "status",
            "events",
            "rows",
            "lag_seconds",
            "mode",
            "inserted_rows",
            "seconds",
            "version",
            "new_version",
            "watermark_lsn",
            "watermark_tx_id",
            "read_from",
            "closed_accounts",
            "tombstones_erased",
            "history_versions_erased",
        )
        meta = {k: getattr(v, "value", v) for k, v in mat.metadata.items() if k in keep}
        print(f"  materialized {mat.asset_key.to_user_string()}: {meta}")
        if mat.asset_key.path[0] == "datasets":
            dataset = {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
        if mat.asset_key.path[0] == "reports":
            report = mat.metadata["path"].value
    marts = [
        e for e in result.get_asset_materialization_events() if e.materialization.asset_key.path[0] == "marts"
    ]
    checks = result.get_asset_check_evaluations()
    failed = [f"{c.asset_key.to_user_string()}:{c.check_name}" for c in checks if not c.passed]
    print(
        f"  marts built: {len(marts)}; asset checks (state, warehouse, Great Expectations, dbt tests): "
        f"{len(checks) - len(failed)} of {len(checks)} passed"
        + (f"; failed: {', '.join(failed)}" if failed else "")
    )

    step("headline numbers from the marts")
    import duckdb

    from lakehouse.sqlfiles import sql

    with duckdb.connect(str(s.duckdb_path), read_only=True) as con:
        for headline, value in con.execute(sql("marts/headlines.sql")).fetchall():
            print(f"  {headline:<48} {value}")
    if dataset:
        print(
            f"  {'RLHF dataset version':<48} {dataset['version']} ({dataset['rows']:,} rows, "
            f"{'new' if dataset['new_version'] else 'unchanged: no new version'})"
        )

    print_watermarks()
    print_history_example()

    step(f"done in {time.monotonic() - started:,.0f} s. Where to look:")
    print(f"  lake:          {lake}")
    print(
        f"  state tables:  {s.state}  (Delta; one per source table; _consistent: every table "
        "of a database at its watermark)"
    )
    print(
        f"  warehouse:     {s.duckdb_path}  (DuckDB: auth.*, scan.*; dbt: main_staging, "
        "main_intermediate, main_marts)"
    )
    print(
        f"                 .venv/bin/python -c \"import duckdb; print(duckdb.connect('{s.duckdb_path}', "
        "read_only=True).sql('select count(*) from scan.scans'))\""
    )
    print(
        "  export:        .venv/bin/lakehouse export --state "
        + s.state
        + " --table scan.scans --out scans.parquet [--consistent]"
    )
    if dataset:
        print(f"  RLHF dataset:  {dataset['path']}  (data.parquet, data.jsonl, manifest.json)")
    if report:
        print(
            f"  report:        {report}  (charts of the marts; also on the asset reports/marts_report in the UI)"
        )
    print(
        "  dbt:           cd dbt_project && ../.venv/bin/dbt docs generate --profiles-dir .   (lineage, column docs)"
    )
    print(f"  dagster home:  {dagster_home}  (run history of this demo)")
    print(
        "  web UI:        make ui   (dagster dev on http://127.0.0.1:3000: assets, checks, lake sensor, "
        "schedules; materialize from the UI)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
