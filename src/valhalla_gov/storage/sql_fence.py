"""The store generation read on the server's event loop (PostgreSQL).

A request that finds what it needs in the read cache still has to learn that
nothing was written since the cache was filled, by any worker or replica: one
``SELECT`` of the generation, sent after the request arrived. Sent from a
thread it costs a thread hop and a pool checkout on top of the round trip;
here it is one query on one async connection, and the request goes on on the
loop. Exact by construction: the answer is the database's, never a pushed
hint that may still be in flight.

Requests that ask while a query is on the wire share the next one, sent as
soon as that query is answered: each still gets an answer to a query sent
after it asked, and a burst of N requests costs two queries, not N in a row.

Any failure answers None (the caller falls back to its threaded path, which
reports the database's state as every read does) and the connection is
opened again on a later call, not more than once a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import psycopg

log = logging.getLogger(__name__)

_SELECT = "SELECT n FROM store_generation WHERE id = 1"
_RETRY_S = 1.0
_TIMEOUT_S = 5.0


class GenerationFence:
    def __init__(self, conninfo: str, where: str) -> None:
        """``conninfo``: a libpq URL; ``where``: the same without its password."""
        self._conninfo = conninfo
        self._where = where
        self._conn: psycopg.AsyncConnection[tuple[int]] | None = None
        self._cursor: psycopg.AsyncCursor[tuple[int]] | None = None  # one, reused
        self._loop: asyncio.AbstractEventLoop | None = None
        # The answer to the query on the wire, and to the one to send after it
        # (for everyone who asked meanwhile).
        self._sent: asyncio.Future[int | None] | None = None
        self._next: asyncio.Future[int | None] | None = None
        self._sender: asyncio.Task[None] | None = None
        self._failed_at = -_RETRY_S

    async def read(self) -> int | None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # first call, or a new loop (test clients)
            self._loop, self._conn, self._cursor = loop, None, None
            self._sent = self._next = self._sender = None
        if self._sent is None:
            # Nothing on the wire: the query sent now is sent after this ask.
            answer = self._sent = loop.create_future()
            self._sender = loop.create_task(self._send(answer))
        else:
            # The query on the wire may predate this ask: wait for the next.
            if self._next is None:
                self._next = loop.create_future()
            answer = self._next
        # Shielded: a caller that goes away must not cancel the others' answer.
        return await asyncio.shield(answer)

    async def _send(self, answer: asyncio.Future[int | None]) -> None:
        """Send queries while anyone waits; one query at a time on the one connection."""
        try:
            while True:
                answer.set_result(await self._read_once())
                answer, self._next = self._next, None  # type: ignore[assignment]
                if answer is None:
                    return
                self._sent = answer
        except BaseException:
            # Cancelled (the loop is closing): the connection's state is
            # unknown, and nobody may wait for an answer that never comes.
            self._conn, self._cursor = None, None
            for waiting in (answer, self._next):
                if waiting is not None and not waiting.done():
                    waiting.set_result(None)
            raise
        finally:
            self._sent = self._next = None

    async def _read_once(self) -> int | None:
        try:
            async with asyncio.timeout(_TIMEOUT_S):  # no task per call, unlike wait_for
                return await self._query()
        except (psycopg.Error, OSError, TimeoutError) as exc:
            await self._drop(exc)
            return None

    async def _query(self) -> int | None:
        cursor = self._cursor
        if cursor is None:
            if time.monotonic() - self._failed_at < _RETRY_S:
                return None
            self._conn = await psycopg.AsyncConnection.connect(
                self._conninfo, autocommit=True, connect_timeout=5
            )
            cursor = self._cursor = self._conn.cursor()
        await cursor.execute(_SELECT, prepare=True)
        row = await cursor.fetchone()
        return None if row is None else int(row[0])

    async def _drop(self, exc: BaseException) -> None:
        self._failed_at = time.monotonic()
        conn, self._conn, self._cursor = self._conn, None, None
        log.warning(
            "generation read on %s failed (%s); requests read it from a thread meanwhile",
            self._where,
            exc,
        )
        if conn is not None:
            with contextlib.suppress(psycopg.Error, OSError):
                await conn.close()

    async def close(self) -> None:
        sender, self._sender = self._sender, None
        if sender is not None and not sender.done():
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
        conn, self._conn, self._cursor = self._conn, None, None
        if conn is not None and self._loop is asyncio.get_running_loop():
            await conn.close()
