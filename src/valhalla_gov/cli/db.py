"""``valhalla db ...``: the SQL backend's schema."""

from __future__ import annotations

from typing import Annotated

import typer

from .helpstyle import App

# Its help is in cli/__init__.py (GROUPS), shown without importing this module.
db_app = App(rich_markup_mode=None)

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--database-url", metavar="URL", help="Database URL (default: $VALHALLA_DATABASE_URL)."
    ),
]


def database_url(url: str | None) -> str:
    from .client import reported
    from .local import load_settings

    with reported():
        # A URL given as a flag is checked (and read) as the setting is.
        flags = {"--database-url": url} if url else None
        resolved = load_settings(None, flags=flags).database_url
    if not resolved:
        typer.secho(
            "no database configured: set VALHALLA_DATABASE_URL "
            "(postgresql://user@host/db or sqlite:///path) or pass --database-url",
            fg="red",
            err=True,
        )
        raise typer.Exit(2)
    return resolved


@db_app.command("upgrade")
def db_upgrade(url: UrlOption = None) -> None:
    """Create or migrate the schema to this version's (safe to repeat)."""
    from ..compose import upgrade_database
    from ..storage.sql_backend import redact

    target = database_url(url)
    before, after = upgrade_database(target)
    if before == after:
        typer.echo(f"{redact(target)}: schema already at revision {after}")
    else:
        typer.echo(f"{redact(target)}: schema upgraded from {before or 'empty'} to {after}")


@db_app.command("status")
def db_status(url: UrlOption = None) -> None:
    """Say whether the schema matches this version (exit 1 when it does not)."""
    from ..compose import open_sql
    from ..storage.sql_backend import redact

    target = database_url(url)
    store = open_sql(target, check_schema=False)
    try:
        problem = store.schema_problem()
    finally:
        store.close()
    if problem is not None:
        typer.secho(f"{redact(target)}: {problem}", fg="red", err=True)
        raise typer.Exit(1)
    typer.echo(f"{redact(target)}: schema up to date")
