"""GET /core/go/summary: everything the GO page shows at a glance, in one read."""

from __future__ import annotations

from pydantic import BaseModel, Field

from ..cone.canon import Band
from ..cone.models import ConeState
from ..cone.service import get_cone_state
from ..health.models import HealthStatus, Status
from ..health.service import with_cone
from ..storage.protocol import Store
from .models import Checklist, NextStep, Playbook
from .service import checklist_of, next_step_of
from .session_models import GoSession
from .session_reads import get_session
from .store import read_progress


class SummaryHealth(BaseModel):
    """The shape the earlier GO page binds to: ``health.status`` is the RYG
    string and ``health.cone`` the cone state object (``health.cone.band``)."""

    status: Status = Field(description="The health light: green, yellow or red.")
    cone: ConeState = Field(description="The cone state: band, reason, metrics, updated_at_utc.")
    cone_band: Band = Field(
        description="The band alone (what `cone` held before it was the state)."
    )
    reasons: list[str] = Field(description="Why health is not green; empty when it is.")
    cone_state: ConeState = Field(description="Same as `cone`; kept for existing clients.")


class GoSummary(BaseModel):
    session: GoSession = Field(description="The current session, or the inactive default.")
    next: NextStep = Field(description="What GET /core/go/next_step answers.")
    checklist: Checklist = Field(description="What GET /core/go/checklist answers.")
    health: SummaryHealth = Field(description="The health light, its reasons, and the cone.")


def get_summary(*, store: Store, playbook: Playbook, health: HealthStatus) -> GoSummary:
    """``health``: the published light."""
    with store.reading():  # one consistent view for every read below
        cone = get_cone_state(store=store)
        health = with_cone(health, cone)
        checklist = checklist_of(playbook, read_progress(store), cone, health)
        session = get_session(store=store)
    return GoSummary(
        session=session,
        next=next_step_of(checklist),
        checklist=checklist,
        health=SummaryHealth(
            status=health.status,
            cone=cone,
            cone_band=checklist.cone_band,
            reasons=health.reasons,
            cone_state=cone,
        ),
    )
