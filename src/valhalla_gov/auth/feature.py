"""The auth feature: tokens, the owner credential, sign-in links and rate limits."""

from __future__ import annotations

from collections.abc import Sequence

from ..context import AppContext
from ..feature import Feature
from .ratelimit import RateLimiter
from .service import Authenticator
from .store import SCHEMA, load_tokens


def _build(ctx: AppContext) -> Sequence[object]:
    settings = ctx.settings
    limiter = RateLimiter(
        start_session=settings.rate_limit_start_session,
        writes=settings.rate_limit_writes,
        redis_url=settings.redis_url,
        shared_dir=settings.rate_limit_dir,
        fail_open=settings.rate_limit_fail_open,
    )
    return [Authenticator(), limiter]  # read as ctx.get(Authenticator), ctx.get(RateLimiter)


FEATURE = Feature(
    __name__,
    schema=SCHEMA,
    readiness=(lambda store: load_tokens(store=store),),
    build=_build,
)
