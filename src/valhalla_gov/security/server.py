"""uvicorn limits: header size, slow headers, idle keep-alive, connections.

h11 (not httptools) is used because it bounds the size of a request's headers
(``h11_max_incomplete_event_size``); httptools buffers headers of any size.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

MAX_HEADER_BYTES = 32 * 1024
KEEP_ALIVE_SECONDS = 5


class BoundedH11Protocol(H11Protocol):
    """Closes a connection whose next request's headers do not arrive in time.

    uvicorn's keep-alive timer stops at the first byte received, so a client
    sending one header byte at a time would hold the connection forever; this
    deadline runs from the connection's start and from each response's end.
    """

    # From the environment (``valhalla serve`` puts the setting there), as
    # worker processes import this class afresh.
    header_timeout_seconds = float(os.environ.get("VALHALLA_HEADER_TIMEOUT_SECONDS", "10"))

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        deadline: asyncio.TimerHandle | None = getattr(self, "_header_deadline", None)
        if deadline is not None:
            deadline.cancel()
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        previous: asyncio.TimerHandle | None = getattr(self, "_header_deadline", None)
        if previous is not None:
            previous.cancel()
        self._header_deadline = self.loop.call_later(
            self.header_timeout_seconds, self._headers_overdue, self.cycle
        )

    def _headers_overdue(self, cycle_when_armed: Any) -> None:
        # Still the same (finished or absent) cycle: no new request's headers
        # were completed since the deadline was set.
        idle = self.cycle is cycle_when_armed and (
            self.cycle is None or self.cycle.response_complete
        )
        if idle and not self.transport.is_closing():
            self.transport.close()
