"""GET /core/go/insights."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from ..auth.deps import VIEWER
from ..context import AppContext, get_ctx
from ..timeutil import as_utc
from . import service
from .models import Bucket, Insights

router = APIRouter(prefix="/go", tags=["GO sessions"])
Ctx = Annotated[AppContext, Depends(get_ctx)]


@router.get(
    "/insights",
    response_model=Insights,
    dependencies=[Depends(VIEWER)],
    responses={
        422: {
            "description": "Bad bucket or time, since after until, more than "
            f"{service.MAX_BUCKETS} buckets or {service.MAX_SESSIONS} sessions in the range"
        },
        503: {"description": "Storage unavailable or corrupt"},
    },
)
def insights(
    ctx: Ctx,
    since: datetime | None = None,
    until: datetime | None = None,
    bucket: Annotated[Bucket, Query()] = "week",
) -> Insights:
    """Ended sessions summed up per bucket, oldest first, on their start time
    (UTC). Without `since`, the last 12 buckets up to `until` (default now)."""
    return service.get_insights(
        store=ctx.store,
        since=as_utc(since),
        until=as_utc(until),
        bucket=bucket,
        now=ctx.clock(),
    )
