"""The ``valhalla`` command line: one module per command group.

Importing this package loads only typer and ``serve``/``init``. A command
group's module is imported, and its commands built, only when that group is
run (:class:`LazyGroup`), and each command imports what it needs when it
runs, so ``--help`` and ``--version`` stay fast.
"""

from __future__ import annotations

import importlib
import os
from typing import Annotated

import typer
import typer.core
import typer.main
from typer._click import Context, HelpFormatter
from typer._click.core import Command

from .helpstyle import App, Group
from .serve import init, serve
from .terminal import guard_output

# name: (module, Typer attribute, help). The help lives here, not in the
# module, so that `valhalla --help` lists the groups without importing them.
GROUPS: dict[str, tuple[str, str, str]] = {
    "go": (
        "go",
        "go_app",
        "GO sessions and the playbook: on a data dir (the same store and locks as a running "
        "server) or on a server with --url.",
    ),
    "token": (
        "token",
        "token_app",
        "API tokens: create, list, revoke (on a data dir, or on a server with --url and an "
        "owner credential); `valhalla token link` prints a sign-in link for the GO page, "
        "`valhalla token rotate-owner` replaces the owner credential.",
    ),
    "cone": (
        "cone",
        "cone_app",
        "The cone: the current band (A expansion, B caution, C stabilize, D survival) and "
        "which engines may run, scale or optimize in it.",
    ),
    "audit": ("audit", "audit_app", "The audit log: every state change, in a SHA-256 hash chain."),
    "sessions": ("sessions", "sessions_app", "The history of ended GO sessions."),
    "db": ("db", "db_app", "SQL backend schema (VALHALLA_DATABASE_URL)."),
    "data": (
        "data",
        "data_app",
        "Back up the data while it serves, prune old records, move data between a JSON data "
        "dir and the configured database.",
    ),
    "webhook": (
        "webhook",
        "webhook_app",
        "Webhooks: signed POSTs of audited events (session start/end, band moves, health "
        "changes ...) to your chat or tooling, retried until delivered.",
    ),
}


def load_group(name: str) -> Command:
    """Import one command group and build its click group (with its help)."""
    # pydantic looks for plugins among every installed package's entry
    # points the first time it builds a model; no command uses one, and the
    # search costs a command a good part of its time. `serve` (not a group)
    # keeps them. A value set by the user wins.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "1")
    module, attr, help_text = GROUPS[name]
    sub: typer.Typer = getattr(importlib.import_module(f"{__name__}.{module}"), attr)
    group = typer.main.get_group(sub)
    group.name = name
    group.help = help_text
    return group


class LazyGroup(Group):
    """The root group: ``serve`` and ``init`` are built eagerly, the groups of
    :data:`GROUPS` when one is asked for. Building every command's options
    from its signature costs more than the whole of ``--version`` should."""

    def list_commands(self, ctx: Context) -> list[str]:
        return [*self.commands, *GROUPS]

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        if cmd_name not in self.commands and cmd_name in GROUPS:
            self.commands[cmd_name] = load_group(cmd_name)
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: Context, formatter: HelpFormatter) -> None:
        # As click lists them, with GROUPS' help for the groups not built.
        from typer._click.utils import make_default_short_help

        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = []
        for name in names:
            cmd = self.commands.get(name)
            if cmd is None:
                rows.append((name, make_default_short_help(GROUPS[name][2], limit)))
            elif not cmd.hidden:
                rows.append((name, cmd.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


app = App(
    cls=LazyGroup,
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


def main() -> None:
    import logging

    # No handler is configured outside `serve`: without this, Python's
    # last-resort handler would print the app's warnings raw, before the
    # command's own clean message. `serve` configures real handlers.
    logging.getLogger("valhalla_gov").addHandler(logging.NullHandler())
    app()
