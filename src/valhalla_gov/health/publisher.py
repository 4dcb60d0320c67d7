"""The published health light: judged by this process, read by its routes.

One :class:`HealthPublisher` per app. While the server serves, a background
task (:meth:`run`) looks at the audit log every :data:`POLL` seconds and
judges health at once when it moved (every state change is audited), and
at least every :data:`PERIOD` seconds otherwise (for what nobody audits: free
space, a file edited by hand, an error ageing out). It records HEALTH_CHANGED
when the light changed, once across workers and replicas (under the store's
lock, against the stored mark).

Routes call :meth:`current`: the published light, never judged on the
request path while it is fresh. Only a light older than :data:`MAX_AGE` (no
task runs: the CLI, a test client without its lifespan) or forgotten (this
process just recorded a server error) is judged then, in the caller's thread.
A route that shows the band beside the light judges the light again with the
cone it read (:func:`.service.with_cone`): the band is never behind.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from datetime import datetime

from starlette.concurrency import run_in_threadpool

from ..audit.service import ChainWatcher, log_event
from ..audit.store import AUDIT_LOG
from ..storage.errors import StorageError
from ..storage.protocol import Store
from ..timeutil import Clock, iso_z
from .models import HealthMark, HealthStatus
from .service import compute_health
from .store import read_mark, write_mark

log = logging.getLogger(__name__)

POLL = 0.2  # seconds between two looks at the audit log by the background task
PERIOD = 1.0  # the longest the task goes without judging
MAX_AGE = 5.0  # seconds: an older light is judged again before it is answered
SYSTEM_ACTOR = "system"  # who HEALTH_CHANGED is recorded as


class HealthPublisher:
    def __init__(self, *, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self._watcher = ChainWatcher()
        self._lock = threading.Lock()  # one judgement at a time
        self._light: HealthStatus | None = None
        self._version: str | None = None  # the audit log's version it was judged at
        # When it was judged, by the app's clock and by the monotonic one (a
        # clock stepped back, or a test's clock that stands still, cannot keep
        # a light fresh).
        self._judged_at: tuple[datetime, float] | None = None
        self._recorded: str | None = None  # the status this process last saw recorded

    def current(self) -> HealthStatus:
        """The published light; judged now only when it is stale."""
        light, judged = self._light, self._judged_at
        if light is not None and judged is not None:
            age = (self.clock() - judged[0]).total_seconds()
            if 0 <= age < MAX_AGE and time.monotonic() - judged[1] < MAX_AGE:
                return light
        return self.judge()

    def forget(self) -> None:
        """Judge again before the next answer (a signal that is not audited
        changed here: a server error was recorded)."""
        self._judged_at = None

    def judge(self) -> HealthStatus:
        """Judge health now and publish it."""
        with self._lock:
            # The version first: a change racing the judgement leaves an
            # older version beside a newer light, judged again next time.
            version = self.store.log_version(AUDIT_LOG)
            light = compute_health(store=self.store, clock=self.clock, watcher=self._watcher)
            self._light, self._version = light, version
            self._judged_at = (self.clock(), time.monotonic())
            return light

    def record_change(self, light: HealthStatus) -> bool:
        """Audit HEALTH_CHANGED when ``light`` differs from the last light
        recorded (the stored mark, else the first light this process saw).
        No write when nothing changed, nor for a first light with no mark
        stored (a new data dir stays as it is)."""
        status = light.status
        if status == self._recorded:
            return False
        if self._recorded is None:  # this process's first light
            stored = read_mark(self.store)
            if stored is None or stored.status == status:
                self._recorded = status
                return False
        changed = False
        with self.store.transaction() as txn:
            before = read_mark(txn)
            # The same status stored: another worker or replica recorded it.
            if before is None or before.status != status:
                was = before.status if before is not None else self._recorded
                write_mark(txn, HealthMark(status=status, at_utc=iso_z(self.clock())))
                log_event(
                    txn,
                    event="HEALTH_CHANGED",
                    payload={"from": was, "to": status, "reasons": light.reasons},
                    actor=SYSTEM_ACTOR,
                    clock=self.clock,
                )
                changed = True
        self._recorded = status
        return changed

    def _tick(self, judged: float) -> float:
        """One look: judge (and record) when the audit log moved or PERIOD
        passed since ``judged``; returns when it last judged."""
        moved = self.store.log_version(AUDIT_LOG) != self._version
        if not moved and time.monotonic() - judged < PERIOD:
            return judged
        self.record_change(self.judge())
        return time.monotonic()

    async def run(self) -> None:
        """Look every POLL seconds until cancelled."""
        judged = -PERIOD
        failed_at = -60.0
        while True:
            try:
                judged = await run_in_threadpool(self._tick, judged)
            except StorageError as exc:
                # The light already says red for storage it cannot read; a
                # mark it cannot write is said here, at most twice a minute.
                if time.monotonic() - failed_at > 30:
                    failed_at = time.monotonic()
                    log.error("health: cannot record the light: %s", exc)
            await asyncio.sleep(POLL)
