"""The webhooks feature: signed deliveries of audited events, from the audit log."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from ..context import AppContext
from ..feature import Feature
from .store import SCHEMA, load_outbox, load_webhooks
from .worker import Dispatcher


@contextlib.asynccontextmanager
async def _sending(ctx: AppContext) -> AsyncIterator[None]:
    # Every worker runs the sender (unless turned off); a lease kept in the
    # store lets one of them send.
    if not ctx.settings.webhook_worker:
        yield
        return
    dispatcher = Dispatcher(store=ctx.store, settings=ctx.settings, clock=ctx.clock)
    dispatcher.start()
    try:
        yield
    finally:
        await dispatcher.close()


FEATURE = Feature(
    __name__, schema=SCHEMA, readiness=(load_webhooks, load_outbox), lifespan=_sending
)
