"""dbt exposures from the dashboard files, so lineage runs from source table to dashboard in dbt docs
(and, through the manifest, in the Dagster asset graph). `lakehouse metabase exposures` writes
dbt_project/models/exposures.yml; a test keeps the committed file equal to the dashboards."""

from __future__ import annotations

import yaml

from lakehouse.metabase.model import DashboardDef

HEADER = (
    "# Generated from dashboards/*.yml by `lakehouse metabase exposures --out "
    "dbt_project/models/exposures.yml`; do not edit by hand.\n"
)


def exposures_yaml(dashboards: list[DashboardDef]) -> str:
    exposures = []
    for d in sorted(dashboards, key=lambda d: d.name):
        depends = [f"ref('{m}')" for m in sorted(d.depends_on)]
        depends += [f"source('{s.split('.', 1)[0]}', '{s.split('.', 1)[1]}')" for s in sorted(d.sources)]
        owner = {"name": d.owner.name, **({"email": d.owner.email} if d.owner.email else {})}
        exposures.append(
            {
                "name": d.name,
                "label": d.title,
                "type": "dashboard",
                "maturity": "high",
                "description": d.description,
                "owner": owner,
                "depends_on": depends,
                "config": {"meta": {"tool": "metabase", "cards": len(d.cards)}},
            }
        )
    return HEADER + yaml.safe_dump(
        {"version": 2, "exposures": exposures}, sort_keys=False, allow_unicode=True, width=100
    )
