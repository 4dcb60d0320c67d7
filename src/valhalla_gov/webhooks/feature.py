"""The webhooks feature: signed deliveries of audited events, from the audit log."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from ..context import AppContext
from ..feature import Feature
from .store import SCHEMA, load_outbox, load_webhooks
from .worker import start_dispatcher


@contextlib.asynccontextmanager
async def _sending(ctx: AppContext) -> AsyncIterator[None]:
    # Every worker runs the sender; a lease kept in the store lets one send.
    dispatcher = start_dispatcher(store=ctx.store, settings=ctx.settings, clock=ctx.clock)
    try:
        yield
    finally:
        if dispatcher is not None:
            await dispatcher.close()


FEATURE = Feature(
    __name__, schema=SCHEMA, readiness=(load_webhooks, load_outbox), lifespan=_sending
)
