"""The ``valhalla`` command line."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Annotated

import typer

from .context import LOCAL_ACTOR, AppContext
from .go.session_models import GoSession

app = typer.Typer(help="Valhalla GO: operator governance.", no_args_is_help=True)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.", min=0, max=65535)] = 8000,
    data_dir: Annotated[
        Path | None, typer.Option(help="Data dir (default: $VALHALLA_DATA_DIR or ./data).")
    ] = None,
    workers: Annotated[int, typer.Option(help="Worker processes.", min=1, max=64)] = 1,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve the HTTP API (docs at /docs)."""
    import uvicorn

    if data_dir is not None:
        # Workers are separate processes: they read settings from the environment.
        os.environ["VALHALLA_DATA_DIR"] = str(data_dir.resolve())
    if not _is_loopback(host):
        typer.secho(
            f"warning: binding to {host}, reachable beyond this machine", fg="yellow", err=True
        )
    uvicorn.run(
        "valhalla_gov.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
    )


go_app = typer.Typer(help="GO sessions, on the same data dir and locks as a running server.")
app.add_typer(go_app, name="go")


def _local_context(data_dir: Path | None) -> AppContext:
    from .context import build_context
    from .settings import Settings

    settings = Settings() if data_dir is None else Settings(data_dir=data_dir)
    return build_context(settings)


DataDirOption = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Data dir (default: $VALHALLA_DATA_DIR or ./data)."),
]


def _print_session(session: GoSession, as_json: bool) -> None:
    if as_json:
        typer.echo(session.model_dump_json(indent=2))
        return
    if session.active:
        typer.echo(f"active session {session.id} since {session.started_at_utc}")
    elif session.ended_at_utc:
        typer.echo(
            f"no active session; last {session.id} ended {session.ended_at_utc}"
            f" after {session.duration_seconds:.0f}s"
        )
    else:
        typer.echo("no session has been started yet")
    if session.notes:
        typer.echo(f"notes: {session.notes}")


@go_app.command("status")
def go_status(
    data_dir: DataDirOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show the current session."""
    from .go.session_service import get_session

    ctx = _local_context(data_dir)
    _print_session(get_session(store=ctx.store), as_json)


@go_app.command("start")
def go_start(
    notes: Annotated[str | None, typer.Option(help="What this session is for.")] = None,
    data_dir: DataDirOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Start a session (exit 1 while one is already active)."""
    from .errors import ConflictError
    from .go.session_service import start_session

    ctx = _local_context(data_dir)
    try:
        session = start_session(
            store=ctx.store, clock=ctx.clock, actor=LOCAL_ACTOR, notes=notes, watcher=ctx.watcher
        )
    except ConflictError as exc:
        typer.secho(f"refused: {exc.detail} (`valhalla go end` ends it)", fg="red", err=True)
        raise typer.Exit(1) from None
    _print_session(session, as_json)


@go_app.command("end")
def go_end(
    notes: Annotated[str | None, typer.Option(help="How it went.")] = None,
    data_dir: DataDirOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """End the active session."""
    from .go.session_service import end_session

    ctx = _local_context(data_dir)
    session = end_session(
        store=ctx.store, clock=ctx.clock, actor=LOCAL_ACTOR, notes=notes, watcher=ctx.watcher
    )
    _print_session(session, as_json)


def main() -> None:
    app()
