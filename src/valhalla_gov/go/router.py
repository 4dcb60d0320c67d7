"""PACK H endpoints: checklist, next step, complete, and the GO summary."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from ..auth.deps import OPERATOR_WRITE, VIEWER
from ..auth.models import Identity
from ..context import AppContext, get_ctx
from ..health.publisher import HealthPublisher
from . import service
from .models import Checklist, CompleteRequest, CompleteResult, NextStep, Playbook
from .summary import GoSummary, get_summary

router = APIRouter(prefix="/go", tags=["GO playbook"])
Ctx = Annotated[AppContext, Depends(get_ctx)]


@router.get(
    "/checklist",
    response_model=Checklist,
    summary="The playbook checklist",
    dependencies=[Depends(VIEWER)],
)
def checklist(ctx: Ctx) -> Checklist:
    """Every playbook step with its state: done, its notes, whether it fits
    the current band and whether red health blocks it."""
    health = ctx.get(HealthPublisher).current()
    return service.get_checklist(store=ctx.store, playbook=ctx.get(Playbook), health=health)


@router.get(
    "/next_step",
    response_model=NextStep,
    summary="The next playbook step",
    dependencies=[Depends(VIEWER)],
)
def next_step(ctx: Ctx) -> NextStep:
    """The first step not done that fits the band and is not blocked (or
    null), with a message saying why when there is none."""
    health = ctx.get(HealthPublisher).current()
    return service.get_next_step(store=ctx.store, playbook=ctx.get(Playbook), health=health)


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
def complete(
    body: CompleteRequest,
    ctx: Ctx,
    who: Annotated[Identity, Depends(OPERATOR_WRITE)],
) -> CompleteResult:
    """Mark a step done, or not done again (audited `GO_STEP_SET`); the
    active session, if any, records it in `steps_completed`."""
    return service.complete_step(
        store=ctx.store,
        playbook=ctx.get(Playbook),
        step_id=body.step_id,
        done=body.done,
        notes=body.notes,
        keep_notes="notes" not in body.model_fields_set,
        actor=who.name,
        clock=ctx.clock,
        health=ctx.get(HealthPublisher).current(),
    )


@router.get(
    "/summary",
    response_model=GoSummary,
    summary="Session, next step, checklist and health in one call",
    dependencies=[Depends(VIEWER)],
)
def summary(ctx: Ctx) -> GoSummary:
    """What the GO page shows: the current session, the next step, the
    checklist and the health (with the cone state)."""
    health = ctx.get(HealthPublisher).current()
    return get_summary(store=ctx.store, playbook=ctx.get(Playbook), health=health)
