"""The published health light: judged by this process, read by its routes.

One :class:`HealthPublisher` per app. A background task (:meth:`run`, while
the server serves) judges health every :data:`PERIOD` seconds and records
HEALTH_CHANGED when the light changed (once, across workers and replicas:
under the store's lock, against the stored mark). Routes call
:meth:`current`: the last light, judged again first when the audit log has
moved since (every state change is audited, so a band just set is never
answered with the light from before it), when this process recorded a server
error (:meth:`forget`), or when it is older than :data:`MAX_AGE` by the
app's clock. Judging reads the store: call :meth:`current` from a worker
thread.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from datetime import datetime, timedelta

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

PERIOD = 1.0  # seconds between two judgements by the background task
MAX_AGE = timedelta(seconds=5)  # an older light is judged again before it is answered
SYSTEM_ACTOR = "system"  # who HEALTH_CHANGED is recorded as


class HealthPublisher:
    def __init__(self, *, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self._watcher = ChainWatcher()
        self._lock = threading.Lock()  # one judgement at a time
        self._light: HealthStatus | None = None
        self._version: str | None = None  # the audit log's version it was judged at
        self._judged_at: datetime | None = None  # by the app's clock
        self._recorded: str | None = None  # the status this process last saw recorded

    def current(self) -> HealthStatus:
        """The light, judged again first if the audit log moved or it aged."""
        version = self.store.log_version(AUDIT_LOG)
        light = self._light
        if light is not None and self._unchanged(version):
            return light
        return self.judge(version)

    def forget(self) -> None:
        """Judge again before the next answer (a signal that is not audited
        changed here: a server error was recorded)."""
        self._version = None

    def _unchanged(self, version: str) -> bool:
        """The light was judged at this audit version, and recently (a clock
        stepped back makes it stale too)."""
        judged = self._judged_at
        if version != self._version or judged is None:
            return False
        return timedelta(0) <= self.clock() - judged < MAX_AGE

    def judge(self, version: str | None = None) -> HealthStatus:
        """Judge health now and publish it. ``version``: the audit log's
        version read before (read here otherwise)."""
        with self._lock:
            light = self._light
            # Another thread may have judged it while this one waited.
            if light is not None and version is not None and self._unchanged(version):
                return light
            # The version first: a change racing the judgement leaves an
            # older version beside a newer light, judged again next time.
            version = version or self.store.log_version(AUDIT_LOG)
            light = compute_health(store=self.store, clock=self.clock, watcher=self._watcher)
            self._light, self._version, self._judged_at = light, version, self.clock()
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

    def _tick(self) -> None:
        self.record_change(self.judge())

    async def run(self) -> None:
        """Judge and record every PERIOD seconds until cancelled."""
        failed_at = 0.0
        while True:
            try:
                await run_in_threadpool(self._tick)
            except StorageError as exc:
                # The light already says red for storage it cannot read; a
                # mark it cannot write is said here, at most twice a minute.
                if time.monotonic() - failed_at > 30:
                    failed_at = time.monotonic()
                    log.error("health: cannot record the light: %s", exc)
            await asyncio.sleep(PERIOD)
