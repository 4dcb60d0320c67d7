"""One HTTP POST to a receiver: bounded in every direction.

Only http and https; connect and read timeouts plus an overall deadline;
at most ``max_bytes`` of the answer are read; redirects are not followed
(a 3xx is a failed attempt, so a receiver cannot bounce a signed event
somewhere else).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:  # imported when the first sender is made: workers start faster
    pass

MAX_ERROR = 300
# httpx logs every request's full URL at INFO; a chat webhook's URL is its
# credential, so only warnings and errors from it reach the logs.
logging.getLogger("httpx2").setLevel(logging.WARNING)


@dataclass(frozen=True, slots=True)
class Attempt:
    ok: bool
    status: int | None
    error: str | None
    duration_ms: float


def redact_url(url: str) -> str:
    """Scheme, host and port only: chat webhook URLs carry their credential
    in the path, so the audit log and the logs never show more."""
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparsable url>"
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    more = "/…" if parts.path not in ("", "/") or parts.query else ""
    return f"{parts.scheme}://{host}{port}{more}"


class Sender:
    """A pooled async client shared by every delivery of one process."""

    def __init__(self, *, connect: float, read: float, max_bytes: int) -> None:
        import httpx2 as httpx

        self.deadline = connect + read
        self.max_bytes = max_bytes
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(connect=connect, read=read, write=read, pool=connect),
            follow_redirects=False,
            trust_env=False,  # no proxy or .netrc from the environment: where it says
            limits=httpx.Limits(max_connections=20, max_keepalive_connections=10),
        )

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> Attempt:
        import httpx2 as httpx

        started = time.monotonic()
        try:
            async with asyncio.timeout(self.deadline):
                status = await self._post(url, body, headers)
        except TimeoutError:
            return self._failed(started, None, f"no answer within {self.deadline:g} s", url)
        except httpx.HTTPError as exc:
            return self._failed(started, None, f"{type(exc).__name__}: {exc}", url)
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

    def _failed(self, started: float, status: int | None, error: str, url: str) -> Attempt:
        # Error texts may quote the URL, which can hold a credential.
        clean = error.replace(url, redact_url(url))[:MAX_ERROR]
        return Attempt(False, status, clean, (time.monotonic() - started) * 1000)

    async def aclose(self) -> None:
        await self._client.aclose()
