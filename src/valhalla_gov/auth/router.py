"""GET /core/whoami, and the owner's token routes under /core/tokens."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from ..context import AppContext, get_ctx
from .deps import OWNER, OWNER_WRITE, VIEWER
from .models import (
    SCOPES,
    TOKEN_NAME_PATTERN,
    Identity,
    TokenCreate,
    TokenCreated,
    TokenInfo,
    WhoAmI,
)
from .service import create_token, list_tokens, protected_mode, revoke_token

router = APIRouter(tags=["auth"])
Ctx = Annotated[AppContext, Depends(get_ctx)]
TokenName = Annotated[
    str, Path(pattern=TOKEN_NAME_PATTERN, description="The token's name.", examples=["phone"])
]


@router.get("/whoami", response_model=WhoAmI, summary="Who am I")
def whoami(identity: Annotated[Identity, Depends(VIEWER)], ctx: Ctx) -> WhoAmI:
    """Who the server takes you for, and whether it runs in protected mode."""
    return WhoAmI(**identity.model_dump(), protected_mode=protected_mode(store=ctx.store))


@router.get(
    "/tokens",
    response_model=list[TokenInfo],
    summary="List API tokens",
    dependencies=[Depends(OWNER)],
)
def get_tokens(ctx: Ctx) -> list[TokenInfo]:
    """Every token's name, scopes, creation and last use; never the token or its hash."""
    return list_tokens(store=ctx.store)


@router.post(
    "/tokens",
    response_model=TokenCreated,
    status_code=201,
    summary="Create an API token",
    responses={409: {"description": "A token with that name exists; revoke it first."}},
)
def post_token(
    body: TokenCreate, ctx: Ctx, who: Annotated[Identity, Depends(OWNER_WRITE)]
) -> TokenCreated:
    """Create a token (audited `TOKEN_CREATE`). The token is in this answer
    only: the server keeps its SHA-256. The first token ends protected mode:
    from then on every client needs one."""
    was_protected = protected_mode(store=ctx.store)
    scopes = [s for s in SCOPES if s in body.scopes]  # one order, no repeats
    info, token = create_token(
        store=ctx.store, name=body.name, scopes=scopes, actor=who.name, clock=ctx.clock
    )
    return TokenCreated(**info.model_dump(), token=token, ended_protected_mode=was_protected)


@router.delete(
    "/tokens/{name}",
    response_model=TokenInfo,
    summary="Revoke an API token",
    responses={404: {"description": "No token has that name."}},
)
def delete_token(
    name: TokenName, ctx: Ctx, who: Annotated[Identity, Depends(OWNER_WRITE)]
) -> TokenInfo:
    """Revoke a token by name (audited `TOKEN_REVOKE`); it stops working at once."""
    return revoke_token(store=ctx.store, name=name, actor=who.name, clock=ctx.clock)
