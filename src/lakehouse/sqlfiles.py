"""SQL statements live as files under ``sql/``; this reads them and fills in quoted identifiers.

Only identifiers (quoted here) are substituted; values always go in as bound parameters."""

from __future__ import annotations

from functools import cache
from pathlib import Path

SQL_ROOT = Path(__file__).resolve().parents[2] / "sql"


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


@cache
def _text(name: str) -> str:
    return (SQL_ROOT / name).read_text(encoding="utf-8")


def sql(name: str, **identifiers: str) -> str:
    """The statement(s) in ``sql/<name>`` with ``{placeholders}`` replaced by SQL fragments built
    from identifiers (callers pass already-quoted fragments)."""
    return _text(name).format(**identifiers)


def template(name: str) -> str:
    """The text of ``sql/<name>`` as written (for files of pieces the caller fills in itself)."""
    return _text(name)
