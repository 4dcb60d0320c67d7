"""Cone endpoints."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BeforeValidator

from ..auth.deps import OWNER_WRITE, VIEWER, VIEWER_AUDITED
from ..auth.models import SCOPE_RANK, Identity, Scope
from ..context import AppContext, get_ctx
from . import service
from .canon import Action, Canon
from .models import ConeDecideRequest, ConeDecision, ConeSetRequest, ConeState

router = APIRouter(prefix="/cone", tags=["cone"])


def _lower(value: object) -> object:
    """Actions in any case, as the CLI takes them."""
    return value.strip().lower() if isinstance(value, str) else value


Ctx = Annotated[AppContext, Depends(get_ctx)]


@router.get(
    "/state",
    response_model=ConeState,
    summary="The cone band",
    dependencies=[Depends(VIEWER)],
)
def get_state(ctx: Ctx) -> ConeState:
    """The current band, its reason and metrics, and who set it when."""
    return service.get_cone_state(store=ctx.store)


@router.post("/state", response_model=ConeState, summary="Move the cone band")
def set_state(
    body: ConeSetRequest, ctx: Ctx, who: Annotated[Identity, Depends(OWNER_WRITE)]
) -> ConeState:
    """Move the cone to another band (audited CONE_SET)."""
    return service.set_cone_state(
        store=ctx.store,
        band=body.band,
        reason=body.reason,
        metrics=body.metrics,
        actor=who.name,
        clock=ctx.clock,
    )


def _role(who: Identity) -> Scope:
    return max(who.scopes, key=SCOPE_RANK.__getitem__)


@router.post(
    "/decide",
    response_model=ConeDecision,
    summary="May an engine act in this band?",
    responses={404: {"description": "Unknown engine; the body names the known ones."}},
)
def decide_post(
    body: ConeDecideRequest, ctx: Ctx, who: Annotated[Identity, Depends(VIEWER_AUDITED)]
) -> ConeDecision:
    """May this engine take this action in the current band? (audited)"""
    return service.decide(
        store=ctx.store,
        canon=ctx.get(Canon),
        engine=body.engine,
        action=body.action,
        actor=who.name,
        clock=ctx.clock,
        role=_role(who),
    )


@router.get(
    "/decide",
    response_model=ConeDecision,
    responses={404: {"description": "Unknown engine; the body names the known ones."}},
    deprecated=True,
)
def decide(
    ctx: Ctx,
    who: Annotated[Identity, Depends(VIEWER_AUDITED)],
    engine: Annotated[
        str,
        Query(
            min_length=1,
            max_length=200,
            description="The engine's name, as the canon lists it.",
            examples=["flips"],
        ),
    ],
    action: Annotated[
        Action,
        BeforeValidator(_lower),
        Query(description="run, scale or optimize (any case).", examples=["run"]),
    ],
) -> ConeDecision:
    """The same as POST /core/cone/decide, kept for existing clients. It writes
    an audited decision, so the security gate refuses it from other sites."""
    return service.decide(
        store=ctx.store,
        canon=ctx.get(Canon),
        engine=engine,
        action=action,
        actor=who.name,
        clock=ctx.clock,
        role=_role(who),
    )
