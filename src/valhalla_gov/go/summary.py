"""GET /core/go/summary: everything the GO page shows at a glance, in one read."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from ..audit.service import ChainWatcher
from ..cone.service import get_cone_state
from ..health.service import get_health_status
from ..storage.protocol import Store
from ..timeutil import Clock
from .models import Checklist, NextStep, Playbook
from .service import build_checklist, next_step_of
from .session_models import GoSession
from .session_service import get_session


class GoSummary(BaseModel):
    session: GoSession
    next: NextStep
    checklist: Checklist
    health: dict[str, Any]


def get_summary(
    *, store: Store, playbook: Playbook, clock: Clock, watcher: ChainWatcher
) -> GoSummary:
    health = get_health_status(store=store, clock=clock, watcher=watcher)
    checklist = build_checklist(store=store, playbook=playbook, health=health)
    return GoSummary(
        session=get_session(store=store),
        next=next_step_of(checklist),
        checklist=checklist,
        health={
            "status": health.status,
            "cone": checklist.cone_band,
            "reasons": health.reasons,
            "cone_state": get_cone_state(store=store).model_dump(),
        },
    )
