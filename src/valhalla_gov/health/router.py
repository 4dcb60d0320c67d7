"""Health endpoints: the RYG light, liveness and readiness."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from ..auth.deps import PUBLIC, VIEWER
from ..cone.store import cached_state
from ..context import AppContext, get_ctx
from ..storage.errors import StorageError
from . import service
from .models import HealthStatus, Liveness, Readiness
from .publisher import HealthPublisher

router = APIRouter(tags=["health"])
Ctx = Annotated[AppContext, Depends(get_ctx)]


@router.get(
    "/status/ryg",
    response_model=HealthStatus,
    summary="The red / yellow / green health light",
    dependencies=[Depends(VIEWER)],
)
def status_ryg(ctx: Ctx) -> HealthStatus:
    """The light with its reasons and each check behind it (band, deny rate,
    storage, audit chain, recent server errors), as this server last judged
    it (at once after an audited change, at least every second otherwise),
    with the band as it is now."""
    light = ctx.get(HealthPublisher).current()
    try:
        cone = cached_state(ctx.store)
    except StorageError:
        return light  # its band check already says the cone cannot be read
    return service.with_cone(light, cone)


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
