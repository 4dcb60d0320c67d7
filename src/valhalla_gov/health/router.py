"""Health endpoints: the RYG light, liveness and readiness."""

from __future__ import annotations

import functools
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from ..auth.deps import PUBLIC, VIEWER
from ..context import AppContext, get_ctx
from ..storage.aio import run_store
from . import service
from .models import HealthStatus, Liveness, Readiness

router = APIRouter(tags=["health"])
Ctx = Annotated[AppContext, Depends(get_ctx)]


@router.get(
    "/status/ryg",
    response_model=HealthStatus,
    response_class=Response,
    summary="The red / yellow / green health light",
    dependencies=[Depends(VIEWER)],
)
async def status_ryg(request: Request) -> Response:
    """The light with its reasons and each check behind it (band, deny rate,
    storage, audit chain, recent server errors)."""
    # Async like GET /core/go/session: on the JSON backend the checks read a
    # few small local files, cheaper than the thread hop a sync route pays.
    ctx: AppContext = request.app.state.ctx
    check = functools.partial(
        service.get_health_status, store=ctx.store, clock=ctx.clock, watcher=ctx.watcher
    )
    health = await run_store(ctx.store, check, request.scope)
    return Response(health.model_dump_json().encode(), media_type="application/json")


@router.get("/healthz", response_model=Liveness, summary="Liveness", dependencies=[Depends(PUBLIC)])
def healthz() -> Liveness:
    """The process is up and answering."""
    return Liveness(ok=True)


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="Readiness",
    dependencies=[Depends(PUBLIC)],
    responses={503: {"model": Readiness, "description": "Storage is corrupt or unwritable."}},
)
def readyz(ctx: Ctx) -> Readiness | JSONResponse:
    """Whether every stored document reads as its model and storage is
    writable; 503 with the reasons otherwise. Public: it carries no data."""
    ready = service.get_readiness(store=ctx.store, checks=ctx.readiness)
    if not ready.ready:
        return JSONResponse(status_code=503, content=ready.model_dump())
    return ready
