"""``/core/webhooks``: list, add, remove, test-send. Owner scope throughout:
the list shows receiver URLs, which for chat webhooks are credentials."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path
from starlette.concurrency import run_in_threadpool

from ..auth.deps import OWNER, OWNER_WRITE
from ..auth.models import Identity
from ..context import AppContext, get_ctx
from . import service
from .keys import load_key
from .models import (
    TestResult,
    WebhookCreate,
    WebhookCreated,
    WebhookInfo,
    WebhookName,
    WebhookRemoved,
)
from .sender import Sender

router = APIRouter(prefix="/webhooks", tags=["webhooks"])
Ctx = Annotated[AppContext, Depends(get_ctx)]
Owner = Annotated[Identity, Depends(OWNER_WRITE)]
Name = Annotated[WebhookName, Path(description="The webhook's name.")]


@router.get("", response_model=list[WebhookInfo], dependencies=[Depends(OWNER)])
def list_webhooks(ctx: Ctx) -> list[WebhookInfo]:
    """Every webhook with its delivery state; never a secret."""
    return service.list_webhooks(store=ctx.store)


@router.post(
    "",
    status_code=201,
    response_model=WebhookCreated,
    responses={
        409: {"description": "The name is taken, or the webhook limit is reached."},
        503: {"description": "Storage, or the webhook key file, is unusable."},
    },
)
def add_webhook(body: WebhookCreate, ctx: Ctx, who: Owner) -> WebhookCreated:
    """Register a webhook (audited WEBHOOK_ADD). The answer carries its
    signing secret, which is never shown again."""
    key = load_key(ctx.settings, create=True)
    assert key is not None  # create=True makes one
    info, secret = service.add_webhook(
        store=ctx.store, key=key, spec=body, actor=who.name, clock=ctx.clock
    )
    return WebhookCreated(webhook=info, secret=secret)


@router.delete(
    "/{name}",
    response_model=WebhookRemoved,
    responses={404: {"description": "No webhook of that name."}},
)
def remove_webhook(name: Name, ctx: Ctx, who: Owner) -> WebhookRemoved:
    """Remove a webhook (audited WEBHOOK_REMOVE); its undelivered events are dropped."""
    service.remove_webhook(store=ctx.store, name=name, actor=who.name, clock=ctx.clock)
    return WebhookRemoved(removed=name)


@router.post(
    "/{name}/test",
    response_model=TestResult,
    responses={
        404: {"description": "No webhook of that name."},
        503: {
            "description": "This process's webhook key is not the one the webhook was made with."
        },
    },
)
async def test_webhook(name: Name, ctx: Ctx, who: Owner) -> TestResult:
    """Send a WEBHOOK_TEST event now and report the receiver's answer
    (``ok`` false with its status or error when it did not take it, or when
    the stored URL cannot be used)."""
    hook = await run_in_threadpool(service.get_webhook, store=ctx.store, name=name)
    key = await run_in_threadpool(load_key, ctx.settings, create=False)
    sender = Sender(ctx.settings, ctx.clock)
    try:
        return await service.send_test(
            hook=hook, key=key, sender=sender, actor=who.name, clock=ctx.clock
        )
    finally:
        await sender.aclose()
