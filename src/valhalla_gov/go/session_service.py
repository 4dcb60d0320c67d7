"""PACK I rules: one active session at a time, snapshots at start and end,
an append-only history.

Every change runs inside one store transaction (exclusive across threads and
processes). Write order makes a crash at any point recoverable: the ended
session is appended to the history *before* ``go_session.json`` is replaced,
and an ended session found in ``go_session.json`` but missing from the
history (a crash between the two, or a data dir from the earlier
implementation) is appended before a new session replaces it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..audit.service import log_event
from ..auth.service import LOCAL_ACTOR
from ..cone.service import get_cone_state
from ..errors import ConflictError, NotFoundError
from ..health.models import HealthStatus
from ..health.service import with_cone
from ..storage.protocol import Store, StoreTxn
from ..timeutil import Clock, iso_z, new_id, parse_iso
from . import session_store
from .session_models import GoSession, SessionPage

# The read of the current session lives apart: the CLI reads it without the
# write path's imports.
from .session_reads import get_session, session_model

MAX_PAGE = 500


def _snapshot(txn: StoreTxn, health: HealthStatus) -> dict[str, Any]:
    """The cone as this transaction reads it, and the published light judged
    with that cone (so they agree)."""
    cone = get_cone_state(store=txn)
    return {"cone": cone.model_dump(), "status": with_cone(health, cone).model_dump()}


def _given(notes: str | None) -> str | None:
    return notes if notes is not None and notes.strip() else None


def _archive_if_missing(txn: StoreTxn, session: GoSession) -> None:
    last = session_store.last_history(txn)
    if last is None or last.get("id") != session.id:
        session_store.append_history(txn, session.model_dump())


def _finish_interrupted_end(txn: StoreTxn, ended: GoSession, clock: Clock) -> None:
    """Complete an end that died between its history append and the
    ``go_session.json`` write (read_session already answers with the history's
    ended record): write the document and the audit line it never got."""
    stored = session_store.load_session(store=txn)
    if stored is None or not stored.get("active") or stored.get("id") != ended.id:
        return
    _save_end(txn, ended, actor=ended.ended_by or LOCAL_ACTOR, clock=clock, recovered=True)


def _save_end(
    txn: StoreTxn, ended: GoSession, *, actor: str, clock: Clock, recovered: bool = False
) -> None:
    """The ended session as the current one, and its audit line."""
    session_store.save_session(txn, ended.model_dump())
    payload: dict[str, Any] = {
        "session_id": ended.id,
        "notes": ended.notes,
        "duration_seconds": ended.duration_seconds,
    }
    if recovered:
        payload["recovered"] = True
    log_event(txn, event="GO_SESSION_END", payload=payload, actor=actor, clock=clock)


def start_session(
    *, store: Store, clock: Clock, actor: str, notes: str | None, health: HealthStatus
) -> GoSession:
    """Start a session. Raises ConflictError (carrying the active session)
    while one is active; that session is left untouched. ``health``: the
    published light, for the snapshot."""
    with store.transaction() as txn:
        current = session_model(session_store.read_session(txn))
        if current is not None and not current.active:
            _finish_interrupted_end(txn, current, clock)
        if current is not None and current.active:
            raise ConflictError(
                "a GO session is already active; end it before starting another",
                body={"session": current.model_dump()},
            )
        if current is not None and current.ended_at_utc:
            _archive_if_missing(txn, current)
        now = clock()
        if current is not None and current.ended_at_utc:
            # Sessions never overlap, even if the wall clock stepped back.
            now = max(now, parse_iso(current.ended_at_utc))
        snapshot = _snapshot(txn, health)
        session = GoSession(
            active=True,
            started_at_utc=iso_z(now),
            cone_band=snapshot["cone"]["band"],
            status=snapshot["status"]["status"],
            notes=_given(notes),
            snapshot=snapshot,
            id=new_id(now),
            started_by=actor,
            start_notes=_given(notes),
        )
        session_store.save_session(txn, session.model_dump())
        log_event(
            txn,
            event="GO_SESSION_START",
            payload={"session_id": session.id, "notes": session.notes},
            actor=actor,
            clock=clock,
        )
    return session


def end_session(
    *, store: Store, clock: Clock, actor: str, notes: str | None, health: HealthStatus
) -> GoSession:
    """End the active session. With none ever started: the inactive default.
    With the last one already ended: that session, unchanged."""
    return end_session_outcome(store=store, clock=clock, actor=actor, notes=notes, health=health)[0]


def end_session_outcome(
    *, store: Store, clock: Clock, actor: str, notes: str | None, health: HealthStatus
) -> tuple[GoSession, bool]:
    """:func:`end_session`, and whether it ended one (False: nothing changed,
    so the caller can say the notes were not saved)."""
    with store.transaction() as txn:
        current = session_model(session_store.read_session(txn))
        if current is None:
            return GoSession(active=False), False
        if not current.active:
            _finish_interrupted_end(txn, current, clock)
            return current, False
        now = clock()
        started = parse_iso(current.started_at_utc) if current.started_at_utc else now
        now = max(now, started)
        end_notes = _given(notes)
        ended = current.model_copy(
            update={
                "active": False,
                "ended_at_utc": iso_z(now),
                "ended_by": actor,
                "end_notes": end_notes,
                "notes": end_notes if end_notes is not None else current.notes,
                "end_snapshot": _snapshot(txn, health),
                "duration_seconds": round((now - started).total_seconds(), 6),
            }
        )
        _archive_if_missing(txn, ended)
        _save_end(txn, ended, actor=actor, clock=clock)
    return ended, True


def list_sessions(
    *,
    store: Store,
    limit: int = 50,
    cursor: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> SessionPage:
    """Ended sessions, newest first, filtered on their start time. The history
    is in start order, so the scan stops at the first session before
    ``since``; the active session is not history yet (see GET /session)."""
    limit = max(1, min(limit, MAX_PAGE))
    items: list[GoSession] = []
    last_cursor: str | None = None
    for entry in session_store.scan_history(store=store, before=cursor):
        session = session_model(entry.record)
        if session is None or session.started_at_utc is None:
            continue
        started = parse_iso(session.started_at_utc)
        if since is not None and started < since:
            return SessionPage(items=items, next_cursor=None)
        if until is not None and started > until:
            continue
        if len(items) == limit:
            return SessionPage(items=items, next_cursor=last_cursor)
        items.append(session)
        last_cursor = entry.cursor
    return SessionPage(items=items, next_cursor=None)


def get_session_by_id(*, store: Store, session_id: str) -> GoSession:
    """One session by id: the current one or one from the history. Ids sort by
    start time, so the backward scan stops once it passes the id."""
    current = get_session(store=store)
    if current.id == session_id:
        return current
    for entry in session_store.scan_history(store=store):
        found = session_model(entry.record)
        if found is None or found.id is None:
            continue
        if found.id == session_id:
            return found
        if found.id < session_id:
            break
    raise NotFoundError(f"no GO session with id {session_id!r}")
