"""Reading the current GO session: the rule both the router and the CLI's
direct read (``valhalla go status`` on a data dir) call.

Kept apart from :mod:`.session_service` so that a read imports only the
session's model and store, not the write path (audit, cone, health).
"""

from __future__ import annotations

from typing import Any

from ..storage.parsing import parse_stored
from ..storage.protocol import Store
from . import session_store
from .session_models import GoSession


def session_model(raw: dict[str, Any] | None) -> GoSession | None:
    """A stored session as the model; None for none."""
    if raw is None:
        return None
    session = parse_stored(GoSession, raw, where=session_store.CURRENT.file, what="session")
    if session.id is None:
        # Written before sessions had ids: the derived one, stable across reads.
        session.id = session_store.session_id(raw)
    return session


def _current(raw: Any | None) -> GoSession:
    return session_model(session_store.as_session(raw)) or GoSession(active=False)


def get_session(*, store: Store) -> GoSession:
    """The current session, or the inactive default when there never was one.
    Read through the store's cache: the result is shared, do not mutate it."""
    return store.read_cached(session_store.CURRENT, _current)
