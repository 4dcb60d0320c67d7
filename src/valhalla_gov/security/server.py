"""uvicorn limits: header size, slow headers, idle keep-alive, connections.

``valhalla serve`` parses HTTP with httptools (llhttp, in C): it costs about a
third less CPU per request than h11. httptools itself buffers headers of any
size, so :class:`BoundedHttpToolsProtocol` counts the bytes of each request's
head as they arrive and answers 431 past :data:`MAX_HEADER_BYTES`, before the
parser has buffered them. Both protocols close a connection whose next
request's headers do not arrive in time.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEADER_BYTES = 32 * 1024
KEEP_ALIVE_SECONDS = 5
_END_OF_HEAD = b"\r\n\r\n"


class _HeaderDeadline:
    """Closes a connection whose next request's headers do not arrive in time.

    uvicorn's keep-alive timer stops at the first byte received, so a client
    sending one header byte at a time would hold the connection forever; this
    deadline runs from the connection's start and from each response's end.
    """

    # From the environment (``valhalla serve`` puts the setting there), as
    # worker processes import this class afresh.
    header_timeout_seconds = float(os.environ.get("VALHALLA_HEADER_TIMEOUT_SECONDS", "10"))
    cycle: Any
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._arm_header_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        if not self.transport.is_closing():
            self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        deadline: asyncio.TimerHandle | None = getattr(self, "_header_deadline", None)
        if deadline is not None:
            deadline.cancel()
        super().connection_lost(exc)  # type: ignore[misc]

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


class BoundedH11Protocol(_HeaderDeadline, H11Protocol):  # type: ignore[misc]
    """h11 with the header deadline (its head size is bounded by
    ``h11_max_incomplete_event_size``)."""


class BoundedHttpToolsProtocol(_HeaderDeadline, HttpToolsProtocol):  # type: ignore[misc]
    """httptools with the header deadline and a cap on each request's head."""

    _in_head = True  # the bytes arriving now belong to a request's head
    _head_bytes = 0
    _head_tail = b""  # the last bytes seen, for an end of head split across reads

    def data_received(self, data: bytes) -> None:
        if self._in_head and self._over_the_cap(data):
            self._refuse_head()
            return
        super().data_received(data)

    def _over_the_cap(self, data: bytes) -> bool:
        seen = self._head_tail + data
        end = seen.find(_END_OF_HEAD)
        # Only the head counts: body bytes in the same read do not.
        self._head_bytes += len(data) if end < 0 else max(0, end + 4 - len(self._head_tail))
        self._head_tail = seen[-3:]
        return self._head_bytes > MAX_HEADER_BYTES

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        # What arrives next is the next request's head (keep-alive, pipelining).
        self._in_head, self._head_bytes, self._head_tail = True, 0, b""

    def _refuse_head(self) -> None:
        message = f"request headers larger than {MAX_HEADER_BYTES} bytes"
        body = message.encode("ascii")
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: text/plain; charset=utf-8\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body)
        )
        self.transport.close()
