"""GET /metrics in the Prometheus text format."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response
from prometheus_client import CONTENT_TYPE_LATEST

from ..auth.deps import VIEWER
from ..context import AppContext, get_ctx
from .metrics import render

router = APIRouter(tags=["metrics"])


@router.get("/metrics", response_class=Response, dependencies=[Depends(VIEWER)])
def metrics(ctx: Annotated[AppContext, Depends(get_ctx)]) -> Response:
    """Request counts and latencies, session, band, health, audit and rate-limit figures."""
    return Response(render(ctx), media_type=CONTENT_TYPE_LATEST)
