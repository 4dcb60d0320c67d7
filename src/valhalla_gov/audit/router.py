"""Audit endpoints."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from ..auth.deps import VIEWER
from ..context import AppContext, get_ctx
from ..timeutil import UtcDateTime, as_utc
from . import service
from .models import AuditPage, AuditVerifyResult

router = APIRouter(prefix="/audit", tags=["audit"])
Ctx = Annotated[AppContext, Depends(get_ctx)]


@router.get("/events", response_model=AuditPage, dependencies=[Depends(VIEWER)])
def list_events(
    ctx: Ctx,
    event: Annotated[str | None, Query(max_length=200)] = None,
    since: UtcDateTime | None = None,
    until: UtcDateTime | None = None,
    limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE)] = 100,
    cursor: Annotated[str | None, Query(max_length=40)] = None,
) -> AuditPage:
    """Audit events, newest first; pass `next_cursor` back as `cursor` for older ones."""
    return service.query_events(
        store=ctx.store,
        event=event,
        since=as_utc(since),
        until=as_utc(until),
        limit=limit,
        cursor=cursor,
    )


@router.get("/verify", response_model=AuditVerifyResult, dependencies=[Depends(VIEWER)])
def verify(ctx: Ctx) -> AuditVerifyResult:
    """Walk the whole hash chain and report the first broken link."""
    return service.verify_chain(store=ctx.store)
