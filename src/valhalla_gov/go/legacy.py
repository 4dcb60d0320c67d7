"""Sessions from before sessions had ids: the one rule that gives them one.

The earlier implementation wrote sessions without an ``id``; every reader
(the service, the SQL table, the data transfer) derives the same one from
the start time, so a legacy session has one id on every read and backend.
"""

from __future__ import annotations

from typing import Any

from ..storage.errors import StorageCorruptError
from ..timeutil import parse_iso, stable_id


def session_id(session: dict[str, Any], *, where: str) -> str | None:
    """The session's id, or the derived one; None without id or start time.
    ``where`` names the file or table in the error for an unreadable time."""
    if session.get("id"):
        return str(session["id"])
    started = session.get("started_at_utc")
    if not isinstance(started, str) or not started:
        return None
    try:
        return stable_id(parse_iso(started), started)
    except ValueError as exc:
        raise StorageCorruptError(where, f"unreadable started_at_utc {started!r}") from exc
