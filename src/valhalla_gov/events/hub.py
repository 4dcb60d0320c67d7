"""One per process: wakes the streams when the audit log grows, bounds the
streams per client, and ends them all when the server shuts down.

Streams never receive events from here, only a wake-up; each then reads the
audit log itself from its own position (see :mod:`.tail`). So a write made by
any worker, process or replica reaches every stream, and a slow or waking
reader can never skip or repeat one.

Wake-ups come from a poll of :meth:`Store.log_version` while streams are
open (a stat of ``audit.log``, or one indexed query on SQL) and, on
PostgreSQL, from LISTEN/NOTIFY at once; the poll stays on as a safety net.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from starlette.concurrency import run_in_threadpool

from ..audit.store import AUDIT_LOG
from ..storage.errors import StorageError
from ..storage.protocol import Store

log = logging.getLogger(__name__)

_SignalHandler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


class EventHub:
    def __init__(
        self,
        *,
        store: Store,
        poll_seconds: float,
        max_streams_per_client: int,
        listen_url: str | None = None,
    ) -> None:
        self.store = store
        self.poll_seconds = poll_seconds
        self.max_streams_per_client = max_streams_per_client
        self._listen_url = listen_url
        self._listener: Any = None
        self.generation = 0
        self.closing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed: asyncio.Event | None = None
        self._poller: asyncio.Task[None] | None = None
        self._streams: dict[str, int] = {}
        self._open = 0
        self._last_poll_error = 0.0

    # -- streams per client -------------------------------------------------
    def acquire(self, client: str) -> bool:
        """Count one more stream for ``client``; False past the bound."""
        count = self._streams.get(client, 0)
        if count >= self.max_streams_per_client:
            return False
        self._streams[client] = count + 1
        self._open += 1
        self._ensure_running()
        return True

    def release(self, client: str) -> None:
        count = self._streams.get(client, 0) - 1
        if count > 0:
            self._streams[client] = count
        else:
            self._streams.pop(client, None)
        self._open = max(0, self._open - 1)

    # -- wake-ups -------------------------------------------------------------
    async def wait(self, generation: int, timeout: float) -> None:
        """Return when the log may have grown since ``generation`` was read,
        at shutdown, or after ``timeout`` seconds."""
        if self.generation != generation or self.closing or self._changed is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)

    def _bump(self) -> None:
        self.generation += 1
        if self._changed is not None:
            changed, self._changed = self._changed, asyncio.Event()
            changed.set()

    def _ensure_running(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # first stream, or a new loop (test clients)
            self._loop, self._changed, self._poller = loop, asyncio.Event(), None
        if self._poller is None or self._poller.done():
            self._poller = loop.create_task(self._poll(), name="valhalla-events-poll")
        if self._listen_url is not None and self._listener is None:
            from ..storage.sql_notify import LogListener

            self._listener = LogListener(self._listen_url, self._wake_threadsafe)
            self._listener.start()

    def _wake_threadsafe(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._bump)

    async def _version(self) -> str:
        return await run_in_threadpool(self.store.log_version, AUDIT_LOG)

    async def _poll(self) -> None:
        last: str | None = None
        try:
            last = await self._version()
        except StorageError as exc:
            self._poll_failed(exc)
        # Streams that read before this baseline look once more, so a write
        # between their read and the baseline is not left for the next one.
        self._bump()
        while self._open > 0 and not self.closing:
            await asyncio.sleep(self.poll_seconds)
            try:
                version = await self._version()
            except StorageError as exc:
                self._poll_failed(exc)
                continue
            if version != last:
                last = version
                self._bump()

    def _poll_failed(self, exc: StorageError) -> None:
        now = time.monotonic()
        if now - self._last_poll_error > 30:
            self._last_poll_error = now
            log.error("event stream cannot watch the audit log: %s", exc)

    # -- shutdown ---------------------------------------------------------------
    def close(self) -> None:
        """End every stream (their responses complete, so the server can stop)."""
        self.closing = True
        self._bump()

    def stop(self) -> None:
        self.close()
        if self._listener is not None:
            self._listener.stop()
            self._listener = None

    def chain_exit_signals(self) -> None:
        """Close the streams as soon as the server is asked to stop.

        uvicorn waits for open responses to finish before it runs the app's
        shutdown, and an event stream never finishes by itself: so the hub
        hears SIGTERM / SIGINT first, then hands the signal on to the server's
        own handler. Only possible on the main thread (not under test clients).
        """
        if threading.current_thread() is not threading.main_thread():
            return
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous: _SignalHandler = signal.getsignal(sig)

            def handler(
                signum: int, frame: FrameType | None, previous: _SignalHandler = previous
            ) -> None:
                loop.call_soon_threadsafe(self.close)
                if callable(previous):
                    previous(signum, frame)

            signal.signal(sig, handler)


def poll_interval(on_files: bool, listening: bool, configured: float | None) -> float:
    """Local files are cheap to stat often; a database is asked less often,
    and only as a safety net when LISTEN already wakes the streams."""
    if configured is not None:
        return configured
    if on_files:
        return 0.2
    return 2.0 if listening else 0.5


def build_hub(
    *, store: Store, database_url: str | None, poll_seconds: float | None, max_streams: int
) -> EventHub:
    listen = database_url is not None and database_url.startswith("postgresql")
    return EventHub(
        store=store,
        poll_seconds=poll_interval(database_url is None, listen, poll_seconds),
        max_streams_per_client=max_streams,
        listen_url=database_url if listen else None,
    )
