"""The ``valhalla`` command line: one module per command group."""

from __future__ import annotations

import typer

from .audit import audit_app
from .cone import cone_app
from .data import data_app
from .db import db_app
from .go import go_app
from .insights import sessions_report
from .serve import serve
from .sessions import sessions_app
from .terminal import guard_output
from .token import token_app
from .webhook import webhook_app

app = typer.Typer(help="Valhalla GO: operator governance.", no_args_is_help=True)


@app.callback()
def _safe_output() -> None:
    """Valhalla GO: operator governance."""
    # Every command, every format: stored text never reaches the terminal as
    # a control sequence (see terminal.py).
    guard_output()


app.command()(serve)
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
    app()
