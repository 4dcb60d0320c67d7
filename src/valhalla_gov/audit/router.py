"""Audit endpoints."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from ..auth.deps import VIEWER
from ..context import AppContext, get_ctx
from ..timeutil import UtcDateTime, as_utc
from . import service
from .models import AuditHead, AuditPage, AuditVerifyResult

router = APIRouter(prefix="/audit", tags=["audit"])
# The app names its events in upper snake case (GO_SESSION_START): a name in
# that shape is matched in any case; anything else exactly as given.
EVENT_STYLE = re.compile(r"[A-Za-z]+(?:_[A-Za-z]+)+")


def _event_name(event: str | None) -> str | None:
    if event is None:
        return None
    name = event.strip()
    return name.upper() if EVENT_STYLE.fullmatch(name) else event


Ctx = Annotated[AppContext, Depends(get_ctx)]


@router.get(
    "/events",
    response_model=AuditPage,
    summary="Audit events, newest first",
    dependencies=[Depends(VIEWER)],
)
def list_events(
    ctx: Ctx,
    event: Annotated[
        str | None,
        Query(
            max_length=200,
            description="Only this event type; the app's names (GO_SESSION_START ...) "
            "match in any case.",
            examples=["GO_SESSION_START"],
        ),
    ] = None,
    since: UtcDateTime | None = None,
    until: UtcDateTime | None = None,
    limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE)] = 100,
    cursor: Annotated[str | None, Query(max_length=40)] = None,
) -> AuditPage:
    """Audit events, newest first; pass `next_cursor` back as `cursor` for older ones."""
    return service.query_events(
        store=ctx.store,
        event=_event_name(event),
        since=as_utc(since),
        until=as_utc(until),
        limit=limit,
        cursor=cursor,
    )


@router.get(
    "/verify",
    response_model=AuditVerifyResult,
    summary="Verify the audit hash chain",
    dependencies=[Depends(VIEWER)],
)
def verify(
    ctx: Ctx,
    anchor: Annotated[
        str | None,
        Query(
            pattern=service.ANCHOR_PATTERN,
            description="`SEQ:HASH` from `/core/audit/head`, kept apart from the log: "
            "the log must still hold that event (catches a truncated tail).",
        ),
    ] = None,
) -> AuditVerifyResult:
    """Walk the whole hash chain and report the first broken link."""
    parsed = None if anchor is None else service.parse_anchor(anchor)
    return service.verify_chain(store=ctx.store, anchor=parsed)


@router.get("/head", response_model=AuditHead, dependencies=[Depends(VIEWER)])
def head(ctx: Ctx) -> AuditHead:
    """The newest chained event's seq and hash: an anchor to keep apart from the log."""
    return service.chain_head(store=ctx.store)
