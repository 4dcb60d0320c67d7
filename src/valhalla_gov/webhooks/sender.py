"""One HTTP POST to a receiver: bounded in every direction, and never raising.

Only http and https; connect and read timeouts plus an overall deadline;
at most ``max_bytes`` of the answer are read; redirects are not followed
(a 3xx is a failed attempt, so a receiver cannot bounce a signed event
somewhere else). Whatever goes wrong (a URL the client cannot use, a refused
connection, an error of the client itself) is an :class:`Attempt` that
failed, with what went wrong in words: one webhook's trouble is its own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .urls import UnusableUrlError, check_url, redact_url

MAX_ERROR = 300
# httpx logs every request's full URL at INFO; a chat webhook's URL is its
# credential, so only warnings and errors from it reach the logs.
logging.getLogger("httpx2").setLevel(logging.WARNING)
log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from ..settings import Settings


@dataclass(frozen=True, slots=True)
class Attempt:
    ok: bool
    status: int | None
    error: str | None
    duration_ms: float


class Sender:
    """A pooled async client shared by every delivery of one process."""

    def __init__(self, *, connect: float, read: float, max_bytes: int) -> None:
        import httpx2 as httpx  # imported when the first sender is made: workers start faster

        self.deadline = connect + read
        self.max_bytes = max_bytes
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(connect=connect, read=read, write=read, pool=connect),
            follow_redirects=False,
            trust_env=False,  # no proxy or .netrc from the environment: where it says
            limits=httpx.Limits(max_connections=20, max_keepalive_connections=10),
        )

    @classmethod
    def for_settings(cls, settings: Settings) -> Sender:
        return cls(
            connect=settings.webhook_connect_timeout,
            read=settings.webhook_read_timeout,
            max_bytes=settings.webhook_max_response_bytes,
        )

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> Attempt:
        import httpx2 as httpx

        started = time.monotonic()
        try:
            # Checked again here: webhooks.json may have been edited by hand.
            check_url(url)
        except UnusableUrlError as exc:
            return self._failed(
                started, f"{exc}; remove the webhook and add it again with a usable URL", url
            )
        try:
            async with asyncio.timeout(self.deadline):
                status = await self._post(url, body, headers)
        except TimeoutError:
            return self._failed(started, f"no answer within {self.deadline:g} s", url)
        except httpx.HTTPError as exc:
            return self._failed(started, f"{type(exc).__name__}: {exc}", url)
        except Exception as exc:
            log.debug("webhooks: sending to %s raised", redact_url(url), exc_info=True)
            return self._failed(started, f"the request could not be sent ({_named(exc)})", url)
        ms = (time.monotonic() - started) * 1000
        if 200 <= status < 300:
            return Attempt(True, status, None, ms)
        reason = "redirect not followed" if 300 <= status < 400 else "not a 2xx answer"
        return Attempt(False, status, f"HTTP {status} ({reason})", ms)

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        async with self._client.stream("POST", url, content=body, headers=headers) as resp:
            seen = 0
            async for chunk in resp.aiter_raw():
                seen += len(chunk)
                if seen >= self.max_bytes:
                    break  # the rest is not read; the connection is dropped
            return resp.status_code

    def _failed(self, started: float, error: str, url: str) -> Attempt:
        return failed(error, url, (time.monotonic() - started) * 1000)

    async def aclose(self) -> None:
        await self._client.aclose()


def failed(error: str, url: str, duration_ms: float = 0.0) -> Attempt:
    """A failed attempt (no answer came), its error cut short and with the
    URL redacted: error texts may quote it, and it can hold a credential."""
    clean = error.replace(url, redact_url(url))[:MAX_ERROR]
    return Attempt(False, None, clean, duration_ms)


def _named(exc: Exception) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
