"""The ``core`` router: every feature router lives under ``/core``."""

from __future__ import annotations

from fastapi import APIRouter

from .audit.router import router as audit_router
from .auth.router import router as auth_router
from .cone.router import router as cone_router
from .events.router import router as events_router
from .go.router import router as go_router
from .go.session_router import router as go_session_router
from .health.router import router as health_router
from .insights.router import router as insights_router

core = APIRouter(prefix="/core")
# Routes are matched in order: the page's hottest reads come first.
core.include_router(go_session_router)
core.include_router(go_router)
core.include_router(health_router)
core.include_router(cone_router)
core.include_router(audit_router)
core.include_router(auth_router)
core.include_router(events_router)
core.include_router(insights_router)
