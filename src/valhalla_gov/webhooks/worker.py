"""The delivery loop: one background task per process, one sender at a time.

Every worker process (and replica) runs a :class:`Dispatcher`. A pass first
reads what is due (the webhooks, their cursors, the audit log after them);
when nothing is, the pass writes nothing at all. When something is, the
process takes the sender lease (kept in the store, with an expiry) and sends:
only the holder sends, so with N workers each event goes out once in the
normal case; when the holder dies, another takes over once the lease runs out.

A delivery is: find the webhook's next wanted event in the audit log after
its cursor, POST it, and move the cursor (or schedule a retry) in one store
transaction per pass that first checks nobody else moved it. Crash anywhere
and the event is sent again: at least once, in order per webhook. One
webhook's failure, of any kind, is that webhook's failed attempt: the other
webhooks' sends and cursors go on as if it were not there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from starlette.concurrency import run_in_threadpool

from ..audit.service import log_event
from ..settings import Settings
from ..storage.errors import StorageError
from ..storage.protocol import Store, StoreTxn
from ..timeutil import Clock, iso_z, parse_iso
from .keys import SigningKey, load_key
from .metrics import DELIVERIES
from .models import ALL_EVENTS, DeliveryState, Lease, Outbox, WebhookRecord, redact_url
from .sender import Attempt, Sender
from .store import (
    Event,
    events_after,
    load_outbox,
    load_webhooks,
    newest_seq,
    read_webhooks,
    write_outbox,
)

log = logging.getLogger(__name__)

SYSTEM_ACTOR = "system"
# Per webhook and pass: the cursor moves once per pass, so a crash re-sends at
# most this many events to a webhook (with the same delivery ids).
BATCH = 20
# Audit records read past a webhook's cursor looking for an event it wants.
SCAN_LIMIT = 5000
# Records a webhook does not take, passed over in memory before its cursor is
# moved past them without a delivery (so a restart never reads far).
SKIP_WRITE = 1000

Sent = list[tuple[Event, Attempt]]  # one webhook's attempts in a pass; only the last may fail


@dataclass(frozen=True, slots=True)
class Job:
    """One webhook's share of a pass."""

    hook: WebhookRecord
    state: DeliveryState  # its cursor when the pass was planned
    events: list[Event]  # the events it wants, in order
    # The last record read: every wanted one up to it is in ``events``, so
    # once they are delivered the cursor may move past the unwanted rest.
    scanned: Event | None

    def complete(self, sent: Sent) -> bool:
        return len(sent) == len(self.events) and all(attempt.ok for _, attempt in sent)


def wanted(hook: WebhookRecord, record: dict[str, Any]) -> bool:
    event = str(record.get("event"))
    payload = record.get("payload")
    # A webhook's own failure reports are not sent to it: they would only
    # queue up behind the failure they report.
    own_report = (
        event.startswith("WEBHOOK_")
        and isinstance(payload, dict)
        and payload.get("webhook_id") == hook.id
    )
    return (event in hook.events or ALL_EVENTS in hook.events) and not own_report


def backoff(attempts: int, settings: Settings) -> float:
    """Seconds before retry number ``attempts`` (1-based): doubling, capped."""
    exponent = min(attempts - 1, 60)
    return float(
        min(settings.webhook_retry_base_seconds * 2**exponent, settings.webhook_retry_max_seconds)
    )


def _passed(stamp: str | None, now: datetime) -> bool:
    """Whether the time ``stamp`` is not after ``now``. An unreadable one has
    passed: a time edited into nonsense must hold nothing up for ever."""
    if stamp is None:
        return True
    try:
        return parse_iso(stamp) <= now
    except ValueError:
        return True


def _held_by_other(lease: Lease | None, holder: str, now: datetime) -> bool:
    return lease is not None and lease.holder != holder and not _passed(lease.expires_at_utc, now)


