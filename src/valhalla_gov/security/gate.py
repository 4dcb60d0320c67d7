"""The security gate: a pure-ASGI middleware in front of the app.

In order, before any route runs and before a byte of the body is read:

0. a WebSocket is refused (the app has none), and a request repeating a
   header the checks below read (Host, Origin, Sec-Fetch-Site,
   Authorization) gets 400: the gate and the route must never read
   different copies;
1. the Host header must name this server (DNS rebinding gets 421);
2. a request a browser marks as coming from another site (``Sec-Fetch-Site``
   ``cross-site``/``same-site``, or a foreign ``Origin``) is refused with 403,
   unless its Origin is one of ``VALHALLA_CORS_ORIGINS``; a top-level
   navigation to a page stays allowed, so links to the page keep working;
3. a request that may carry a body must carry a valid credential (401
   without reading the body), except the sign-in exchange, whose body is
   the credential, and the page's hello, which proves the server. This is
   a limit before work, not the decision: the route's guard authenticates
   again when the route runs, after the body has arrived (the token may
   have been revoked meanwhile);
4. the body is capped (Content-Length checked up front, streamed bytes
   counted) and must arrive within a deadline (413 / 408).

The client's address plays no part: it grants nothing.

Responses gain ``nosniff``, ``Cache-Control: no-store`` where the route set no
caching rule, the page's CSP on every HTML response, and a ``Location`` never
carries a host.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..auth.service import Authenticator
from ..errors import UnauthorizedError, storage_unavailable
from ..storage.errors import StorageError
from ..storage.protocol import Store
from ..timeutil import Clock

# The page's policy: everything from this server, nothing inline, no frames.
PAGE_CSP = (
    "default-src 'self'; img-src 'self' data:; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
HTML_HEADERS = {
    "Content-Security-Policy": PAGE_CSP,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")
WILDCARD_BINDS = {"0.0.0.0", "::", ""}
BODYLESS_METHODS = {"GET", "HEAD", "OPTIONS"}
# Pages another site may link to (a top-level navigation only): they hold no
# data and act on nothing.
NAVIGABLE_PAGES = {"/", "/ui/index.html", "/docs"}
# POSTs that carry no bearer by design, not refused for carrying none: the
# sign-in exchange (its body is the credential) and the page's check of the
# server (it must not send its credential before the server proves itself).
# Their bodies are still capped and timed.
CREDENTIAL_IN_BODY = {"/core/auth/signin", "/core/auth/hello"}
# Read here and by the routes: a request must not carry two of any.
SINGLE_HEADERS = frozenset({b"host", b"origin", b"sec-fetch-site", b"authorization"})


def host_name(host_header: str) -> str | None:
    """``Host`` header → bare lower-case name (``[::1]:8000`` → ``::1``); None if malformed."""
    value = host_header.strip().lower()
    if not value:
        return None
    if value.startswith("["):
        name, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return None
        return name
    name, colon, port = value.partition(":")
    if colon and not port.isdigit():
        return None
    return name or None


def allowed_host_names(bind_host: str | None, extra: Iterable[str]) -> frozenset[str]:
    names = set(LOCAL_HOSTS)
    if bind_host and bind_host not in WILDCARD_BINDS:
        names.add(bind_host.strip("[]").lower())
    names.update(name.strip().strip("[]").lower() for name in extra if name.strip())
    return frozenset(names)


class SecurityGate:
    def __init__(
        self,
        app: ASGIApp,
        *,
        store: Store,
        authenticator: Authenticator,
        clock: Clock,
        allowed_hosts: frozenset[str],
        cors_origins: Iterable[str],
        max_body_bytes: int,
        body_timeout_seconds: float,
    ) -> None:
        self.app = app
        self.store = store
        self.authenticator = authenticator
        self.clock = clock
        self.allowed_hosts = allowed_hosts
        self.cors_origins = frozenset(o.rstrip("/").lower() for o in cors_origins)
        self.max_body_bytes = max_body_bytes
        self.body_timeout_seconds = body_timeout_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await _refuse_websocket(receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)  # lifespan
            return
        send = functools.partial(_harden, send)
        headers, repeated = _headers(scope)
        refusal = (
            Refusal(400, f"the request repeats the {repeated} header; send it once")
            if repeated is not None
            else await self._refusal(scope, headers)
        )
        if refusal is None and _may_have_body(scope["method"], headers):
            outcome = await self._read_body(headers, receive)
            if outcome is None:
                return  # the client went away
            if isinstance(outcome, Refusal):
                refusal = outcome
            else:
                receive = _replay(outcome, receive)
        if refusal is not None:
            await _refuse(send, refusal)
            return
        await self.app(scope, receive, send)

    async def _refusal(self, scope: Scope, headers: dict[str, str]) -> Refusal | None:
        """Host, origin and (for requests with a body) authentication."""
        host = headers.get("host", "")
        if host_name(host) not in self.allowed_hosts:
            return Refusal(
                421,
                f"this server does not answer to the Host {host[:100]!r}; if that is its "
                "name, add it to VALHALLA_ALLOWED_HOSTS",
            )
        cross_site = self._cross_site(scope, headers, host)
        if cross_site is not None:
            return Refusal(403, cross_site)
        if scope["method"] in BODYLESS_METHODS or scope["path"] in CREDENTIAL_IN_BODY:
            return None
        try:
            await self._authenticate(headers)
        except UnauthorizedError as exc:
            return Refusal(401, exc.detail, exc.headers)
        except StorageError as exc:
            body = storage_unavailable(exc)
            return Refusal(503, body.pop("detail"), extra=body)
        return None

    async def _read_body(self, headers: dict[str, str], receive: Receive) -> bytes | Refusal | None:
        """The whole body within the cap and the deadline; None if the client left."""
        length = headers.get("content-length")
        if length is not None:
            if not (length.isascii() and length.isdigit()):
                return Refusal(400, "the Content-Length header is not a number")
            if int(length) > self.max_body_bytes:
                return Refusal(413, self._too_large())
        try:
            # asyncio.timeout, not wait_for: no task made per request.
            async with asyncio.timeout(self.body_timeout_seconds):
                return await _read_capped(receive, self.max_body_bytes)
        except _BodyTooLarge:
            return Refusal(413, self._too_large())
        except TimeoutError:
            return Refusal(
                408, f"the request body did not arrive within {self.body_timeout_seconds:g}s"
            )
        except _ClientGone:
            return None

    def _too_large(self) -> str:
        return (
            f"the request body is larger than {self.max_body_bytes} bytes (VALHALLA_MAX_BODY_BYTES)"
        )

    def _cross_site(self, scope: Scope, headers: dict[str, str], host: str) -> str | None:
        """Why a browser request from another site is refused (None: allowed)."""
        origin = headers.get("origin")
        site = headers.get("sec-fetch-site")
        origin_ok = origin is not None and (
            _netloc(origin) == host.strip().lower()
            or origin.rstrip("/").lower() in self.cors_origins
        )
        if origin is not None and not origin_ok and not self._navigation(scope, headers):
            return (
                f"cross-origin request from {origin[:100]!r} refused; "
                "list trusted origins in VALHALLA_CORS_ORIGINS"
            )
        if site in ("cross-site", "same-site") and not origin_ok:
            if self._navigation(scope, headers):
                return None
            return (
                "request from another site refused: a page elsewhere cannot act here "
                "(trusted origins go in VALHALLA_CORS_ORIGINS)"
            )
        return None

    @staticmethod
    def _navigation(scope: Scope, headers: dict[str, str]) -> bool:
        return (
            scope["method"] in ("GET", "HEAD")
            and scope["path"] in NAVIGABLE_PAGES
            and headers.get("sec-fetch-mode") == "navigate"
            and headers.get("sec-fetch-dest") == "document"
        )

    async def _authenticate(self, headers: dict[str, str]) -> None:
        """Refuse (401) a request without a valid credential before reading
        its body. In a worker thread: the event loop never waits on the store."""
        await run_in_threadpool(
            functools.partial(
                self.authenticator.authenticate,
                store=self.store,
                clock=self.clock,
                authorization=headers.get("authorization"),
            )
        )


@dataclass(frozen=True)
class Refusal:
    status: int
    detail: str
    headers: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


class _BodyTooLarge(Exception):
    pass


class _ClientGone(Exception):
    pass


def _headers(scope: Scope) -> tuple[dict[str, str], str | None]:
    """The headers by name, and the name of a single-valued header sent more
    than once (None when none is)."""
    headers: dict[str, str] = {}
    repeated: str | None = None
    for raw_key, raw_value in scope["headers"]:
        key = raw_key.decode("latin-1")
        if key in headers and raw_key in SINGLE_HEADERS:
            repeated = repeated or key
        headers[key] = raw_value.decode("latin-1")
    return headers, repeated


def _netloc(origin: str) -> str | None:
    try:
        parts = urlsplit(origin.strip())
        return parts.netloc.lower() if parts.scheme in ("http", "https") else None
    except ValueError:
        return None


def _may_have_body(method: str, headers: dict[str, str]) -> bool:
    if "transfer-encoding" in headers:
        return True
    length = headers.get("content-length")
    if length is None:
        return method not in BODYLESS_METHODS
    return length != "0"


async def _read_capped(receive: Receive, cap: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > cap:
            raise _BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body already read, then the real channel (for disconnect notices)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _harden(send: Send, message: Message) -> None:
    if message["type"] == "http.response.start":
        headers = MutableHeaders(scope=message)
        headers.setdefault("X-Content-Type-Options", "nosniff")
        if "cache-control" not in headers:
            headers["Cache-Control"] = "no-store"
        if headers.get("content-type", "").startswith("text/html"):
            for name, value in HTML_HEADERS.items():
                headers.setdefault(name, value)
        location = headers.get("location")
        if location is not None:
            parts = urlsplit(location)
            if parts.netloc:  # never echo a Host back: keep the path only
                headers["Location"] = parts._replace(scheme="", netloc="").geturl() or "/"
    await send(message)


async def _refuse_websocket(receive: Receive, send: Send) -> None:
    """The app serves no WebSocket: close the handshake (the server answers 403)."""
    message = await receive()
    if message["type"] == "websocket.connect":
        await send({"type": "websocket.close", "code": 1008})


async def _refuse(send: Send, refusal: Refusal) -> None:
    body = json.dumps({"detail": refusal.detail, **refusal.extra}, ensure_ascii=True).encode()
    raw = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        # The unread body, if any, is not worth reading: close the connection.
        (b"connection", b"close"),
    ]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in refusal.headers.items()]
    await send({"type": "http.response.start", "status": refusal.status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
