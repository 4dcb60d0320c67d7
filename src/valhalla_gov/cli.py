"""The ``valhalla`` command line."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Annotated

import typer

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


def main() -> None:
    app()
