"""PACK H endpoints: checklist, next step, complete, and the GO summary."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from ..context import AppContext, get_actor, get_ctx
from . import service
from .models import Checklist, CompleteRequest, CompleteResult, NextStep
from .summary import GoSummary, get_summary

router = APIRouter(prefix="/go", tags=["GO playbook"])
Ctx = Annotated[AppContext, Depends(get_ctx)]
Actor = Annotated[str, Depends(get_actor)]


@router.get("/checklist", response_model=Checklist)
def checklist(ctx: Ctx) -> Checklist:
    return service.get_checklist(
        store=ctx.store, playbook=ctx.playbook, clock=ctx.clock, watcher=ctx.watcher
    )


@router.get("/next_step", response_model=NextStep)
def next_step(ctx: Ctx) -> NextStep:
    return service.get_next_step(
        store=ctx.store, playbook=ctx.playbook, clock=ctx.clock, watcher=ctx.watcher
    )


@router.post(
    "/complete", response_model=CompleteResult, responses={404: {"description": "Unknown step"}}
)
def complete(body: CompleteRequest, ctx: Ctx, actor: Actor) -> CompleteResult:
    return service.complete_step(
        store=ctx.store,
        playbook=ctx.playbook,
        step_id=body.step_id,
        done=body.done,
        notes=body.notes,
        actor=actor,
        clock=ctx.clock,
    )


@router.get("/summary", response_model=GoSummary)
def summary(ctx: Ctx) -> GoSummary:
    return get_summary(store=ctx.store, playbook=ctx.playbook, clock=ctx.clock, watcher=ctx.watcher)
