"""The events feature: every audited change as Server-Sent Events."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence

from ..context import AppContext
from ..feature import Feature
from .hub import EventHub, build_hub


def _build(ctx: AppContext) -> Sequence[object]:
    settings = ctx.settings
    return [
        build_hub(
            store=ctx.store,
            database_url=settings.database_url,
            poll_seconds=settings.events_poll_seconds,
            max_streams=settings.events_max_streams,
        )
    ]


@contextlib.asynccontextmanager
async def _serving(ctx: AppContext) -> AsyncIterator[None]:
    hub = ctx.get(EventHub)
    hub.chain_exit_signals()
    yield
    hub.stop()


FEATURE = Feature(__name__, build=_build, lifespan=_serving)
