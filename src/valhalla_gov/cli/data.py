"""``valhalla data ...``: move everything between a JSON data dir and a database."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from .client import CliError, fail
from .db import UrlOption, database_url
from .helpstyle import App

if TYPE_CHECKING:
    from ..storage.protocol import Store
    from ..transfer import TransferReport

# Its help is in cli/__init__.py (GROUPS), shown without importing this module.
data_app = App(rich_markup_mode=None)


def _run(source: Store, target: Store) -> TransferReport:
    from ..errors import ConflictError
    from ..storage.errors import StorageError
    from ..transfer import copy_store

    try:
        report = copy_store(source, target)
    except ConflictError as exc:
        fail(CliError(f"refused: {exc.detail}"))
    except StorageError as exc:
        fail(CliError(f"storage error: {exc}; it is left as it was: repair it or move it aside"))
    except ValueError as exc:
        fail(CliError(f"the copy does not check out: {exc}"))
    typer.echo(f"copied {source.describe()} -> {target.describe()}")
    for log, count in report.records.items():
        typer.echo(f"  {log}: {count} records")
    typer.echo(f"  documents: {', '.join(report.documents) or 'none'}")
    if report.audit is not None:
        typer.echo(
            f"  audit chain: ok={report.audit.ok}, {report.audit.events} chained, "
            f"{report.audit.legacy_events} legacy"
        )
    return report


def _database(url: str | None) -> Store:
    from ..compose import open_sql
    from ..storage.sql_backend import SchemaOutOfDateError

    try:
        return open_sql(database_url(url))
    except SchemaOutOfDateError as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(1) from None


@data_app.command("import")
def data_import(
    source_dir: Annotated[
        Path, typer.Option("--from", metavar="DIR", help="JSON data dir to read.")
    ],
    url: UrlOption = None,
) -> None:
    """Copy a JSON data dir into the (empty) database, then check counts and the chain."""
    if not source_dir.is_dir():
        typer.secho(f"{source_dir} is not a directory", fg="red", err=True)
        raise typer.Exit(2)
    from ..compose import open_json

    _run(open_json(source_dir, create=False), _database(url))


@data_app.command("export")
def data_export(
    target_dir: Annotated[
        Path, typer.Option("--to", metavar="DIR", help="Empty or new directory to write.")
    ],
    url: UrlOption = None,
) -> None:
    """Copy the database into a JSON data dir, then check counts and the chain."""
    from ..compose import open_json

    _run(_database(url), open_json(target_dir))
