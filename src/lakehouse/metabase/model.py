"""Dashboard definition files: one YAML file per dashboard in ``dashboards/``.

A file holds what a dbt exposure needs (``name``, ``description``, ``owner``, ``depends_on`` marts
and ``sources``) and what Metabase needs (``title``, cards with their SQL, visualization settings
and place on the 24-column dashboard grid). :func:`load_dashboards` reads and validates them; the
cross-checks against the SQL itself (declared ``depends_on`` equals the marts the cards read, and so
on) are in :func:`check_dashboards` so that a file cannot drift from its queries.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lakehouse.metabase.sql import CardSQLError, Target, referenced_tables, render_sql

GRID_COLUMNS = 24  # Metabase's dashboard grid
DISPLAYS = {
    "table",
    "line",
    "bar",
    "area",
    "combo",
    "row",
    "pie",
    "scalar",
    "smartscalar",
    "progress",
    "gauge",
    "scatter",
    "waterfall",
    "funnel",
}
# visualization settings that name result columns (checked against the card's columns)
_COLUMN_LIST_SETTINGS = ("graph.dimensions", "graph.metrics")
_COLUMN_SETTINGS = ("pie.dimension", "pie.metric", "scalar.field", "table.pivot_column", "table.cell_column")


class DefinitionError(ValueError):
    """A dashboard file is invalid."""


class Layout(BaseModel):
    model_config = ConfigDict(extra="forbid")
    row: int = Field(ge=0)
    col: int = Field(ge=0, lt=GRID_COLUMNS)
    size_x: int = Field(ge=1, le=GRID_COLUMNS)
    size_y: int = Field(ge=1)

    @model_validator(mode="after")
    def _fits(self) -> Layout:
        if self.col + self.size_x > GRID_COLUMNS:
            raise ValueError(f"col {self.col} + size_x {self.size_x} exceeds the {GRID_COLUMNS}-column grid")
        return self

    def cells(self) -> set[tuple[int, int]]:
        return {
            (r, c)
            for r in range(self.row, self.row + self.size_y)
            for c in range(self.col, self.col + self.size_x)
        }


class CardDef(BaseModel):
    """A native-SQL question (Metabase card)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    name: str = Field(min_length=1)
    description: str = Field(min_length=1)
    display: str
    sql: str = Field(min_length=1)
    columns: list[str] = Field(min_length=1)  # the result's columns, in order (tested on DuckDB)
    visualization_settings: dict[str, Any] = Field(default_factory=dict)
    layout: Layout

    @field_validator("display")
    @classmethod
    def _display(cls, v: str) -> str:
        if v not in DISPLAYS:
            raise ValueError(f"display {v!r}: expected one of {', '.join(sorted(DISPLAYS))}")
        return v

    @field_validator("sql")
    @classmethod
    def _sql(cls, v: str) -> str:
        if "{{" in v or "[[" in v:
            raise ValueError("Metabase template tags ({{...}}, [[...]]) are not supported in card SQL")
        return v.strip().rstrip(";").strip()

    @model_validator(mode="after")
    def _settings_name_columns(self) -> CardDef:
        named = []
        for key in _COLUMN_LIST_SETTINGS:
            named += list(self.visualization_settings.get(key, []))
        named += [
            self.visualization_settings[k] for k in _COLUMN_SETTINGS if k in self.visualization_settings
        ]
        unknown = [c for c in named if c not in self.columns]
        if unknown:
            raise ValueError(f"visualization_settings name column(s) {unknown} not in columns {self.columns}")
        return self

    def render(self, target: Target) -> str:
        return render_sql(self.sql, target)


class Owner(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    email: str | None = None


class DashboardDef(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    name: str  # snake_case: the dbt exposure name
    title: str = Field(min_length=1)  # the Metabase dashboard name
    description: str = Field(min_length=1)
    owner: Owner
    depends_on: list[str] = Field(min_length=1)  # marts (dbt models) the cards read
    sources: list[str] = Field(default_factory=list)  # dbt sources (<schema>.<table>) the cards read
    cards: list[CardDef] = Field(min_length=1)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", v):
            raise ValueError(f"name {v!r}: snake_case (it is the dbt exposure name)")
        return v

    @model_validator(mode="after")
    def _layout(self) -> DashboardDef:
        names = [c.name for c in self.cards]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"card names repeat: {dup}")
        taken: dict[tuple[int, int], str] = {}
        for card in self.cards:
            for cell in card.layout.cells():
                if cell in taken:
                    raise ValueError(f"cards {taken[cell]!r} and {card.name!r} overlap at row/col {cell}")
                taken[cell] = card.name
        return self


def load_dashboard(path: Path) -> DashboardDef:
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        return DashboardDef.model_validate(raw)
    except (yaml.YAMLError, ValidationError) as exc:
        raise DefinitionError(f"{path}: {exc}") from None


def load_dashboards(folder: Path) -> list[DashboardDef]:
    """Every ``*.yml`` dashboard file of ``folder``, sorted by file name, checked."""
    files = sorted(Path(folder).glob("*.yml"))
    if not files:
        raise DefinitionError(f"{folder}: no dashboard files (*.yml)")
    dashboards = [load_dashboard(f) for f in files]
    problems = check_dashboards(dashboards)
    if problems:
        raise DefinitionError("; ".join(problems))
    return dashboards


def tables_read(dashboard: DashboardDef) -> set[tuple[str, str]]:
    tables: set[tuple[str, str]] = set()
    for card in dashboard.cards:
        tables |= referenced_tables(card.sql)
    return tables


def check_dashboards(dashboards: list[DashboardDef]) -> list[str]:
    """Cross-file checks: unique names and titles, card names unique across dashboards (cards are
    looked up by name in one collection), SQL valid for both dialects, and ``depends_on`` /
    ``sources`` equal to what the SQL reads."""
    problems = []
    for attr in ("name", "title"):
        values = [getattr(d, attr) for d in dashboards]
        problems += [f"dashboard {attr} {v!r} repeats" for v in sorted(set(values)) if values.count(v) > 1]
    cards = [c.name for d in dashboards for c in d.cards]
    problems += [
        f"card name {n!r} is used twice (names identify cards in Metabase)"
        for n in sorted(set(cards))
        if cards.count(n) > 1
    ]
    for d in dashboards:
        try:
            tables = tables_read(d)
            for card in d.cards:
                for target in (Target.duckdb(), Target.bigquery()):
                    card.render(target)
        except CardSQLError as exc:
            problems.append(f"{d.name}: {exc}")
            continue
        marts = sorted(t for s, t in tables if s == "marts")
        sources = sorted(f"{s}.{t}" for s, t in tables if s in ("auth", "scan"))
        if sorted(d.depends_on) != marts:
            problems.append(f"{d.name}: depends_on {sorted(d.depends_on)} but the cards read marts {marts}")
        if sorted(d.sources) != sources:
            problems.append(f"{d.name}: sources {sorted(d.sources)} but the cards read {sources}")
    return problems
