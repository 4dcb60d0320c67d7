"""PACK H endpoints: checklist, next step, complete, and the GO summary."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from ..auth.deps import OPERATOR_WRITE, VIEWER
from ..auth.models import Identity
from ..context import AppContext, get_ctx
from ..routing import one_hop
from ..storage.aio import request_generation, request_reading
from . import service
from .models import Checklist, CompleteRequest, CompleteResult, NextStep
from .summary import GoSummary, get_summary

router = APIRouter(prefix="/go", tags=["GO playbook"])
Ctx = Annotated[AppContext, Depends(get_ctx)]


@router.get(
    "/checklist",
    response_model=Checklist,
    summary="The playbook checklist",
    dependencies=[Depends(VIEWER)],
)
@one_hop
def checklist(ctx: Ctx, request: Request) -> Checklist:
    """Every playbook step with its state: done, its notes, whether it fits
    the current band and whether red health blocks it."""
    with request_reading(ctx.store, request.scope):
        return service.get_checklist(
            store=ctx.store, playbook=ctx.playbook, clock=ctx.clock, watcher=ctx.watcher
        )


@router.get(
    "/next_step",
    response_model=NextStep,
    summary="The next playbook step",
    dependencies=[Depends(VIEWER)],
)
@one_hop
def next_step(ctx: Ctx, request: Request) -> NextStep:
    """The first step not done that fits the band and is not blocked (or
    null), with a message saying why when there is none."""
    with request_reading(ctx.store, request.scope):
        return service.get_next_step(
            store=ctx.store, playbook=ctx.playbook, clock=ctx.clock, watcher=ctx.watcher
        )


@router.post(
    "/complete",
    response_model=CompleteResult,
    summary="Mark a playbook step done (or not)",
    responses={
        404: {"description": "Unknown step; the detail lists the known ones."},
        409: {
            "description": "The step needs a better band, or red health blocks it (the "
            "detail says which)."
        },
    },
)
@one_hop
def complete(
    body: CompleteRequest,
    ctx: Ctx,
    who: Annotated[Identity, Depends(OPERATOR_WRITE)],
    request: Request,
) -> CompleteResult:
    """Mark a step done, or not done again (audited `GO_STEP_SET`); the
    active session, if any, records it in `steps_completed`."""
    return service.complete_step(
        store=ctx.store,
        playbook=ctx.playbook,
        step_id=body.step_id,
        done=body.done,
        notes=body.notes,
        keep_notes="notes" not in body.model_fields_set,
        actor=who.name,
        clock=ctx.clock,
        watcher=ctx.watcher,
        at=request_generation(request.scope),
    )


@router.get(
    "/summary",
    response_model=GoSummary,
    summary="Session, next step, checklist and health in one call",
    dependencies=[Depends(VIEWER)],
)
@one_hop
def summary(ctx: Ctx, request: Request) -> GoSummary:
    """What the GO page shows: the current session, the next step, the
    checklist and the health (with the cone state)."""
    with request_reading(ctx.store, request.scope):
        return get_summary(
            store=ctx.store, playbook=ctx.playbook, clock=ctx.clock, watcher=ctx.watcher
        )