class Dispatcher:
    """The per-process delivery loop (see the module docstring)."""

    def __init__(self, *, store: Store, settings: Settings, clock: Clock) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._sender: Sender | None = None  # made when there is something to send
        self._lease_until: datetime | None = None
        # Per webhook id, the last pass's plan when it found nothing to send:
        # records up to its ``scanned`` are ones the webhook does not take, so
        # the next pass reads on from there (in memory only: no write).
        self._skipped: dict[str, Job] = {}
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="valhalla-webhooks")

    async def run(self) -> None:
        last_problem: str | None = None
        while not self._stop.is_set():
            more = False
            try:
                more = await self.tick()
                last_problem = None
            except StorageError as exc:
                # Logged once per distinct problem, not once per poll.
                if str(exc) != last_problem:
                    log.error("webhooks: storage error, deliveries wait for it: %s", exc)
                last_problem = str(exc)
            except Exception:
                log.exception("webhooks: unexpected error in the delivery loop")
            if more:
                continue  # a backlog: the next pass at once
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.settings.webhook_poll_seconds)

    async def close(self) -> None:
        """Stop: an in-flight send may finish within its deadline, then the
        lease is handed back so another process takes over at once."""
        self._stop.set()
        if self._task is not None:
            deadline = self.settings.webhook_connect_timeout + self.settings.webhook_read_timeout
            try:
                await asyncio.wait_for(self._task, deadline + 1)
            except TimeoutError:
                log.warning("webhooks: the delivery task did not stop in time; cancelled")
        if self._lease_until is not None:
            try:
                await run_in_threadpool(self._release_lease)
            except StorageError as exc:
                log.warning("webhooks: could not release the sender lease: %s", exc)
            self._lease_until = None
        if self._sender is not None:
            await self._sender.aclose()
            self._sender = None

    async def tick(self) -> bool:
        """One pass: every due webhook's next events, sent concurrently across
        webhooks and in order within one, then one transaction for all the
        cursors. True when a webhook has more waiting than one pass sends."""
        hooks = await run_in_threadpool(load_webhooks, self.store)
        if not hooks:
            return False
        outbox = await run_in_threadpool(load_outbox, self.store)
        now = self.clock()
        if _held_by_other(outbox.lease, self.holder, now):
            return False  # the holder sends; the others only look
        newest = await run_in_threadpool(newest_seq, self.store)
        planned = await run_in_threadpool(self._plan, hooks, outbox, newest, now)
        if not planned or not await self._hold_lease():
            return False  # an idle pass writes nothing, not even the lease
        # Planned before the lease was ours: a cursor another sender moved
        # meanwhile is planned again next pass, not sent twice now.
        outbox = await run_in_threadpool(load_outbox, self.store)
        jobs = [job for job in planned if outbox.cursor(job.hook) == job.state]
        key = await run_in_threadpool(load_key, self.settings, create=False)
        if self._sender is None:
            self._sender = Sender(self.settings, self.clock)
        sent = await asyncio.gather(*(self._send(job, key, self._sender) for job in jobs))
        # Nothing sent moves no cursor, unless the job only passes records over.
        done = [(job, s) for job, s in zip(jobs, sent, strict=True) if s or not job.events]
        if done:
            await run_in_threadpool(self._record, done)
        full = any(len(job.events) >= BATCH and job.complete(s) for job, s in done)
        return full or len(jobs) < len(planned)

    def _plan(
        self, hooks: list[WebhookRecord], outbox: Outbox, newest: int, now: datetime
    ) -> list[Job]:
        """Every due webhook with something to send (reads only).

        Records a webhook does not take are no reason to write: how far they
        go is kept in ``_skipped``, and the cursor moves past them with the
        webhook's next delivery, or once SKIP_WRITE of them have piled up."""
        for gone in self._skipped.keys() - {h.id for h in hooks}:
            del self._skipped[gone]
        jobs = []
        for hook in hooks:
            state = outbox.cursor(hook)
            if not _passed(state.next_attempt_at_utc, now):
                continue  # a retry, not due yet
            known, resume = self._skipped.get(hook.id), None
            if known is not None and (known.hook, known.state) == (hook, state):
                resume = known.scanned
            if (resume.seq if resume else state.last_seq) >= newest:
                continue  # nothing new since it was last read
            job = self._read(hook, state, resume)
            if job.events or (job.scanned and job.scanned.seq - state.last_seq >= SKIP_WRITE):
                jobs.append(job)
                self._skipped.pop(hook.id, None)
            elif job.scanned is not None:
                self._skipped[hook.id] = job
        return jobs

    def _read(self, hook: WebhookRecord, state: DeliveryState, resume: Event | None) -> Job:
        """Up to BATCH wanted events after the cursor (after ``resume`` when
        the records up to it are known to be unwanted)."""
        events: list[Event] = []
        scanned = resume
        after = (resume.seq, resume.after) if resume else (state.last_seq, state.cursor)
        for count, event in enumerate(events_after(self.store, *after)):
            if wanted(hook, event.record):
                events.append(event)
            scanned = event
            if len(events) >= BATCH or count >= SCAN_LIMIT:
                break
        return Job(hook, state, events, scanned)

    async def _hold_lease(self) -> bool:
        """Ours until ``_lease_until``; renewed only when less than half of it
        is left (a send fits in that half: settings), so while sending it is
        written once per half lease, and while idle never."""
        half = timedelta(seconds=self.settings.webhook_lease_seconds / 2)
        if self._lease_until is not None and self._lease_until - self.clock() > half:
            return True
        self._lease_until = await run_in_threadpool(self._claim_lease)
        return self._lease_until is not None

    def _claim_lease(self) -> datetime | None:
        """Take or renew the lease: its expiry, or None while another holds it.
        Looked at first without a transaction: on PostgreSQL every transaction
        wakes every process, and a sender racing the holder must not."""
        if _held_by_other(load_outbox(self.store).lease, self.holder, self.clock()):
            return None
        with self.store.transaction() as txn:
            outbox = load_outbox(txn)
            now = self.clock()
            if _held_by_other(outbox.lease, self.holder, now):
                return None
            until = now + timedelta(seconds=self.settings.webhook_lease_seconds)
            outbox.lease = Lease(holder=self.holder, expires_at_utc=iso_z(until))
            write_outbox(txn, outbox)
            return until

    def _release_lease(self) -> None:
        with self.store.transaction() as txn:
            outbox = load_outbox(txn)
            if outbox.lease is not None and outbox.lease.holder == self.holder:
                outbox.lease = None
                write_outbox(txn, outbox)

    async def _send(self, job: Job, key: SigningKey | None, sender: Sender) -> Sent:
        """This webhook's planned events, in order, until one fails."""
        hook = job.hook
        sent: Sent = []
        try:
            for event in job.events:
                # Renewed before each send when due: a send fits in half a lease.
                if self._stop.is_set() or not await self._hold_lease():
                    break
                attempt = await sender.send(
                    hook,
                    event.record,
                    event_id=str(event.seq),
                    delivery=f"{hook.id}-{event.seq}",
                    key=key,
                )
                sent.append((event, attempt))
                if not attempt.ok:
                    log.warning(
                        "webhooks: delivery of seq %d to %s (%s) failed: %s",
                        event.seq,
                        hook.name,
                        redact_url(hook.url),
                        attempt.error,
                    )
                    break
        except Exception as exc:  # the lease's storage: what was sent is still recorded
            log.warning("webhooks: sending to %s stopped: %s", hook.name, exc)
        return sent

    def _record(self, done: list[tuple[Job, Sent]]) -> None:
        """Move every cursor of a pass in one transaction (the sender's writes
        do not grow with the webhooks or the events: the service's writes come
        first), auditing the failing / recovered / gave-up transitions. A
        cursor someone else moved meanwhile is left to them: its events went
        out twice at worst (at least once)."""
        counts: Counter[str] = Counter()
        with self.store.transaction() as txn:
            live = {h.id for h in read_webhooks(txn)}
            outbox = load_outbox(txn)
            now = self.clock()
            changed = False
            for job, sent in done:
                state = outbox.cursor(job.hook)
                if job.hook.id not in live or state != job.state:
                    continue  # removed meanwhile, or another sender moved it
                for event, attempt in sent:
                    state, result = self._apply(txn, state, job.hook, event, attempt, now)
                    counts[result] += 1
                scanned = job.scanned
                if job.complete(sent) and scanned is not None and scanned.seq > state.last_seq:
                    state = state.model_copy(
                        update={"last_seq": scanned.seq, "cursor": scanned.after}
                    )
                outbox.cursors[job.hook.id] = state
                changed = True
            if changed:
                write_outbox(txn, outbox)
        for result, count in counts.items():
            DELIVERIES.labels(result=result).inc(count)

    def _apply(
        self,
        txn: StoreTxn,
        state: DeliveryState,
        hook: WebhookRecord,
        event: Event,
        attempt: Attempt,
        now: datetime,
    ) -> tuple[DeliveryState, str]:
        """The state after one attempt, and its result: delivered, failed or
        gave_up. Audits the first failure of an outage, the recovery, and
        each event given up."""
        about: dict[str, Any] = {
            "webhook_id": hook.id,
            "name": hook.name,
            "seq": event.seq,
            "event": event.record.get("event"),
        }
        changes: dict[str, Any] = {
            "failing": not attempt.ok,
            "last_attempt_at_utc": iso_z(now),
            "last_status": attempt.status,
            "last_error": attempt.error,
        }
        # Delivered or given up: the cursor moves past the event.
        past = {
            "last_seq": event.seq,
            "cursor": event.after,
            "attempts": 0,
            "next_attempt_at_utc": None,
        }
        attempts = state.attempts + 1
        if attempt.ok:
            result = "delivered"
            changes |= past | {"last_success_at_utc": iso_z(now), "delivered": state.delivered + 1}
        elif self._too_old(event, now):
            result = "gave_up"
            changes |= past | {"gave_up": state.gave_up + 1}
        else:
            result = "failed"
            retry_at = now + timedelta(seconds=backoff(attempts, self.settings))
            # The cursor stops just before the event being retried.
            changes |= {
                "last_seq": event.seq - 1,
                "cursor": event.before,
                "attempts": attempts,
                "next_attempt_at_utc": iso_z(retry_at),
            }
        if not attempt.ok:
            about |= {"attempts": attempts, "status": attempt.status, "error": attempt.error}
        if attempt.ok and state.failing:
            log_event(
                txn, event="WEBHOOK_RECOVERED", payload=about, actor=SYSTEM_ACTOR, clock=self.clock
            )
        if not attempt.ok and not state.failing:
            log_event(
                txn, event="WEBHOOK_FAILING", payload=about, actor=SYSTEM_ACTOR, clock=self.clock
            )
        if result == "gave_up":
            log_event(
                txn, event="WEBHOOK_GAVE_UP", payload=about, actor=SYSTEM_ACTOR, clock=self.clock
            )
        return state.model_copy(update=changes), result

    def _too_old(self, event: Event, now: datetime) -> bool:
        """Written longer ago than the retry period (an undatable event cannot
        be judged fresh: one try only)."""
        try:
            written = parse_iso(str(event.record.get("ts_utc")))
        except ValueError:
            return True
        return (now - written).total_seconds() >= self.settings.webhook_give_up_seconds
