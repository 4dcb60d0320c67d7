"""The server's own app in this process, for the few local requests
:mod:`.direct` does not answer (see :mod:`.local`): built on the settings,
driven over an in-process transport, as the local owner without rate limits.

Imports FastAPI and the whole app: only a command that needs the app loads
this module.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import anyio.from_thread
import httpx2 as httpx

from ..auth.ratelimit import RateLimiter
from ..auth.service import LOCAL_OWNER, Authenticator
from .service import CliError

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from fastapi import FastAPI

    from ..auth.models import Identity
    from ..settings import Settings
    from ..storage.protocol import Store
    from ..timeutil import Clock

LOCAL_BASE = "http://localhost"  # a Host the security gate always answers


class LocalOwner(Authenticator):
    """Every request is the operator at the data dir: ``local``, owner.
    This app has no network client: only this process, which can read and
    write the data's files (or the database) already, sends it requests."""

    def authenticate(self, *, store: Store, clock: Clock, authorization: str | None) -> Identity:
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

        from ..storage.sql_backend import SchemaOutOfDateError, redact

        if isinstance(exc, SchemaOutOfDateError | SQLAlchemyError):
            where = redact(settings.database_url or "")
            raise CliError(f"error: {where}: {_first_line(exc)}") from None
        raise
    return app


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def app_client(settings: Settings) -> httpx.Client:
    """An HTTP client on the app built on ``settings``."""
    return httpx.Client(base_url=LOCAL_BASE, transport=InProcessTransport(local_app(settings)))
