"""HTTP guards: authenticate, check the scope, count the rate limit.

Every route declares one guard. The scope-matrix test walks the app's routes
and fails for a route without one, so no endpoint is left open by accident.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

from fastapi import Request, Response

from ..context import AppContext
from ..errors import ForbiddenError
from ..storage.aio import run_store
from .models import Identity, Scope
from .ratelimit import RULE_START_SESSION, RULE_WRITES


class Guard:
    def __init__(self, scope: Scope | None, rule: str | None = None) -> None:
        self.scope = scope
        self.rule = rule

    def __repr__(self) -> str:
        return f"Guard({self.scope!r}, {self.rule!r})"

    async def __call__(self, request: Request, response: Response) -> Identity | None:
        # Async, so a request does not pay a thread hop per dependency; the
        # token lookup reads a small local file, or goes to a thread on SQL.
        if self.scope is None:
            return None
        ctx: AppContext = request.app.state.ctx
        host = request.client.host if request.client else None
        # The security gate authenticates requests with a body before reading
        # it, and hands the identity over; the rest are authenticated here.
        identity = request.scope.get("state", {}).get("identity")
        if not isinstance(identity, Identity):
            identity = await self._authenticate(request, ctx, host)
        # Known from here on: a refusal below is logged with who was refused.
        request.state.actor = identity.name
        if not identity.allows(self.scope):
            raise ForbiddenError(
                f"this needs the '{self.scope}' scope; {identity.name!r} has "
                f"{', '.join(identity.scopes)}",
                body={"required_scope": self.scope},
            )
        if self.rule is not None:
            key = f"token:{identity.name}" if identity.via == "token" else f"addr:{host}"
            if self.rule == RULE_START_SESSION:
                # Checked now, counted only once a session has started: a
                # start refused (409, 503) must not use up the hour's starts.
                response.headers.update(ctx.rate_limiter.check(self.rule, key))
                request.state.count_start = functools.partial(
                    ctx.rate_limiter.record, self.rule, key
                )
            else:
                response.headers.update(ctx.rate_limiter.hit(self.rule, key))
        return identity

    @staticmethod
    async def _authenticate(request: Request, ctx: AppContext, host: str | None) -> Identity:
        authenticate = functools.partial(
            ctx.authenticator.authenticate,
            store=ctx.store,
            clock=ctx.clock,
            authorization=_first_header(request.scope["headers"], b"authorization"),
            client_host=host,
        )
        return await run_store(ctx.store, authenticate, request.scope)


def _first_header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> str | None:
    """What ``request.headers.get`` answers, without its cost when the header
    is absent (the usual case on loopback): it raises and catches a KeyError."""
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


PUBLIC = Guard(None)
VIEWER = Guard("viewer")
# GET /core/cone/decide is a read for scopes but writes an audited decision.
VIEWER_AUDITED = Guard("viewer", RULE_WRITES)
OPERATOR_WRITE = Guard("operator", RULE_WRITES)
OPERATOR_START = Guard("operator", RULE_START_SESSION)
OWNER = Guard("owner")
OWNER_WRITE = Guard("owner", RULE_WRITES)
