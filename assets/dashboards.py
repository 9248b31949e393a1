"""Dashboards layer: the Metabase dashboards (dashboards/*.yml, applied with `lakehouse metabase
apply`) as external assets, from the dbt manifest's exposures, so the asset graph runs from the raw
topics to the dashboards. Dagster does not materialize them; Metabase queries the marts live."""
# no "from __future__ import annotations": Dagster inspects the real annotations

import json
from pathlib import Path

import dagster as dg

from assets.marts.dbt import DBT_PROJECT, Eco2DbtTranslator


def dashboard_specs() -> list[dg.AssetSpec]:
    manifest = json.loads(Path(DBT_PROJECT.manifest_path).read_text(encoding="utf-8"))
    translator = Eco2DbtTranslator()
    specs = []
    for exposure in sorted(manifest["exposures"].values(), key=lambda e: e["name"]):
        if exposure["type"] != "dashboard":
            continue
        deps = [
            translator.get_asset_key(manifest["nodes"].get(uid) or manifest["sources"][uid])
            for uid in exposure["depends_on"]["nodes"]
        ]
        specs.append(
            dg.AssetSpec(
                ["dashboards", exposure["name"]],
                deps=deps,
                group_name="marts",
                kinds={"metabase"},
                description=f"{exposure['label']} (Metabase): {exposure['description']}",
                metadata={
                    "title": exposure["label"],
                    "definition": f"dashboards/{exposure['name']}.yml",
                    "cards": exposure.get("config", {}).get("meta", {}).get("cards"),
                },
            )
        )
    return specs


DASHBOARDS = dashboard_specs()
defs = dg.Definitions(assets=DASHBOARDS)
