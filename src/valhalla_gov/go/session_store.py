"""PACK I persistence: the current session and the history of ended ones.

In a data dir: ``go_session.json`` in the seed's ``{"session": ...}`` shape,
and ``go_session_history.jsonl``, one ended session per line, oldest first.
On SQL: one ``go_sessions`` table holds both (see :mod:`.tables`), whose
partial unique index lets the database itself refuse a second active session.

Sessions written before sessions had ids get one derived from their start
time (:mod:`.legacy`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..storage.errors import StorageCorruptError
from ..storage.protocol import Document, Log, LogEntry, Reader, Schema, Store, StoreTxn
from . import legacy


def _current_sql() -> Any:
    from .tables import CURRENT_SQL

    return CURRENT_SQL


def _history_sql() -> Any:
    from .tables import HISTORY_SQL

    return HISTORY_SQL


CURRENT = Document("go_session", file="go_session.json", envelope="session", sql=_current_sql)
HISTORY = Log("go_sessions", file="go_session_history.jsonl", sql=_history_sql)

SCHEMA = Schema(documents=(CURRENT,), logs=(HISTORY,))


def session_id(session: dict[str, Any]) -> str | None:
    """The session's id; for one written before ids existed, the derived one
    (see :mod:`.legacy`)."""
    return legacy.session_id(session, where=CURRENT.file)


def as_session(session: Any) -> dict[str, Any] | None:
    if session is not None and not isinstance(session, dict):
        raise StorageCorruptError(CURRENT.file, '"session" must be an object or null')
    return session


def load_session(*, store: Reader) -> dict[str, Any] | None:
    """The stored current session, or None when there never was one."""
    return as_session(store.read_document(CURRENT))


def read_session(txn: StoreTxn) -> dict[str, Any] | None:
    """The current session. One that go_session.json still calls active but
    the history already holds as ended was ended by a request that died
    between the history append and the document write: that end happened,
    and the history's record is the truth."""
    session = load_session(store=txn)
    if session is None or not session.get("active") or session.get("id") is None:
        return session
    last = last_history(txn)
    if last is not None and last.get("id") == session["id"] and not last.get("active"):
        return last
    return session


def save_session(txn: StoreTxn, session: dict[str, Any] | None) -> None:
    txn.write_document(CURRENT, session)


def append_history(txn: StoreTxn, session: dict[str, Any]) -> None:
    txn.append_log(HISTORY, session)


def last_history(txn: StoreTxn) -> dict[str, Any] | None:
    return txn.last_log_record(HISTORY)


def scan_history(*, store: Store, before: str | None = None) -> Iterator[LogEntry]:
    """Ended sessions, newest first."""
    return store.scan_log(HISTORY, before=before)
