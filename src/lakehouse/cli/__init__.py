"""``lakehouse``: the command line of cdc-lakehouse (entry point ``lakehouse.cli:app``).

One module per command group; this one assembles them in the order ``--help`` lists them:

* :mod:`~lakehouse.cli.lake`: generate, inspect, discover (the raw lake)
* :mod:`~lakehouse.cli.state`: compact, erase, export, maintain (the current-state tables)
* :mod:`~lakehouse.cli.warehouse`: load
* :mod:`~lakehouse.cli.capture`: capture (PostgreSQL -> lake)
* :mod:`~lakehouse.cli.pg`, :mod:`~lakehouse.cli.metabase`: the ``pg`` and ``metabase`` groups

Options that have a setting (``--lake``, ``--state``, ``--warehouse``, ``--tables-config``,
``--engine``, ...) default to it (``lakehouse.settings``); their help names the variable.
"""

from __future__ import annotations

import typer

from lakehouse.cli import capture, lake, metabase, pg, state, warehouse
from lakehouse.cli.common import OneLineErrors, expected_failure

__all__ = ["app", "expected_failure", "main"]

app = typer.Typer(
    cls=OneLineErrors,
    name="lakehouse",
    help="CDC lakehouse for Eco2: read the Debezium/S3-sink lake, build current-state tables, "
    "load the warehouse, build marts.\n\nA LAKE is a local folder or s3://bucket/prefix "
    "(S3-compatible endpoints via AWS_ENDPOINT_URL).",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_show_locals=False,
    add_completion=False,
)

for command in (
    lake.generate,
    lake.inspect,
    state.compact,
    lake.discover,
    state.erase,
    state.export,
    warehouse.load,
    state.maintain,
    capture.capture,
):
    app.command()(command)
app.add_typer(pg.app, name="pg")
app.add_typer(metabase.app, name="metabase")


def main() -> None:  # pragma: no cover - console entry point
    app()
