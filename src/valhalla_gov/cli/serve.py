"""``valhalla serve``."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from .common import local_context


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

    from ..auth.service import is_loopback, protected_mode
    from ..observability import logs
    from ..storage.errors import StorageError
    from ..storage.sql_backend import SchemaOutOfDateError
    from ..textfiles import ConfigFileError

    if data_dir is not None:
        # Workers are separate processes: they read settings from the environment.
        os.environ["VALHALLA_DATA_DIR"] = str(data_dir.resolve())
    # Open everything once here, so a bad setting is one clear message instead
    # of a traceback from every worker.
    try:
        ctx = local_context(data_dir)
    except (SchemaOutOfDateError, ConfigFileError, StorageError) as exc:
        typer.secho(f"cannot start: {exc}", fg="red", err=True)
        raise typer.Exit(1) from None
    if not is_loopback(host) and protected_mode(store=ctx.store):
        typer.secho(
            f"warning: binding to {host} with no API token: only loopback clients are "
            "served, every other client gets 401. Create one with "
            "`valhalla token create --name NAME --scopes owner`.",
            fg="yellow",
            err=True,
        )
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Workers add up their counters in files here; a fresh dir per run.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="valhalla-metrics-")
    os.environ["VALHALLA_LOG_LEVEL"] = log_level
    logs.configure(log_level)
    uvicorn.run(
        "valhalla_gov.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        log_config=None,
        access_log=False,
    )
