"""The ``valhalla`` command line: one module per command group.

Importing this package loads only typer and the command modules; each
command imports what it needs when it runs, so ``--help`` and ``--version``
stay fast.
"""

from __future__ import annotations

from typing import Annotated

import typer

from .audit import audit_app
from .cone import cone_app
from .data import data_app
from .db import db_app
from .go import go_app
from .insights import sessions_report
from .serve import init, serve
from .sessions import sessions_app
from .terminal import guard_output
from .token import token_app
from .webhook import webhook_app

app = typer.Typer(
    rich_markup_mode=None,
    help="Valhalla GO: operator governance. Commands work on a data dir (the same files and "
    "locks as a server on it) or on a server with --url.",
    no_args_is_help=True,
)


def _version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"valhalla {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    # Every command, every format: stored text never reaches the terminal as
    # a control sequence (see terminal.py).
    guard_output()


app.command()(serve)
app.command()(init)
app.add_typer(go_app, name="go")
app.add_typer(token_app, name="token")
app.add_typer(cone_app, name="cone")
app.add_typer(audit_app, name="audit")
sessions_app.command("report")(sessions_report)
app.add_typer(sessions_app, name="sessions")
app.add_typer(db_app, name="db")
app.add_typer(data_app, name="data")
app.add_typer(webhook_app, name="webhook")


def main() -> None:
    import logging

    # No handler is configured outside `serve`: without this, Python's
    # last-resort handler would print the app's warnings raw, before the
    # command's own clean message. `serve` configures real handlers.
    logging.getLogger("valhalla_gov").addHandler(logging.NullHandler())
    app()
