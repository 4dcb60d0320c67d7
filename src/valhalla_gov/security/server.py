"""What ``valhalla serve`` does with connections, before the app sees a request.

uvicorn's httptools protocol (llhttp, in C: about a third less CPU per request
than h11) with these limits added, each because uvicorn lacks it:

- **Head size.** httptools buffers a head of any size, so each request's head
  is counted as its bytes arrive, pipelined ones included, and refused (431)
  past :data:`MAX_HEADER_BYTES` before the parser has buffered it.
- **Head time.** uvicorn's keep-alive timer stops at a request's first byte,
  so a client sending a header byte at a time would hold a connection
  forever: a connection whose next head is not complete within the header
  timeout of its start (or of its last response) is closed.
- **Connections per client, and in all.** uvicorn's ``limit_concurrency``
  counts every open connection, so a few hundred idle sockets refused
  everyone (503). Here only requests in progress count: each client (all of
  loopback one client, an IPv6 /64 one, a trusted proxy four shares) may
  have at most its share of them, and the worker at most
  ``limit_concurrency``. Open connections are capped too, below the
  process's file-descriptor limit (:func:`open_cap`), so sockets cannot
  take the fds the data and the database need.
- **Eviction, not refusal.** A connection that holds a place without the
  server working for it is *stalled*: idle (no byte of a next head), or,
  for longer than the stall grace, sending its head or its body, or not
  taking its answer. When a limit is reached, the oldest stalled connection
  that frees the place is closed (a 408 if it was sending a request) and
  the newcomer is served; 503 only when every place is held by a request
  the server is working on. So idle and unfinished connections, however
  many and from whichever local account, never deny service.
- **Slow readers.** uvicorn stops *writing* while the transport's buffer is
  over its high-water mark, but goes on reading and answering pipelined
  requests. Here reading stops too, the next pipelined request waits for the
  output to drain, and a connection whose pending output has not drained
  within the write timeout is dropped (with its buffer): a client that never
  reads holds one answer for that long, not answers without end.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import ipaddress
import logging
import os
import resource
import weakref
from dataclasses import dataclass
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

MAX_HEADER_BYTES = 32 * 1024
KEEP_ALIVE_SECONDS = 5
LOOPBACK = "loopback"
# A trusted proxy speaks for many clients: this many clients' shares.
PROXY_SHARES = 4
# asyncio accepts up to the listen backlog's count of connections in one go,
# before any is seen here: the fds kept free below the limit cover one such
# burst and the files, database and webhook connections besides.
LISTEN_BACKLOG = 128
FD_HEADROOM = 128 + LISTEN_BACKLOG
_END_OF_HEAD = b"\r\n\r\n"
# A chunked body's end is known only to the parser: such a body is fed in
# slices this small, so what follows its end in the same slice (the start of
# a pipelined head, counted as head whole) is at most this much.
_CHUNKED_SLICE = 4096

log = logging.getLogger("valhalla_gov.server")


@dataclass(frozen=True)
class ConnectionLimits:
    """The settings this module applies (besides uvicorn's own)."""

    header_timeout_seconds: float = 10.0
    write_timeout_seconds: float = 30.0
    per_client: int = 64
    max_open: int = 4096
    stall_grace_seconds: float = 2.0

    @classmethod
    def from_env(cls) -> ConnectionLimits:
        """The settings ``valhalla serve`` exported (worker processes build
        their protocols from the environment); the open cap as
        :func:`open_cap` makes it for this process's fd limit."""
        default = cls()
        env = os.environ.get
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        return cls(
            header_timeout_seconds=float(env(ENV_HEADER_TIMEOUT) or default.header_timeout_seconds),
            write_timeout_seconds=float(env(ENV_WRITE_TIMEOUT) or default.write_timeout_seconds),
            per_client=int(env(ENV_PER_CLIENT) or default.per_client),
            max_open=open_cap(int(env(ENV_MAX_OPEN) or default.max_open), soft),
            stall_grace_seconds=float(env(ENV_STALL_GRACE) or default.stall_grace_seconds),
        )


ENV_HEADER_TIMEOUT = "VALHALLA_HEADER_TIMEOUT_SECONDS"
ENV_WRITE_TIMEOUT = "VALHALLA_WRITE_TIMEOUT_SECONDS"
ENV_PER_CLIENT = "VALHALLA_MAX_CONNECTIONS_PER_CLIENT"
ENV_MAX_OPEN = "VALHALLA_MAX_OPEN_CONNECTIONS"
ENV_STALL_GRACE = "VALHALLA_STALL_GRACE_SECONDS"


def open_cap(configured: int, fd_soft_limit: int) -> int:
    """Open connections one process keeps: the configured number, but never
    so many that they and one accept burst reach the fd limit."""
    if fd_soft_limit == resource.RLIM_INFINITY or fd_soft_limit < 0:
        return configured
    return max(1, min(configured, fd_soft_limit - FD_HEADROOM))


@functools.cache
def _limits() -> ConnectionLimits:
    return ConnectionLimits.from_env()


def client_key(host: str) -> str:
    """Whose share a connection from ``host`` uses: all of loopback (127.0.0.0/8,
    ::1) is one client, an IPv4 address one, an IPv6 /64 one (a single host is
    usually handed a whole /64, so its addresses are no fresh budget)."""
    try:
        ip = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return LOOPBACK
    if isinstance(ip, ipaddress.IPv4Address):
        return str(ip)
    return str(ipaddress.IPv6Network((ip, 64), strict=False))


@functools.cache
def _trusted(allow: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] | None:
    """The proxies ``valhalla serve`` trusts (uvicorn's ``forwarded_allow_ips``);
    None for ``*``. They speak for many clients: :data:`PROXY_SHARES` shares."""
    networks = []
    for entry in (part.strip() for part in allow.split(",")):
        if entry == "*":
            return None
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            continue  # a name or a socket path: nothing an address can match
    return tuple(networks)


class _Clients:
    """One server process's open connections (oldest first), its requests in
    progress (oldest first), and those per client."""

    def __init__(self) -> None:
        self.open: dict[BoundedHttpToolsProtocol, None] = {}
        self.busy: dict[BoundedHttpToolsProtocol, None] = {}
        self.busy_per_client: collections.Counter[str] = collections.Counter()


_CLIENTS: weakref.WeakKeyDictionary[ServerState, _Clients] = weakref.WeakKeyDictionary()


class _OutputAwareFlow(FlowControl):
    """uvicorn's flow control, with reading paused while output is backed up
    as well as when uvicorn asks (uvicorn resumes reading after each response,
    even one still sitting in the buffer)."""

    def __init__(self, transport: asyncio.Transport) -> None:
        super().__init__(transport)
        self._transport_paused = False

    def pause_reading(self) -> None:
        self.read_paused = True
        self._apply()

    def resume_reading(self) -> None:
        self.read_paused = False
        self._apply()

    def pause_writing(self) -> None:
        super().pause_writing()
        self._apply()

    def resume_writing(self) -> None:
        super().resume_writing()
        self._apply()

    def _apply(self) -> None:
        paused = self.read_paused or self.write_paused
        if paused == self._transport_paused or self._transport.is_closing():
            return
        self._transport_paused = paused
        if paused:
            self._transport.pause_reading()
        else:
            self._transport.resume_reading()


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits in this module's doc."""

    flow: _OutputAwareFlow

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._limits = _limits()
        # uvicorn's own check (every open connection) is replaced by ours in
        # on_headers_complete, which sets this only to pick uvicorn's 503.
        self._max_busy: int | None = config.limit_concurrency
        self.limit_concurrency = None
        clients = _CLIENTS.get(server_state)
        if clients is None:
            clients = _CLIENTS[server_state] = _Clients()
        self._clients = clients
        allow = config.forwarded_allow_ips
        self._trusted = _trusted(allow if isinstance(allow, str) else ",".join(allow))
        self._client_key: str | None = None
        self._share = self._limits.per_client
        # When this connection's current head, body or pending output began
        # (None: none is arriving or waiting), for stalled().
        self._head_since: float | None = None
        self._body_since: float | None = None
        self._output_since: float | None = None
        self._refused = False  # nothing more is read: a refusal is out or due
        self._refuse_when_done: tuple[int, str] | None = None
        self._busy = False
        self._header_deadline: asyncio.TimerHandle | None = None
        self._write_deadline: asyncio.TimerHandle | None = None
        self._next_waits_for_output = False
        # The head cap: are the bytes arriving now a head, how many so far,
        # the last three (an end of head split across reads), and how many
        # body bytes the parser still expects (None: a chunked body).
        self._in_head = True
        self._head_bytes = 0
        self._head_tail = b""
        self._body_left: int | None = 0
        self._messages = 0  # requests parsed whole on this connection
        self._body_seen = 0  # body bytes the parser has handed over

    # -- connections per client, and in all ----------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.flow = _OutputAwareFlow(transport)
        self._client_key, self._share = self._whose()
        self._clients.open[self] = None
        if len(self._clients.open) > self._limits.max_open and not self._evict_one(
            self._clients.open
        ):
            self._answer_and_close(503, "the server is at its connection limit")
            return
        self._arm_header_deadline()

    def _whose(self) -> tuple[str | None, int]:
        """Whose share this connection's requests use, and its size; None: no
        client's (a Unix socket)."""
        if self.client is None:
            return None, 0
        host = self.client[0]
        key, share = client_key(host), self._limits.per_client
        if self._trusted is None:
            return key, PROXY_SHARES * share
        with contextlib.suppress(ValueError):
            address = ipaddress.ip_address(host.partition("%")[0])
            if any(address in network for network in self._trusted):
                return key, PROXY_SHARES * share
        return key, share

    def stalled(self, now: float) -> bool:
        """Whether this connection holds its place without the server working
        for it: idle, or past the grace sending a request or not taking an
        answer. Such a connection is the first to go when places run out."""
        grace = self._limits.stall_grace_seconds
        if self._output_since is not None:
            return now - self._output_since >= grace
        if self._busy:
            return self._body_since is not None and now - self._body_since >= grace
        return self._head_since is None or now - self._head_since >= grace

    def _evict_one(
        self, among: dict[BoundedHttpToolsProtocol, None], key: str | None = None
    ) -> bool:
        """Close the oldest stalled connection of ``among`` (of client ``key``
        if given), other than this one; False when none is stalled."""
        now = self.loop.time()
        for other in among:
            if (
                other is not self
                and (key is None or other._client_key == key)
                and not other.transport.is_closing()
                and other.stalled(now)
            ):
                other._evict()
                return True
        return False

    def _evict(self) -> None:
        """Make room: off the books at once (its close takes a loop turn),
        then closed; a request still arriving is told why."""
        answering = self.cycle is not None and self.cycle.response_started
        arriving = self._busy or self._head_since is not None
        self._forget()
        if self._output_since is not None or answering:
            self.transport.abort()  # close() would wait for output that is not taken
        elif arriving:
            self._answer_and_close(408, "the request did not arrive in time")
        else:
            self.transport.close()

    def _forget(self) -> None:
        self._clients.open.pop(self, None)
        self._set_busy(False)

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._header_deadline, self._write_deadline):
            if timer is not None:
                timer.cancel()
        self._forget()
        super().connection_lost(exc)

    def _set_busy(self, busy: bool) -> None:
        if busy == self._busy:
            return
        self._busy = busy
        if busy:
            self._clients.busy[self] = None
            if self._client_key is not None:
                self._clients.busy_per_client[self._client_key] += 1
            return
        self._clients.busy.pop(self, None)
        if self._client_key is not None:
            self._clients.busy_per_client[self._client_key] -= 1
            if self._clients.busy_per_client[self._client_key] <= 0:
                del self._clients.busy_per_client[self._client_key]

    def _refusal(self) -> str | None:
        """Why a new request cannot start here (None: it can), once stalled
        connections holding the places it needs have been closed."""
        clients, key = self._clients, self._client_key
        if (
            key is not None
            and clients.busy_per_client[key] >= self._share
            and not self._evict_one(clients.busy, key)
        ):
            return "too many requests in progress from this address"
        if (
            self._max_busy is not None
            and len(clients.busy) >= self._max_busy
            and not self._evict_one(clients.busy)
        ):
            return "the server is busy"
        return None

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_since = None
        self._body_left = self._content_length()
        if self._body_left != 0:
            self._body_since = self.loop.time()
        refusal = None if self._busy else self._refusal()
        if refusal is not None:
            where = self.client[0] if self.client else "?"
            log.info("refused a request from %s: %s", where, refusal)
            self.limit_concurrency = 0  # uvicorn answers 503 and closes
        else:
            self._set_busy(True)
        try:
            super().on_headers_complete()
        finally:
            self.limit_concurrency = None

    def on_response_complete(self) -> None:
        waiting: collections.deque[Any] | None = None
        more = bool(self.pipeline)
        if self.flow.write_paused and more:
            # The last answer is still in the buffer: the next pipelined
            # request runs once it drains (resume_writing), so a client that
            # pipelines and never reads holds one answer, not one per request.
            waiting, self.pipeline = self.pipeline, collections.deque()
        super().on_response_complete()
        if waiting is not None:
            self._unset_keepalive_if_required()  # not idle: requests are waiting
            self.pipeline = waiting
            self._next_waits_for_output = True
        elif not more:
            self._set_busy(False)
            if self._refuse_when_done is not None and not self.transport.is_closing():
                self._answer_and_close(*self._refuse_when_done)
                return
        if not self.transport.is_closing():
            self._arm_header_deadline()

    # -- slow readers -------------------------------------------------------------
    def pause_writing(self) -> None:
        super().pause_writing()
        if self._output_since is None:
            self._output_since = self.loop.time()
        if self._write_deadline is None:
            self._write_deadline = self.loop.call_later(
                self._limits.write_timeout_seconds, self._output_stuck
            )

    def resume_writing(self) -> None:
        super().resume_writing()
        self._output_since = None
        if self._write_deadline is not None:
            self._write_deadline.cancel()
            self._write_deadline = None
        if self._next_waits_for_output and not self.transport.is_closing():
            self._next_waits_for_output = False
            if self.pipeline:
                cycle, app = self.pipeline.pop()
                self._start_asgi_task(cycle, app)

    def _output_stuck(self) -> None:
        self._write_deadline = None
        if self.flow.write_paused and not self.transport.is_closing():
            log.info(
                "closed a connection from %s: its pending output (%d bytes) did not drain in %g s",
                self.client[0] if self.client else "?",
                self.transport.get_write_buffer_size(),
                self._limits.write_timeout_seconds,
            )
            # close() would wait for the buffer to drain; abort() drops it.
            self.transport.abort()

    # -- head time ----------------------------------------------------------------
    def _arm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
        self._header_deadline = self.loop.call_later(
            self._limits.header_timeout_seconds, self._headers_overdue, self.cycle
        )

    def _headers_overdue(self, cycle_when_armed: Any) -> None:
        # Still the same (finished or absent) cycle: no new request's head
        # was completed since the deadline was set.
        idle = self.cycle is cycle_when_armed and (
            self.cycle is None or self.cycle.response_complete
        )
        if idle and not self.transport.is_closing():
            self.transport.close()

    # -- head size ----------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        # The parser sees every byte, in order, but in slices that end where
        # a head or a sized body ends, so each head's bytes are counted
        # exactly, a pipelined one too.
        view = memoryview(data)
        pos, size = 0, len(data)
        while pos < size:
            if self._in_head:
                if self._head_since is None:
                    self._head_since = self.loop.time()
                end = self._end_of_head(data, pos)
                stop = size if end < 0 else end
                self._head_bytes += stop - pos
                if self._head_bytes > MAX_HEADER_BYTES:
                    self._refuse_head()
                    return
            elif self._body_left:
                stop = min(size, pos + self._body_left)
            elif self._body_left is None:
                stop = min(size, pos + _CHUNKED_SLICE)
            else:  # headers done, no body expected, no message end: an upgrade
                stop = size
            chunked = not self._in_head and self._body_left is None
            messages, body_seen = self._messages, self._body_seen
            super().data_received(view[pos:stop])  # type: ignore[arg-type]
            if self.transport.is_closing() or self.parser is None or self.parser.should_upgrade():
                return  # refused (400), gone, or an upgrade: uvicorn drops the rest
            if chunked and self._messages != messages and self._in_head:
                # A chunked body ended in this slice: all of the slice but its
                # body bytes is counted as head (its framing too: a few bytes).
                self._head_bytes = stop - pos - (self._body_seen - body_seen)
                self._head_tail = bytes(view[max(pos, stop - 3) : stop])
                if self._head_bytes > MAX_HEADER_BYTES:
                    self._refuse_head()
                    return
            pos = stop

    def _end_of_head(self, data: bytes, pos: int) -> int:
        """Where the head being counted ends in ``data`` (just past its blank
        line), or -1; remembers the last bytes for a split end."""
        tail = self._head_tail
        if tail:
            joined = tail + data[pos : pos + 3]
            at = joined.find(_END_OF_HEAD)
            if at >= 0:
                self._head_tail = b""
                return pos + at + 4 - len(tail)
        at = data.find(_END_OF_HEAD, pos)
        if at >= 0:
            self._head_tail = b""
            return at + 4
        self._head_tail = (tail + data[max(pos, len(data) - 3) :])[-3:]
        return -1

    def _content_length(self) -> int | None:
        length = 0
        for name, value in self.headers:
            if name == b"transfer-encoding":
                return None
            if name == b"content-length" and value.strip().isdigit():
                length = int(value)  # a bad one is refused by the parser itself
        return length

    def on_body(self, body: bytes) -> None:
        self._body_seen += len(body)
        if self._body_left:
            self._body_left -= len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        # What arrives next is the next request's head (keep-alive, pipelining).
        self._in_head, self._head_bytes, self._head_tail = True, 0, b""
        self._body_left = 0
        self._body_since = None
        self._messages += 1

    def _refuse_head(self) -> None:
        refusal = (431, f"request headers larger than {MAX_HEADER_BYTES} bytes")
        self._refused = True  # the parser never sees the rest of this head
        if self.pipeline or (self.cycle is not None and not self.cycle.response_complete):
            # Requests before it are still being answered: the 431 follows
            # their answers (on_response_complete), in order.
            self.flow.pause_reading()
            self._refuse_when_done = refusal
            return
        self._answer_and_close(*refusal)

    def _answer_and_close(self, status: int, message: str) -> None:
        self._refused = True
        reason = {
            408: b"Request Timeout",
            431: b"Request Header Fields Too Large",
            503: b"Service Unavailable",
        }[status]
        body = message.encode("ascii")
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (status, reason, len(body), body)
        )
        self.transport.close()
