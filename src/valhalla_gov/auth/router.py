"""GET /core/whoami, the owner's token routes under /core/tokens, and the
sign-in links under /core/auth."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from ..context import AppContext, get_ctx
from .deps import OWNER, OWNER_WRITE, PUBLIC, VIEWER
from .models import (
    SCOPES,
    TOKEN_NAME_PATTERN,
    HelloProof,
    HelloRequest,
    Identity,
    SigninLink,
    SigninRequest,
    TokenCreate,
    TokenCreated,
    TokenInfo,
    WhoAmI,
)
from .service import (
    create_signin_code,
    create_token,
    exchange_signin_code,
    list_tokens,
    prove_server,
    revoke_token,
)

router = APIRouter(tags=["auth"])
Ctx = Annotated[AppContext, Depends(get_ctx)]
TokenName = Annotated[
    str, Path(pattern=TOKEN_NAME_PATTERN, description="The token's name.", examples=["phone"])
]


@router.get("/whoami", response_model=WhoAmI, summary="Who am I")
async def whoami(identity: Annotated[Identity, Depends(VIEWER)]) -> WhoAmI:
    """Who the server takes you for: the credential's name and scopes."""
    return WhoAmI(**identity.model_dump())


@router.get(
    "/tokens",
    response_model=list[TokenInfo],
    summary="List API tokens",
    dependencies=[Depends(OWNER)],
)
def get_tokens(ctx: Ctx) -> list[TokenInfo]:
    """Every token's name, kind, scopes, creation and last use (the owner
    credential and the pages' sign-ins included); never a token or its hash."""
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
    only: the server keeps its SHA-256."""
    scopes = [s for s in SCOPES if s in body.scopes]  # one order, no repeats
    info, token = create_token(
        store=ctx.store, name=body.name, scopes=scopes, actor=who.name, clock=ctx.clock
    )
    return TokenCreated(**info.model_dump(), token=token)


@router.delete(
    "/tokens/{name}",
    response_model=TokenInfo,
    summary="Revoke an API token",
    responses={
        404: {"description": "No token has that name."},
        409: {"description": "That is the owner credential: it is rotated, not revoked."},
    },
)
def delete_token(
    name: TokenName, ctx: Ctx, who: Annotated[Identity, Depends(OWNER_WRITE)]
) -> TokenInfo:
    """Revoke a token by name (audited `TOKEN_REVOKE`); it stops working at once,
    its event streams included."""
    return revoke_token(store=ctx.store, name=name, actor=who.name, clock=ctx.clock)


@router.post(
    "/auth/links",
    response_model=SigninLink,
    status_code=201,
    summary="Make a sign-in link for the GO page",
)
def post_link(ctx: Ctx, who: Annotated[Identity, Depends(OWNER_WRITE)]) -> SigninLink:
    """A one-time code: open `<server>/#signin=<code>` in a browser within 15
    minutes and the page signs in as owner. Only the code's SHA-256 is kept."""
    return create_signin_code(store=ctx.store, actor=who.name, clock=ctx.clock)


@router.post(
    "/auth/signin",
    response_model=TokenCreated,
    status_code=201,
    summary="Sign the page in with a link's code",
    dependencies=[Depends(PUBLIC)],
    responses={401: {"description": "The code was used already, expired, or never issued."}},
)
def post_signin(body: SigninRequest, ctx: Ctx) -> TokenCreated:
    """Trade a sign-in link's one-time code for a new owner-scope page token
    (named `page-YYYYMMDD-xxxx`, listed and revocable like any token;
    audited `SIGNIN_LINK_USED`). A code works once."""
    info, token = exchange_signin_code(store=ctx.store, code=body.code, clock=ctx.clock)
    return TokenCreated(**info.model_dump(), token=token)


@router.post(
    "/auth/hello",
    response_model=HelloProof,
    summary="Prove the server to the page",
    dependencies=[Depends(PUBLIC)],
    responses={401: {"description": "No token has that name (revoked, or never issued)."}},
)
def post_hello(body: HelloRequest, ctx: Ctx) -> HelloProof:
    """The GO page sends this, without its credential, before it sends the
    credential again after any failure: the answer proves the server keeps
    the token's hash, which a program that took the port while the server
    was down does not. Read only, not audited."""
    return HelloProof(proof=prove_server(store=ctx.store, name=body.name, nonce=body.nonce))
