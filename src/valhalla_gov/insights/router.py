"""GET /core/go/insights."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from ..auth.deps import VIEWER
from ..context import AppContext, get_ctx
from ..timeutil import UtcDateTime
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
    since: UtcDateTime | None = None,
    until: UtcDateTime | None = None,
    bucket: Annotated[Bucket, Query()] = "week",
) -> Insights:
    """Ended sessions summed up per bucket, oldest first, on their start time
    (UTC). Without `since`, the last 12 buckets up to `until` (default now)."""
    return service.get_insights(
        store=ctx.store,
        since=since,
        until=until,
        bucket=bucket,
        now=ctx.clock(),
    )
