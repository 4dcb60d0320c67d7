"""One pure-ASGI middleware: request id, latency, metrics, one JSON log line.

The log line carries the request id, route template, status, latency and the
actor (set by the auth guard); never a header, so never a token.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Sequence

from fastapi.routing import iter_route_contexts
from starlette.datastructures import MutableHeaders
from starlette.routing import BaseRoute, compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .metrics import LATENCY, REQUESTS

access_log = logging.getLogger("valhalla_gov.access")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


class RouteLabels:
    """Maps a request path to its route template (a bounded label set)."""

    def __init__(self, routes: Sequence[BaseRoute]) -> None:
        self._patterns: list[tuple[re.Pattern[str], str]] = []
        for context in iter_route_contexts(routes):
            path = context.path
            if path:
                self._patterns.append((compile_path(path)[0], path))

    def label(self, path: str) -> str:
        for pattern, template in self._patterns:
            if pattern.match(path):
                return template
        if path.startswith("/ui/"):
            return "/ui/{asset}"
        return "unmatched"


def _new_request_id() -> str:
    # The uuid4 hex format without its system call: an id only has to be
    # unique, not unguessable (random reseeds itself in a forked child).
    return f"{random.getrandbits(128):032x}"


class ObservabilityMiddleware:
    def __init__(self, app: ASGIApp, *, labels: RouteLabels) -> None:
        self.app = app
        self.labels = labels

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        incoming = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _REQUEST_ID.match(incoming) else _new_request_id()
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)["X-Request-ID"] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = self.labels.label(scope["path"])
            method = scope["method"]
            REQUESTS.labels(route=route, method=method, status=str(status)).inc()
            LATENCY.labels(route=route, method=method).observe(elapsed)
            client = scope.get("client")
            access_log.info(
                "%s %s %s",
                method,
                route,
                status,
                extra={
                    "request_id": request_id,
                    "method": method,
                    "route": route,
                    "path": scope["path"],
                    "status": status,
                    "latency_ms": round(elapsed * 1000, 3),
                    "actor": state.get("actor"),
                    "client": client[0] if client else None,
                },
            )
