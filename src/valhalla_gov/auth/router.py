"""GET /core/whoami."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from ..context import AppContext, get_ctx
from .deps import VIEWER
from .models import Identity, WhoAmI
from .service import protected_mode

router = APIRouter(tags=["auth"])


@router.get("/whoami", response_model=WhoAmI)
def whoami(
    identity: Annotated[Identity, Depends(VIEWER)],
    ctx: Annotated[AppContext, Depends(get_ctx)],
) -> WhoAmI:
    """Who the server takes you for, and whether it runs in protected mode."""
    return WhoAmI(**identity.model_dump(), protected_mode=protected_mode(store=ctx.store))
