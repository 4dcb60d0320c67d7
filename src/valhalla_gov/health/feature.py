"""The health feature: the red/yellow/green light, liveness and readiness."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence

from ..context import AppContext
from ..feature import Feature
from .publisher import HealthPublisher
from .store import SCHEMA, load_thresholds, read_mark


def _build(ctx: AppContext) -> Sequence[object]:
    return [HealthPublisher(store=ctx.store, clock=ctx.clock)]


@contextlib.asynccontextmanager
async def _publishing(ctx: AppContext) -> AsyncIterator[None]:
    task = asyncio.create_task(ctx.get(HealthPublisher).run(), name="valhalla-health")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


FEATURE = Feature(
    __name__,
    schema=SCHEMA,
    readiness=(lambda store: load_thresholds(store=store), read_mark),
    build=_build,
    lifespan=_publishing,
)
