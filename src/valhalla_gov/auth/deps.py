"""HTTP guards: authenticate, check the scope, count the rate limit.

Every route declares one guard. The scope-matrix test walks the app's routes
and fails for a route without one, so no endpoint is left open by accident.

A guard decides when the route is about to run (after the body has arrived),
from the request's credential alone: the security gate may have refused a
request without one before its body was read, but what it saw then is not
trusted now (the token may have been revoked meanwhile). Authentication,
the scope check and the rate-limit count are made in one worker-thread hop:
none of them blocks the event loop.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from fastapi import Request, Response
from starlette.concurrency import run_in_threadpool

from ..context import AppContext
from ..errors import DomainError, ForbiddenError
from .models import Identity, Scope
from .ratelimit import RULE_START_SESSION, RULE_WRITES, RateLimiter
from .service import Authenticator


@dataclass
class _Decision:
    identity: Identity
    refusal: DomainError | None = None
    headers: dict[str, str] = field(default_factory=dict)
    count_start: Callable[[], dict[str, str]] | None = None


class Guard:
    def __init__(self, scope: Scope | None, rule: str | None = None) -> None:
        self.scope = scope
        self.rule = rule

    def __repr__(self) -> str:
        return f"Guard({self.scope!r}, {self.rule!r})"

    async def __call__(self, request: Request, response: Response) -> Identity | None:
        if self.scope is None:
            return None
        ctx: AppContext = request.app.state.ctx
        authorization = first_header(request.scope["headers"], b"authorization")
        decision = await run_in_threadpool(self._decide, ctx, authorization)
        # Known from here on: a refusal below is logged with who was refused.
        request.state.actor = decision.identity.name
        if decision.refusal is not None:
            raise decision.refusal
        response.headers.update(decision.headers)
        if decision.count_start is not None:
            request.state.count_start = decision.count_start
        return decision.identity

    def _decide(self, ctx: AppContext, authorization: str | None) -> _Decision:
        """In a worker thread: who it is (401 raised), may it (403), and the
        rate limit (429 / 503), counted per identity."""
        assert self.scope is not None
        identity = ctx.get(Authenticator).authenticate(
            store=ctx.store, clock=ctx.clock, authorization=authorization
        )
        if not identity.allows(self.scope):
            refusal = ForbiddenError(
                f"this needs the '{self.scope}' scope; {identity.name!r} has "
                f"{', '.join(identity.scopes)}",
                body={"required_scope": self.scope},
            )
            return _Decision(identity, refusal)
        if self.rule is None:
            return _Decision(identity)
        key = f"token:{identity.name}"
        try:
            if self.rule == RULE_START_SESSION:
                # Checked now, counted only once a session has started: a
                # start refused (409, 503) must not use up the hour's starts.
                headers = ctx.get(RateLimiter).check(self.rule, key)
                count = functools.partial(ctx.get(RateLimiter).record, self.rule, key)
                return _Decision(identity, headers=headers, count_start=count)
            return _Decision(identity, headers=ctx.get(RateLimiter).hit(self.rule, key))
        except DomainError as exc:
            return _Decision(identity, exc)


def first_header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> str | None:
    """What ``request.headers.get`` answers, without its cost when the header
    is absent. The security gate refuses a request that repeats it."""
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
