"""Marts layer: the dbt project (staging -> intermediate -> marts) as Dagster assets, downstream of
the warehouse tables (dbt sources map to `warehouse/<schema>/<table>`); dbt tests are asset checks.

The manifest is prepared at build time (`make env` runs `dbt parse`; `dagster dev` re-parses), and
dbt runs from the project's environment, not from PATH."""
# no "from __future__ import annotations": Dagster inspects the real annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import (
    DagsterDbtTranslator,
    DagsterDbtTranslatorSettings,
    DbtCliResource,
    DbtProject,
    dbt_assets,
)

from assets.keys import table_key
from assets.retries import STORAGE_RETRY
from assets.warehouse import WAREHOUSE_POOL
from lakehouse import settings
from lakehouse.warehouse import Warehouse

DBT_DIR = Path(__file__).resolve().parents[2] / "dbt_project"
DBT_PROJECT = DbtProject(project_dir=DBT_DIR, profiles_dir=DBT_DIR)


def _manifest_is_stale() -> bool:
    manifest = Path(DBT_PROJECT.manifest_path)
    if not manifest.exists():
        return True
    built = manifest.stat().st_mtime
    return any(
        p.stat().st_mtime > built
        for p in DBT_DIR.rglob("*")
        if p.suffix in (".sql", ".yml", ".csv") and "target" not in p.relative_to(DBT_DIR).parts
    )


DBT_EXECUTABLE = str(Path(sys.executable).with_name("dbt"))  # the project's environment, not PATH

# `dagster dev` / `dg dev` (and every run worker they start) would re-parse on each code load (8 s):
# only when a dbt file changed since the manifest was built, with the project's dbt (dagster-dbt's
# own preparer looks for `dbt` on PATH, which `make ui` and `dg` do not put the venv on)
if os.getenv("DAGSTER_IS_DEV_CLI") and _manifest_is_stale():
    DbtCliResource(project_dir=DBT_PROJECT, dbt_executable=DBT_EXECUTABLE).cli(
        ["parse", "--quiet"], target_path=DBT_PROJECT.target_path
    ).wait()


class Eco2DbtTranslator(DagsterDbtTranslator):
    """dbt sources are the warehouse assets; models keep their layer: staging/, intermediate/, marts/."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            return table_key("warehouse", f"{dbt_resource_props['source_name']}.{dbt_resource_props['name']}")
        fqn = dbt_resource_props["fqn"]
        layer = fqn[1] if len(fqn) > 2 else f"{dbt_resource_props['resource_type']}s"  # seeds/llm_prices
        return dg.AssetKey([layer, dbt_resource_props["name"]])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return "marts"


_ENVIRONMENT = threading.Lock()


@contextlib.contextmanager
def dbt_environment(values: dict[str, str]) -> Iterator[None]:
    """The dbt CLI reads its target from the environment (profiles.yml) and dagster-dbt passes the
    process environment to it, with no per-call override: set the values only while the invocation
    starts (it copies the environment then), one invocation at a time."""
    with _ENVIRONMENT:
        saved = {k: os.environ.get(k) for k in values}
        os.environ.update(values)
        try:
            yield
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


# on BigQuery a dbt build touches a remote service: retried like the other layers (on DuckDB a
# failed build is a failed model or test, which a retry would only repeat)
@dbt_assets(
    manifest=DBT_PROJECT.manifest_path,
    project=DBT_PROJECT,
    pool=WAREHOUSE_POOL,
    retry_policy=STORAGE_RETRY if settings.get_settings().warehouse == "bigquery" else None,
    dagster_dbt_translator=Eco2DbtTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True)),
)
def eco2_dbt(context: dg.AssetExecutionContext, dbt: DbtCliResource, warehouse: dg.ResourceParam[Warehouse]):
    """`dbt build` of the selected models, seeds and their tests, on the configured warehouse."""
    with dbt_environment(warehouse.dbt_env()):
        invocation = dbt.cli(["build"], context=context)  # the dbt process starts with this environment
    yield from invocation.stream()


def dbt_resource() -> DbtCliResource:
    return DbtCliResource(project_dir=DBT_PROJECT, profiles_dir=str(DBT_DIR), dbt_executable=DBT_EXECUTABLE)
