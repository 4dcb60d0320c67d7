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

    from ..auth.ratelimit import RATE_LIMIT_DB, SharedFileStorage
    from ..auth.service import is_loopback, protected_mode
    from ..observability import logs
    from ..storage.errors import StorageError
    from ..storage.sql_backend import SchemaOutOfDateError
    from ..textfiles import ConfigFileError

    if data_dir is not None:
        # Workers are separate processes: they read settings from the environment.
        os.environ["VALHALLA_DATA_DIR"] = str(data_dir.resolve())
    # The app answers only to Host names it is configured for; the bound
    # address is one of them.
    os.environ["VALHALLA_BIND_HOST"] = host
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
    if not is_loopback(host) and not ctx.settings.allowed_hosts:
        typer.secho(
            f"note: only requests for localhost, 127.0.0.1, ::1"
            f"{'' if host in ('0.0.0.0', '::') else ' and ' + host} are answered (others "
            "get 421); list this machine's other names in VALHALLA_ALLOWED_HOSTS.",
            fg="yellow",
            err=True,
        )
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Workers add up their counters in files here; a fresh dir per run.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="valhalla-metrics-")
    if workers > 1 and ctx.settings.redis_url is None and ctx.settings.rate_limit_dir is None:
        # Without Redis the workers share their rate-limit counters in one SQLite
        # file, so the enforced limit is the configured one, not N times it.
        shared = tempfile.mkdtemp(prefix="valhalla-ratelimit-")
        SharedFileStorage(Path(shared) / RATE_LIMIT_DB)  # the schema, once, before the workers
        os.environ["VALHALLA_RATE_LIMIT_DIR"] = shared
    os.environ["VALHALLA_LOG_LEVEL"] = log_level
    os.environ["VALHALLA_HEADER_TIMEOUT_SECONDS"] = str(ctx.settings.header_timeout_seconds)
    from ..security.server import KEEP_ALIVE_SECONDS, MAX_HEADER_BYTES, BoundedH11Protocol

    logs.configure(log_level)
    trusted = ctx.settings.trusted_proxies
    uvicorn.run(
        "valhalla_gov.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        log_config=None,
        access_log=False,
        # Limits before work: bounded headers, slow headers cut off, idle
        # connections closed, at most this many connections per worker.
        http=BoundedH11Protocol,
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        limit_concurrency=ctx.settings.max_connections,
        # X-Forwarded-* only from the proxies the operator lists (uvicorn
        # would otherwise believe any client on 127.0.0.1).
        proxy_headers=bool(trusted),
        forwarded_allow_ips=",".join(trusted) if trusted else "",
        # uvicorn kills a worker that has not answered its supervisor in this
        # time; importing the app on a busy machine can take longer than the
        # 5 s default, and the killed workers would be restarted in a loop.
        timeout_worker_healthcheck=60,
    )
