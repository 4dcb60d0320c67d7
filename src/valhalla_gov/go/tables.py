"""PACK I's SQL table: every GO session, current and past, one row each.

The current session is the row with the highest id (ids sort by start time),
the history is the ended rows. A partial unique index lets at most one row be
active, so the database itself refuses a second active session whatever the
application does.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Boolean, Column, Index, String, Table, Text, text
from sqlalchemy.exc import IntegrityError

from ..errors import ConflictError
from ..storage.encoding import canonical_json
from ..storage.errors import StorageCorruptError
from ..storage.sql_placement import KeyedRows
from ..storage.sql_schema import metadata
from .legacy import session_id

go_sessions = Table(
    "go_sessions",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("active", Boolean, nullable=False),
    Column("started_at_utc", String(40), nullable=True),
    Column("ended_at_utc", String(40), nullable=True),
    Column("body", Text, nullable=False),
    Index("ix_go_sessions_active_id", "active", "id"),
    Index(
        "uq_go_sessions_one_active",
        "active",
        unique=True,
        postgresql_where=text("active"),
        sqlite_where=text("active"),
    ),
)


def _row(session: dict[str, Any]) -> dict[str, Any]:
    found = session_id(session, where=go_sessions.name)
    if found is None:
        raise StorageCorruptError(go_sessions.name, "a session without id or start time")
    if session.get("id") != found:
        session = {**session, "id": found}
    return {
        "id": found,
        "active": bool(session.get("active")),
        "started_at_utc": session.get("started_at_utc"),
        "ended_at_utc": session.get("ended_at_utc"),
        "body": canonical_json(session),
    }


def _second_active(exc: IntegrityError) -> Exception:
    # uq_go_sessions_one_active: the database's own guard against two active
    # sessions, should a writer ever bypass the lock.
    return ConflictError("a GO session is already active")


SESSIONS = KeyedRows(go_sessions, row_of=_row, on_conflict=_second_active)
CURRENT_SQL = SESSIONS.latest()
# The history is the ended rows; the active session is not history yet.
HISTORY_SQL = SESSIONS.log(go_sessions.c.active.is_(False))
