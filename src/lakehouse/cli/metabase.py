"""`lakehouse metabase`: dashboards as code."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from lakehouse.cli.common import console, out
from lakehouse.settings import DATASET_PREFIX_ENV


class SqlDialect(StrEnum):
    auto = "auto"
    duckdb = "duckdb"
    bigquery = "bigquery"


app = typer.Typer(
    help="Dashboards as code: the Metabase dashboards defined in dashboards/ (one YAML "
    "file each, native-SQL cards written once in DuckDB SQL).",
    no_args_is_help=True,
)

DashboardsOpt = Annotated[
    str | None,
    typer.Option(
        "--dashboards", help="Folder of dashboard files (default: ./dashboards, else the repository's)."
    ),
]
DatasetPrefixOpt = Annotated[
    str,
    typer.Option(envvar=DATASET_PREFIX_ENV, show_envvar=True, help="BigQuery dataset prefix."),
]
ProjectOpt = Annotated[
    str | None,
    typer.Option(
        "--bigquery-project", help="BigQuery project to qualify tables with (default: the connection's)."
    ),
]
MetaDatasetOpt = Annotated[str, typer.Option(help="BigQuery dataset of the warehouse's load records.")]


def _dashboards_dir(folder: str | None):
    from pathlib import Path

    if folder:
        return Path(folder)
    here = Path("dashboards")
    return here if here.is_dir() else Path(__file__).resolve().parents[3] / "dashboards"


def _load_dashboards(folder: str | None):
    from lakehouse.metabase import DefinitionError, load_dashboards

    try:
        return load_dashboards(_dashboards_dir(folder))
    except DefinitionError as exc:
        console.print(f"[bold red]invalid dashboard files[/]: {escape(str(exc))}")
        raise typer.Exit(code=2) from None


def _target(dialect: str, project: str | None, dataset_prefix: str, meta_dataset: str):
    from lakehouse.metabase import Target

    if dialect == "duckdb":
        return Target.duckdb()
    return Target.bigquery(project=project, dataset_prefix=dataset_prefix, meta_dataset=meta_dataset)


@app.command("apply")
def metabase_apply(
    url: Annotated[str, typer.Option(envvar="METABASE_URL", show_envvar=True, help="Metabase base URL.")],
    database_name: Annotated[
        str,
        typer.Option(
            envvar="METABASE_DATABASE",
            show_envvar=True,
            help="The Metabase database (connection) the cards query, by name.",
        ),
    ],
    collection: Annotated[
        str, typer.Option(help="Collection (top level) holding the cards and dashboards.")
    ] = ("Eco2 lakehouse"),
    dialect: Annotated[
        SqlDialect, typer.Option(help="SQL dialect of that database (auto: from its engine).")
    ] = (SqlDialect.auto),
    dataset_prefix: DatasetPrefixOpt = "",
    bigquery_project: ProjectOpt = None,
    meta_dataset: MetaDatasetOpt = "lakehouse_meta",
    dashboards: DashboardsOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan; change nothing.")] = False,
) -> None:
    """Create or update the dashboards in Metabase (idempotent: by name, never duplicated).

    Credentials (environment): METABASE_API_KEY, METABASE_SESSION, or METABASE_USERNAME + METABASE_PASSWORD."""
    from lakehouse.metabase import MetabaseClient, MetabaseError, apply, dialect_of, find_database

    defs = _load_dashboards(dashboards)
    try:
        client = MetabaseClient.from_env(url)
        database = find_database(client, database_name)
        sql_dialect = dialect_of(database) if dialect == SqlDialect.auto else dialect.value
        target = _target(sql_dialect, bigquery_project, dataset_prefix, meta_dataset)
        plan = apply(
            client, defs, database_id=database.id, target=target, collection=collection, dry_run=dry_run
        )
    except (ValueError, LookupError, MetabaseError) as exc:
        console.print(f"[bold red]metabase apply failed[/]: {escape(str(exc))}")
        raise typer.Exit(code=1) from None
    console.print(
        f"database {escape(database.name)!r} #{database.id} ({sql_dialect}), "
        f"{len(defs)} dashboards, {sum(len(d.cards) for d in defs)} cards"
    )
    for action in plan.actions:
        out.print(escape(action.line()), highlight=False)
    out.print(plan.summary(), highlight=False)


@app.command("sql")
def metabase_sql(
    dialect: Annotated[SqlDialect, typer.Option(help="duckdb or bigquery.")] = SqlDialect.duckdb,
    dashboard: Annotated[str | None, typer.Option(help="Only this dashboard (file `name`).")] = None,
    dataset_prefix: DatasetPrefixOpt = "",
    bigquery_project: ProjectOpt = None,
    meta_dataset: MetaDatasetOpt = "lakehouse_meta",
    dashboards: DashboardsOpt = None,
) -> None:
    """Print each card's SQL as sent to a database of that dialect."""
    if dialect == SqlDialect.auto:
        console.print("[bold red]--dialect[/]: duckdb or bigquery")
        raise typer.Exit(code=2)
    target = _target(dialect.value, bigquery_project, dataset_prefix, meta_dataset)
    for d in _load_dashboards(dashboards):
        if dashboard and d.name != dashboard:
            continue
        for card in d.cards:
            out.print(f"-- {d.title} / {card.name}\n{card.render(target)};\n", highlight=False, markup=False)


@app.command("list")
def metabase_list(dashboards: DashboardsOpt = None) -> None:
    """The dashboards as JSON: name, title, description, owner, depends_on (marts), sources
    (what dbt exposures need)."""
    defs = _load_dashboards(dashboards)
    out.print_json(
        json.dumps(
            [
                d.model_dump(
                    include={"name", "title", "description", "owner", "depends_on", "sources"},
                    exclude_none=True,
                )
                for d in defs
            ]
        )
    )


@app.command("exposures")
def metabase_exposures(
    dashboards: DashboardsOpt = None,
    out_file: Annotated[
        str | None,
        typer.Option("--out", help="Write here (dbt_project/models/exposures.yml) instead of printing."),
    ] = None,
) -> None:
    """dbt exposures (type dashboard) for the dashboards: lineage from source to dashboard in dbt docs."""
    from lakehouse.metabase.exposures import exposures_yaml

    text = exposures_yaml(_load_dashboards(dashboards))
    if out_file:
        Path(out_file).write_text(text, encoding="utf-8")
        out.print(f"wrote {out_file}")
    else:
        print(text, end="")
