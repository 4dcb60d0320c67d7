"""PACK H endpoints: checklist, next step, complete, and the GO summary."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from ..auth.deps import OPERATOR_WRITE, VIEWER
from ..auth.models import Identity
from ..context import AppContext, get_ctx
from . import service
from .models import Checklist, CompleteRequest, CompleteResult, NextStep
from .summary import GoSummary, get_summary

router = APIRouter(prefix="/go", tags=["GO playbook"])
Ctx = Annotated[AppContext, Depends(get_ctx)]


@router.get("/checklist", response_model=Checklist, dependencies=[Depends(VIEWER)])
def checklist(ctx: Ctx) -> Checklist:
    return service.get_checklist(
        store=ctx.store, playbook=ctx.playbook, clock=ctx.clock, watcher=ctx.watcher
    )


@router.get("/next_step", response_model=NextStep, dependencies=[Depends(VIEWER)])
def next_step(ctx: Ctx) -> NextStep:
    return service.get_next_step(
        store=ctx.store, playbook=ctx.playbook, clock=ctx.clock, watcher=ctx.watcher
    )


@router.post(
    "/complete",
    response_model=CompleteResult,
    responses={
        404: {"description": "Unknown step"},
        409: {"description": "The step is blocked or needs a better band"},
    },
)
def complete(
    body: CompleteRequest, ctx: Ctx, who: Annotated[Identity, Depends(OPERATOR_WRITE)]
) -> CompleteResult:
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
    )


@router.get("/summary", response_model=GoSummary, dependencies=[Depends(VIEWER)])
def summary(ctx: Ctx) -> GoSummary:
    return get_summary(store=ctx.store, playbook=ctx.playbook, clock=ctx.clock, watcher=ctx.watcher)
