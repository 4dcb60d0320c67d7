"""PACK I persistence: the current session in ``go_session.json`` (the seed's
``{"session": ...}`` shape) and ended sessions in an append-only history."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..storage.errors import StorageCorruptError
from ..storage.protocol import DOC_GO_SESSION, LOG_SESSIONS, LogEntry, Store, StoreTxn


def unwrap(raw: Any) -> dict[str, Any] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or "session" not in raw:
        raise StorageCorruptError("go_session.json", 'expected {"session": {...} or null}')
    session = raw["session"]
    if session is not None and not isinstance(session, dict):
        raise StorageCorruptError("go_session.json", '"session" must be an object or null')
    return session


def load_session(*, store: Store) -> dict[str, Any] | None:
    """The stored current session, or None when there never was one."""
    return unwrap(store.read_document(DOC_GO_SESSION))


def read_session(txn: StoreTxn) -> dict[str, Any] | None:
    """The current session. One that go_session.json still calls active but
    the history already holds as ended was ended by a request that died
    between the history append and the document write: that end happened,
    and the history's record is the truth."""
    session = unwrap(txn.read_document(DOC_GO_SESSION))
    if session is None or not session.get("active") or session.get("id") is None:
        return session
    last = last_history(txn)
    if last is not None and last.get("id") == session["id"] and not last.get("active"):
        return last
    return session


def save_session(txn: StoreTxn, session: dict[str, Any] | None) -> None:
    txn.write_document(DOC_GO_SESSION, {"session": session})


def append_history(txn: StoreTxn, session: dict[str, Any]) -> None:
    txn.append_log(LOG_SESSIONS, session)


def last_history(txn: StoreTxn) -> dict[str, Any] | None:
    return txn.last_log_record(LOG_SESSIONS)


def scan_history(*, store: Store, before: str | None = None) -> Iterator[LogEntry]:
    """Ended sessions, newest first."""
    return store.scan_log(LOG_SESSIONS, before=before)
