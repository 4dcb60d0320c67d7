"""PACK I endpoints: the current session, start, end, and the history."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from ..auth.deps import OPERATOR_START, OPERATOR_WRITE, VIEWER
from ..auth.models import Identity
from ..context import AppContext, get_ctx
from ..health.publisher import HealthPublisher
from ..timeutil import UtcDateTime, as_utc
from . import session_reads, session_service
from .session_models import GoSession, SessionNotes, SessionPage

# Set to "true" on an answer whose write changed nothing (an end with no
# active session), so a client can tell the operator their notes were not saved.
NOOP_HEADER = "Valhalla-Noop"

router = APIRouter(prefix="/go", tags=["GO session"])
Ctx = Annotated[AppContext, Depends(get_ctx)]


@router.get(
    "/session",
    response_model=GoSession,
    summary="The current GO session",
    dependencies=[Depends(VIEWER)],
)
def get_session(ctx: Ctx) -> GoSession:
    """The current session, or the inactive default."""
    return session_reads.get_session(store=ctx.store)


@router.post(
    "/start_session",
    response_model=GoSession,
    summary="Start a GO session",
    responses={
        409: {
            "description": "A session is already active; `session` in the body is that "
            "session, unchanged."
        }
    },
)
def start_session(
    body: SessionNotes,
    ctx: Ctx,
    who: Annotated[Identity, Depends(OPERATOR_START)],
    request: Request,
    response: Response,
) -> GoSession:
    """Start a work session with a snapshot of cone and health. Only a start
    that happened counts against the start limit."""
    session = session_service.start_session(
        store=ctx.store,
        clock=ctx.clock,
        actor=who.name,
        notes=body.notes,
        health=ctx.get(HealthPublisher).current(),
    )
    count = getattr(request.state, "count_start", None)
    if count is not None:
        response.headers.update(count())
    return session


@router.post(
    "/end_session",
    response_model=GoSession,
    summary="End the GO session",
    responses={
        200: {
            "description": "The ended session; with none active, the last one (or the "
            "inactive default) unchanged, and the header `Valhalla-Noop: true`.",
            "headers": {
                NOOP_HEADER: {
                    "schema": {"type": "string"},
                    "description": '"true" when no session was active, so nothing changed.',
                }
            },
        }
    },
)
def end_session(
    body: SessionNotes,
    ctx: Ctx,
    who: Annotated[Identity, Depends(OPERATOR_WRITE)],
    response: Response,
) -> GoSession:
    """End the active session (idempotent: an ended session comes back unchanged)."""
    session, ended = session_service.end_session_outcome(
        store=ctx.store,
        clock=ctx.clock,
        actor=who.name,
        notes=body.notes,
        health=ctx.get(HealthPublisher).current(),
    )
    if not ended:
        response.headers[NOOP_HEADER] = "true"
    return session


@router.get(
    "/sessions",
    response_model=SessionPage,
    summary="Ended GO sessions, newest first",
    dependencies=[Depends(VIEWER)],
)
def list_sessions(
    ctx: Ctx,
    limit: Annotated[int, Query(ge=1, le=session_service.MAX_PAGE)] = 50,
    cursor: Annotated[str | None, Query(max_length=40)] = None,
    since: UtcDateTime | None = None,
    until: UtcDateTime | None = None,
) -> SessionPage:
    """Ended sessions, newest first; filter on start time with since/until."""
    return session_service.list_sessions(
        store=ctx.store,
        limit=limit,
        cursor=cursor,
        since=as_utc(since),
        until=as_utc(until),
    )


@router.get(
    "/sessions/{session_id}",
    response_model=GoSession,
    summary="One GO session by id",
    responses={404: {"description": "No session has that id."}},
    dependencies=[Depends(VIEWER)],
)
def get_session_by_id(session_id: str, ctx: Ctx) -> GoSession:
    """A session, the current one or one from the history."""
    return session_service.get_session_by_id(store=ctx.store, session_id=session_id)
