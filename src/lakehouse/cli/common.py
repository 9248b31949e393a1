"""What every command group shares: the consoles, one-line errors, and the options whose defaults
come from the settings (``lakehouse.settings``; the help names each variable)."""

from __future__ import annotations

import sys
from enum import StrEnum
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from lakehouse.settings import get_settings

console = Console(stderr=True, soft_wrap=True)  # error lines stay whole in logs
# piped output (CI logs, `make demo`) gets a wide table instead of rich's 80-column default
out = Console(width=None if sys.stdout.isatty() else 160)


class OneLineErrors(TyperGroup):
    """Expected failures of any command (storage unreachable or missing, no credentials, a state
    path that is not a folder, an invalid setting, ...) end as one line and exit code 2, never a
    traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except Exception as exc:  # only the kinds below are expected; the rest keep their traceback
            message = expected_failure(exc)
            if message is None:
                raise
            console.print(f"[bold red]error[/]: {escape(message)}")
            raise typer.Exit(code=2) from None


def expected_failure(exc: BaseException) -> str | None:
    """One line for a failure the operator can fix (path, storage, credentials, a setting); None
    otherwise."""
    from botocore.exceptions import ClientError, NoCredentialsError

    from lakehouse.lake.retry import StorageUnavailableError
    from lakehouse.settings import SettingsError
    from lakehouse.state.table import StateError

    if isinstance(
        exc, StorageUnavailableError | StateError | NoCredentialsError | NotADirectoryError | SettingsError
    ):
        return " ".join(str(exc).split())
    if isinstance(exc, ClientError):  # a missing bucket, denied access: the request names the operation
        error = exc.response.get("Error", {})
        bucket = f" (bucket {error['BucketName']})" if error.get("BucketName") else ""
        return f"S3 {error.get('Code')}: {error.get('Message')}{bucket}"
    return None


class AvroCodec(StrEnum):
    null = "null"
    deflate = "deflate"
    snappy = "snappy"
    bzip2 = "bzip2"
    xz = "xz"
    zstandard = "zstandard"


AvroCodecOpt = Annotated[AvroCodec, typer.Option(help="avro.codec of Avro objects (--format avro).")]

# None: the setting (resolved when the command runs, so the help shows no machine-specific path)
LakeOpt = Annotated[
    str | None,
    typer.Option(
        "--lake",
        "-l",
        help="Lake root: a folder or s3://bucket/prefix (default: $LAKEHOUSE_LAKE, else $LAKEHOUSE_HOME/lake).",
    ),
]
StateOpt = Annotated[
    str | None,
    typer.Option(
        "--state",
        "-s",
        help="State root (current-state Delta tables): a folder or s3://bucket/prefix "
        "(default: $LAKEHOUSE_STATE, else $LAKEHOUSE_HOME/state).",
    ),
]
TablesConfigOpt = Annotated[
    str | None,
    typer.Option(help="Tables config YAML (default: $LAKEHOUSE_TABLES_CONFIG or config/tables.yaml)."),
]


def lake_or_default(lake: str | None) -> str:
    """``--lake``, else ``LAKEHOUSE_LAKE``, else ``<LAKEHOUSE_HOME>/lake``."""
    return lake or get_settings().lake


def state_or_default(state: str | None) -> str:
    """``--state``, else ``LAKEHOUSE_STATE``, else ``<LAKEHOUSE_HOME>/state``."""
    return state or get_settings().state
