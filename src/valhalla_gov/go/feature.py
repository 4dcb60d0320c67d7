"""The GO feature: the playbook (PACK H) and work sessions (PACK I)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..context import AppContext
from ..feature import Feature, TransferHooks
from ..storage.protocol import Document, Log, Store
from . import session_store
from .playbook import load_playbook
from .session_reads import get_session
from .store import SCHEMA, read_progress


def _unarchived_end(source: Store) -> dict[Log, list[dict[str, Any]]]:
    """The source's current session when it ended but is not in its history
    (a data dir of the earlier implementation): what the service archives
    before the next start, archived by the copy so both sides count the same."""
    session = session_store.load_session(store=source)
    if not session or session.get("active") or not session.get("ended_at_utc"):
        return {}
    found = session_store.session_id(session)
    last = next(iter(session_store.scan_history(store=source)), None)
    if last is not None and last.record.get("id") == found:
        return {}
    return {session_store.HISTORY: [{**session, "id": found}]}


def _with_id(doc: Document, value: Any) -> Any:
    # The SQL table keeps a derived id in the row; a data dir may not.
    if doc == session_store.CURRENT and isinstance(value, dict):
        return {**value, "id": session_store.session_id(value)}
    return value


def _build(ctx: AppContext) -> Sequence[object]:
    return [load_playbook(ctx.settings.playbook_file)]  # read by routers as ctx.get(Playbook)


FEATURE = Feature(
    __name__,
    schema=SCHEMA + session_store.SCHEMA,
    # The page's hottest reads (the session) are matched first.
    router_modules=("session_router", "router"),
    readiness=(lambda store: get_session(store=store), read_progress),
    build=_build,
    transfer=TransferHooks(extra_records=_unarchived_end, normalise=_with_id),
)
