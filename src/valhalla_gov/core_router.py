"""The ``core`` router: every feature router lives under ``/core``."""

from __future__ import annotations

from fastapi import APIRouter

from .compose import FEATURES

core = APIRouter(prefix="/core")
# Routes are matched in order: FEATURES lists the hottest reads first.
for _feature in FEATURES:
    for _router in _feature.routers():
        core.include_router(_router)
