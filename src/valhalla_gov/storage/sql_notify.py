"""Wake-ups for live readers of the SQL backend's logs (PostgreSQL LISTEN).

Every write transaction that appends to a log sends ``pg_notify`` at commit
(see :mod:`.sql_backend`). A :class:`LogListener` holds one connection per
process, outside the pool, blocked in ``LISTEN`` on a daemon thread, and calls
back for each notification from its own schema. A notification is only a
hint: readers still read the log itself, and poll as a safety net, so one
lost while the listener reconnects costs latency, never an event.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import psycopg

from .sql_backend import LOG_CHANNEL, libpq_url, redact

log = logging.getLogger(__name__)

_RETRY_MAX_S = 5.0


class LogListener:
    def __init__(self, url: str, on_append: Callable[[], None]) -> None:
        self._conninfo = libpq_url(url)
        self._where = redact(url)
        self._on_append = on_append
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="valhalla-log-listen", daemon=True)
        self.listening = threading.Event()  # set while LISTEN is in place (tests wait on it)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 3.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        delay = 0.2
        while not self._stop.is_set():
            try:
                self._listen()
                delay = 0.2
            except (psycopg.Error, OSError) as exc:
                self.listening.clear()
                log.warning(
                    "LISTEN on %s lost (%s); live readers fall back to polling until it is back",
                    self._where,
                    exc,
                )
                self._stop.wait(delay)
                delay = min(delay * 2, _RETRY_MAX_S)

    def _listen(self) -> None:
        with psycopg.connect(self._conninfo, autocommit=True, connect_timeout=5) as conn:
            row = conn.execute("SELECT current_schema()").fetchone()
            schema = row[0] if row else None
            conn.execute(f"LISTEN {LOG_CHANNEL}")
            self.listening.set()
            # Whatever was appended while not listening: readers look once.
            self._on_append()
            while not self._stop.is_set():
                # Returns after a second without notifications, to see _stop.
                for note in conn.notifies(timeout=1.0):
                    if note.payload == schema:
                        self._on_append()
