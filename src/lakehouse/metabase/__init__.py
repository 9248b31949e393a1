"""Dashboards as code for Metabase: the definitions in ``dashboards/`` (one YAML file per dashboard,
native-SQL cards written once in DuckDB SQL), rendered for the warehouse Metabase queries (DuckDB
locally, BigQuery in production, :mod:`lakehouse.metabase.sql`) and applied idempotently through
Metabase's API (:mod:`lakehouse.metabase.apply`, :mod:`lakehouse.metabase.client`)."""

from lakehouse.metabase.apply import DEFAULT_COLLECTION, Action, Plan, apply, dialect_of, find_database
from lakehouse.metabase.client import MetabaseClient, MetabaseError
from lakehouse.metabase.model import CardDef, DashboardDef, DefinitionError, load_dashboards
from lakehouse.metabase.sql import CardSQLError, Target, referenced_tables, render_sql

__all__ = [
    "DEFAULT_COLLECTION",
    "Action",
    "CardDef",
    "CardSQLError",
    "DashboardDef",
    "DefinitionError",
    "MetabaseClient",
    "MetabaseError",
    "Plan",
    "Target",
    "apply",
    "dialect_of",
    "find_database",
    "load_dashboards",
    "referenced_tables",
    "render_sql",
]
