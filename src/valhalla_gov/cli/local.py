"""Local mode: the service's own FastAPI app, driven in this process.

A local command builds the app on the data dir (or the configured database)
and sends it real HTTP requests over an in-process transport, so it runs the
very routes, validation, error mapping and audit a server runs, under the
same store and locks. The operator at the data dir is the owner, as ``local``:
no token and no rate limit (those protect a server from its clients; whoever
can run this can already write the files).

Nothing here creates a data dir: only ``valhalla init`` and ``valhalla serve``
do, so a typo in ``--data-dir`` is an error, never a new empty world.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import anyio.from_thread
import httpx2 as httpx

from ..auth.ratelimit import RateLimiter
from ..auth.service import LOCAL_OWNER, Authenticator
from .service import CliError, Service

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from fastapi import FastAPI

    from ..auth.models import Identity
    from ..settings import Settings
    from ..storage.protocol import Store
    from ..timeutil import Clock

LOCAL_BASE = "http://localhost"  # a Host the security gate always answers


class LocalOwner(Authenticator):
    """Every request is the operator at the data dir: ``local``, owner."""

    def authenticate(
        self, *, store: Store, clock: Clock, authorization: str | None, client_host: str | None
    ) -> Identity:
        return LOCAL_OWNER


class NoLimits(RateLimiter):
    """No rate limit in process (and no Redis round trip per command)."""

    def __init__(self) -> None:
        self.rules = {}
        self.fail_open = True
        self.backend = "none"

    def _count(self, rule: str, key: str, *, consume: bool) -> dict[str, str]:
        return {}


class InProcessTransport(httpx.BaseTransport):
    """httpx's ASGI transport is async; a blocking portal (one event-loop
    thread for the life of the command) lets the synchronous CLI use it."""

    def __init__(self, app: FastAPI) -> None:
        # Errors the app does not handle come back as its 500 answer, as a
        # server would send them.
        self._inner = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        self._portal_cm: AbstractContextManager[anyio.from_thread.BlockingPortal] = (
            anyio.from_thread.start_blocking_portal()
        )
        self._portal = self._portal_cm.__enter__()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()

        async def send() -> tuple[int, list[tuple[bytes, bytes]], bytes]:
            inner = httpx.Request(
                request.method, request.url, headers=request.headers, content=body
            )
            resp = await self._inner.handle_async_request(inner)
            content = await resp.aread()
            return resp.status_code, resp.headers.raw, content

        call: Callable[[], Awaitable[tuple[int, list[tuple[bytes, bytes]], bytes]]] = send
        status, headers, content = self._portal.call(call)
        return httpx.Response(status, headers=headers, content=content, request=request)

    def close(self) -> None:
        self._portal_cm.__exit__(None, None, None)


def load_settings(data_dir: Path | None) -> Settings:
    from pydantic import ValidationError

    from ..settings import Settings

    try:
        return Settings() if data_dir is None else Settings(data_dir=data_dir)
    except ValidationError as exc:
        problems = "; ".join(
            f"VALHALLA_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
            for e in exc.errors()
        )
        raise CliError(f"error: bad setting: {problems}") from None


def missing_data_dir(path: Path, flag: bool) -> CliError:
    """The refusal for a data dir that is not there, with the ways out."""
    given = "--data-dir" if flag else "$VALHALLA_DATA_DIR (or ./data)"
    return CliError(
        f"error: no data dir at {path.resolve()} (from {given}). Pass the data dir your "
        f"server uses (--data-dir DIR, or --url to reach the server), or create it with "
        f"`valhalla init {path}`"
    )


def check_data_dir(settings: Settings, *, flag: bool) -> None:
    """Refuse a data dir that does not exist (a local command never creates one)."""
    if settings.database_url:
        return
    path = settings.data_dir
    if not path.exists():
        raise missing_data_dir(path, flag)
    if not path.is_dir():
        raise CliError(f"error: the data dir {path.resolve()} is not a directory")


def describe(settings: Settings) -> str:
    """The data dir or the database (password hidden), for messages."""
    if settings.database_url:
        from ..storage.sql_backend import redact

        return redact(settings.database_url)
    return str(settings.data_dir)


def local_app(settings: Settings) -> FastAPI:
    """The server's app on these settings, as the local owner."""
    from ..app import create_app
    from ..storage.errors import StorageError
    from ..textfiles import ConfigFileError

    try:
        app = create_app(settings, authenticator=LocalOwner(), rate_limiter=NoLimits())
    except (StorageError, ConfigFileError) as exc:
        raise CliError(f"error: {exc}") from None
    except Exception as exc:
        # The SQL backend: a schema out of date or a database that is down.
        from sqlalchemy.exc import SQLAlchemyError

        from ..storage.sql_backend import SchemaOutOfDateError

        if isinstance(exc, SchemaOutOfDateError | SQLAlchemyError):
            raise CliError(f"error: {describe(settings)}: {_first_line(exc)}") from None
        raise
    return app


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def local_service(data_dir: Path | None) -> Service:
    settings = load_settings(data_dir)
    check_data_dir(settings, flag=data_dir is not None)
    app = local_app(settings)
    client = httpx.Client(base_url=LOCAL_BASE, transport=InProcessTransport(app))
    return Service(client, where=describe(settings), local=True)
