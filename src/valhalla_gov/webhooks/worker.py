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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any, ParamSpec, TypeVar

import anyio.to_thread

from ..audit.service import log_event
from ..errors import ServiceUnavailableError
from ..settings import Settings
from ..storage.errors import StorageError
from ..storage.protocol import Store, StoreTxn
from ..timeutil import Clock, iso_z, parse_iso
from . import payload, service
from . import store as hook_store
from .keys import SigningKey, load_key
from .metrics import DELIVERIES
from .models import DeliveryState, Lease, Outbox, WebhookRecord
from .sender import Attempt, Sender, failed
from .urls import redact_url

log = logging.getLogger(__name__)

SYSTEM_ACTOR = "system"
# Per webhook and pass: the cursor moves once per pass, so a crash re-sends at
# most this many events to a webhook (with the same delivery ids).
BATCH = 20
# Audit records read past a webhook's cursor looking for an event it wants.
SCAN_LIMIT = 5000
# Records a webhook does not take, passed over before its cursor is moved
# past them without a delivery (see plan_pass).
SKIP_WRITE = 1000

P = ParamSpec("P")
R = TypeVar("R")


def initial_state(hook: WebhookRecord) -> DeliveryState:
    return DeliveryState(last_seq=hook.start_seq)


def wanted(hook: WebhookRecord, record: dict[str, object]) -> bool:
    event = str(record.get("event"))
    if not hook.wants(event):
        return False
    payload = record.get("payload")
    # A webhook's own failure reports are not sent to it: they would only
    # queue up behind the failure they report.
    return not (
        event.startswith("WEBHOOK_")
        and isinstance(payload, dict)
        and payload.get("webhook_id") == hook.id
    )


@dataclass(frozen=True, slots=True)
class Plan:
    """What one pass may send to one webhook, in order."""

    events: list[hook_store.Event]
    # The last event read when every wanted one in reach is in ``events``:
    # once they are delivered the cursor may move past the unwanted rest.
    scanned: hook_store.Event | None


def plan_batch(
    store: Store, hook: WebhookRecord, state: DeliveryState, resume: hook_store.Event | None = None
) -> Plan:
    """Up to BATCH wanted events after the webhook's cursor, oldest first;
    from ``resume`` on when the records up to it are known to be unwanted."""
    events: list[hook_store.Event] = []
    scanned: hook_store.Event | None = None
    start = (state.last_seq, state.cursor) if resume is None else (resume.seq, resume.after)
    for count, event in enumerate(hook_store.events_after(store, *start)):
        if wanted(hook, event.record):
            events.append(event)
            if len(events) >= BATCH:
                return Plan(events, None)
        scanned = event
        if count >= SCAN_LIMIT:
            break
    return Plan(events, scanned)


@dataclass(frozen=True, slots=True)
class Job:
    """One webhook's share of a pass: where it stood, and what to send."""

    hook: WebhookRecord
    state: DeliveryState
    plan: Plan


@dataclass(frozen=True, slots=True)
class Skipped:
    """In one process's memory: every record after ``state``'s cursor up to
    ``last`` is one ``hook`` does not take (true while hook and state are)."""

    hook: WebhookRecord
    state: DeliveryState
    last: hook_store.Event


def _due(state: DeliveryState, now: datetime) -> bool:
    if state.next_attempt_at_utc is None:
        return True
    try:
        return parse_iso(state.next_attempt_at_utc) <= now
    except ValueError:
        return True  # a retry time edited into nonsense: retry now, not never


def _retry_due(state: DeliveryState, now: datetime) -> bool:
    return state.next_attempt_at_utc is not None and _due(state, now)


def plan_pass(
    store: Store,
    hooks: list[WebhookRecord],
    outbox: Outbox,
    now: datetime,
    skipped: dict[str, Skipped],
) -> list[Job]:
    """Every due webhook with something to send (reads only). An empty list
    is an idle pass, which writes nothing, not even the lease.

    Records a webhook does not take are not a reason to write: how far they
    go is kept in ``skipped`` (updated here), so the next pass reads only
    newer records, and the cursor moves past them with the webhook's next
    delivery, or once SKIP_WRITE of them have piled up (so a restart never
    reads far)."""
    for gone in skipped.keys() - {h.id for h in hooks}:
        del skipped[gone]
    jobs = []
    for hook in hooks:
        state = outbox.cursors.get(hook.id) or initial_state(hook)
        if not _due(state, now):
            continue
        known = skipped.get(hook.id)
        resume = (
            known.last if known is not None and (known.hook, known.state) == (hook, state) else None
        )
        plan = plan_batch(store, hook, state, resume)
        if resume is not None and plan.events == [] and plan.scanned is None:
            plan = Plan([], resume)  # nothing newer: still as far as before
        if plan.events or (
            plan.scanned is not None and plan.scanned.seq - state.last_seq >= SKIP_WRITE
        ):
            jobs.append(Job(hook, state, plan))
            skipped.pop(hook.id, None)
        elif plan.scanned is not None:
            skipped[hook.id] = Skipped(hook, state, plan.scanned)
    return jobs


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one pass did for one webhook: attempts in order (only the last
    may have failed), and whether the cursor may skip to ``plan.scanned``."""

    job: Job
    attempts: list[tuple[hook_store.Event, Attempt]]
    complete: bool  # every planned event was attempted and delivered

    @property
    def moved(self) -> bool:
        return bool(self.attempts) or (self.complete and self.job.plan.scanned is not None)


def claim_lease(store: Store, *, holder: str, clock: Clock, seconds: float) -> datetime | None:
    """Take or renew the sender lease; its expiry, or None when another
    process holds a live one."""
    outbox = hook_store.load_outbox(store)
    now = clock()
    if held_by_other(outbox, holder, now):
        return None  # the common case for non-holders: no lock taken
    with store.transaction() as txn:
        outbox = hook_store.load_outbox(txn)
        now = clock()
        if held_by_other(outbox, holder, now):
            return None
        until = now + timedelta(seconds=seconds)
        outbox.lease = Lease(holder=holder, expires_at_utc=iso_z(until))
        hook_store.write_outbox(txn, outbox)
        return until


def held_by_other(outbox: Outbox, holder: str, now: datetime) -> bool:
    lease = outbox.lease
    if lease is None or lease.holder == holder:
        return False
    try:
        return parse_iso(lease.expires_at_utc) > now
    except ValueError:
        return False  # an unreadable expiry holds nobody off


def release_lease(store: Store, *, holder: str) -> None:
    lease = hook_store.load_outbox(store).lease
    if lease is None or lease.holder != holder:
        return  # not ours (any more): nothing to write
    with store.transaction() as txn:
        outbox = hook_store.load_outbox(txn)
        if outbox.lease is not None and outbox.lease.holder == holder:
            outbox.lease = None
            hook_store.write_outbox(txn, outbox)


def backoff(attempts: int, settings: Settings) -> float:
    """Seconds before retry number ``attempts`` (1-based): doubling, capped."""
    exponent = min(attempts - 1, 60)
    return float(
        min(settings.webhook_retry_base_seconds * 2**exponent, settings.webhook_retry_max_seconds)
    )


def record_pass(
    store: Store, outcomes: list[Outcome], *, clock: Clock, settings: Settings
) -> dict[str, DeliveryState]:
    """Move every webhook's cursor after a pass, in one transaction (so the
    sender's writes do not grow with the webhooks or the events: the writes
    of the service come first). Audits the failing / recovered / gave-up
    transitions. A webhook whose cursor someone else moved meanwhile is left
    to them; its events were sent twice at worst (at least once)."""
    counts = {"delivered": 0, "failed": 0, "gave_up": 0}
    saved: dict[str, DeliveryState] = {}
    with store.transaction() as txn:
        live = {h.id for h in hook_store.read_webhooks(txn)}
        outbox = hook_store.load_outbox(txn)
        now = clock()
        for outcome in outcomes:
            hook = outcome.job.hook
            current = outbox.cursors.get(hook.id) or initial_state(hook)
            expected = outcome.job.state
            if hook.id not in live or (current.last_seq, current.attempts) != (
                expected.last_seq,
                expected.attempts,
            ):
                continue  # removed meanwhile, or another sender moved it
            state = current
            for event, attempt in outcome.attempts:
                step = apply_attempt(state, hook, event, attempt, now, settings)
                state = step.state
                counts[step.result] += 1
                _audit(txn, step, clock)
            scanned = outcome.job.plan.scanned
            if outcome.complete and scanned is not None and scanned.seq > state.last_seq:
                state = state.model_copy(update={"last_seq": scanned.seq, "cursor": scanned.after})
            outbox.cursors[hook.id] = state
            saved[hook.id] = state
        if saved:
            hook_store.write_outbox(txn, outbox)
    for result, count in counts.items():
        if count:
            DELIVERIES.labels(result=result).inc(count)
    return saved


@dataclass(frozen=True, slots=True)
class Step:
    """One attempt applied to a webhook's delivery state."""

    state: DeliveryState
    result: str  # delivered, failed or gave_up
    about: dict[str, Any]  # the payload of the audit events it calls for
    recovered: bool = False  # the first delivery after failures
    started_failing: bool = False  # the first failure after deliveries


def _audit(txn: StoreTxn, step: Step, clock: Clock) -> None:
    # Each event name written out where it is audited (tests/test_event_names.py
    # checks every one against the known list).
    if step.recovered:
        log_event(
            txn, event="WEBHOOK_RECOVERED", payload=step.about, actor=SYSTEM_ACTOR, clock=clock
        )
    if step.started_failing:
        log_event(txn, event="WEBHOOK_FAILING", payload=step.about, actor=SYSTEM_ACTOR, clock=clock)
    if step.result == "gave_up":
        log_event(txn, event="WEBHOOK_GAVE_UP", payload=step.about, actor=SYSTEM_ACTOR, clock=clock)


def apply_attempt(
    current: DeliveryState,
    hook: WebhookRecord,
    event: hook_store.Event,
    attempt: Attempt,
    now: datetime,
    settings: Settings,
) -> Step:
    """The state after one attempt, and what it calls for."""
    base: dict[str, Any] = {
        "webhook_id": hook.id,
        "name": hook.name,
        "seq": event.seq,
        "event": event.record.get("event"),
    }
    common = {
        "last_attempt_at_utc": iso_z(now),
        "last_status": attempt.status,
        "last_error": attempt.error,
    }
    if attempt.ok:
        new = current.model_copy(
            update={
                **common,
                "last_seq": event.seq,
                "cursor": event.after,
                "attempts": 0,
                "failing": False,
                "next_attempt_at_utc": None,
                "last_success_at_utc": iso_z(now),
                "delivered": current.delivered + 1,
            }
        )
        return Step(new, "delivered", base, recovered=current.failing)
    attempts = current.attempts + 1
    failure = {**base, "attempts": attempts, "status": attempt.status, "error": attempt.error}
    if _too_old(event, now, settings):
        new = current.model_copy(
            update={
                **common,
                "last_seq": event.seq,
                "cursor": event.after,
                "attempts": 0,
                "failing": True,
                "next_attempt_at_utc": None,
                "gave_up": current.gave_up + 1,
            }
        )
        return Step(new, "gave_up", failure, started_failing=not current.failing)
    retry_at = now + timedelta(seconds=backoff(attempts, settings))
    new = current.model_copy(
        update={
            **common,
            # The cursor stops just before the event being retried.
            "last_seq": event.seq - 1,
            "cursor": event.before,
            "attempts": attempts,
            "failing": True,
            "next_attempt_at_utc": iso_z(retry_at),
        }
    )
    return Step(new, "failed", failure, started_failing=not current.failing)


def _too_old(event: hook_store.Event, now: datetime, settings: Settings) -> bool:
    raw = event.record.get("ts_utc")
    try:
        written = parse_iso(str(raw))
    except ValueError:
        return True  # an undatable event cannot be judged fresh: one try only
    return (now - written).total_seconds() >= settings.webhook_give_up_seconds


class Dispatcher:
    """The per-process delivery loop (see the module docstring)."""

    def __init__(self, *, store: Store, settings: Settings, clock: Clock) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._sender: Sender | None = None  # made when there is something to send
        self._lease_until: datetime | None = None
        # What this process knows from earlier passes (memory only): the
        # records each webhook does not take, and what the last idle pass saw.
        self._skipped: dict[str, Skipped] = {}
        self._quiet: tuple[int, dict[str, DeliveryState], list[WebhookRecord]] | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _io(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        # Store calls fsync (JSON) or go over the network (SQL): off the loop.
        return await anyio.to_thread.run_sync(partial(fn, *args, **kwargs))

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
            try:
                deadline = (
                    self.settings.webhook_connect_timeout + self.settings.webhook_read_timeout
                )
                await asyncio.wait_for(self._task, deadline + 1)
            except TimeoutError:
                log.warning("webhooks: the delivery task did not stop in time; cancelled")
        if self._lease_until is not None:
            try:
                await self._io(release_lease, self.store, holder=self.holder)
            except StorageError as exc:
                log.warning("webhooks: could not release the sender lease: %s", exc)
            self._lease_until = None
        if self._sender is not None:
            await self._sender.aclose()
            self._sender = None

    async def tick(self) -> bool:
        """One pass: every due webhook's next events, sent concurrently across
        webhooks and in order within one, then one transaction for all the
        cursors. True when a webhook has more waiting than one pass sends.

        Reads come first: a pass with nothing to send writes nothing."""
        hooks = await self._io(hook_store.load_webhooks, self.store)
        if not hooks:
            return False
        outbox = await self._io(hook_store.load_outbox, self.store)
        now = self.clock()
        if held_by_other(outbox, self.holder, now):
            return False  # the holder sends; the others only look
        newest = await self._io(hook_store.newest_seq, self.store)
        quiet = (newest, outbox.cursors, hooks)
        if quiet == self._quiet and not any(_retry_due(s, now) for s in outbox.cursors.values()):
            return False  # nothing new since the last idle pass, and no retry due
        jobs = await self._io(plan_pass, self.store, hooks, outbox, now, self._skipped)
        if not jobs:
            self._quiet = quiet
            return False
        self._quiet = None
        if not await self._hold_lease():
            return False
        # Planned before the lease was ours: a cursor another sender moved
        # meanwhile is planned again next pass, not sent twice now.
        now_outbox = await self._io(hook_store.load_outbox, self.store)
        current = [
            job
            for job in jobs
            if (now_outbox.cursors.get(job.hook.id) or initial_state(job.hook)) == job.state
        ]
        key = await self._io(load_key, self.settings, create=False)
        results = await asyncio.gather(
            *(self._send(job, key) for job in current), return_exceptions=True
        )
        outcomes = []
        for job, result in zip(current, results, strict=True):
            if isinstance(result, Outcome):
                if result.moved:
                    outcomes.append(result)
            else:  # _send catches what a send raises; this is a last line
                log.error("webhooks: the pass for %s failed: %r", job.hook.name, result)
        if outcomes:
            await self._io(
                record_pass, self.store, outcomes, clock=self.clock, settings=self.settings
            )
        full = any(len(o.job.plan.events) >= BATCH and o.complete for o in outcomes)
        return full or len(current) < len(jobs)

    async def _hold_lease(self) -> bool:
        """Ours until ``_lease_until``; renewed only when due, i.e. when less
        than half of it is left (a send fits in that half: settings), so while
        sending it is written once per half lease, and while idle never."""
        now = self.clock()
        half = timedelta(seconds=self.settings.webhook_lease_seconds / 2)
        if self._lease_until is not None and self._lease_until - now > half:
            return True
        self._lease_until = await self._io(
            claim_lease,
            self.store,
            holder=self.holder,
            clock=self.clock,
            seconds=self.settings.webhook_lease_seconds,
        )
        return self._lease_until is not None

    async def _send(self, job: Job, key: SigningKey | None) -> Outcome:
        """Send this webhook's planned events in order until one fails."""
        hook = job.hook
        sent: list[tuple[hook_store.Event, Attempt]] = []
        try:
            for event in job.plan.events:
                # Renewed before each send when due: a send fits in half a lease.
                if self._stop.is_set() or not await self._hold_lease():
                    break
                attempt = await self._deliver(hook, event, key)
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
        except Exception as exc:
            log.warning("webhooks: sending to %s stopped: %s", hook.name, exc)
        complete = len(sent) == len(job.plan.events) and all(a.ok for _, a in sent)
        return Outcome(job, sent, complete)

    async def _deliver(
        self, hook: WebhookRecord, event: hook_store.Event, key: SigningKey | None
    ) -> Attempt:
        """Never raises: any failure is this webhook's failed attempt."""
        try:
            secret = service.secret_for(hook, key)
            sender = self.sender()
        except ServiceUnavailableError as exc:
            return failed(exc.detail, hook.url)
        except Exception as exc:
            return failed(
                f"the delivery could not be prepared ({type(exc).__name__}: {exc})", hook.url
            )
        return await service.deliver(
            sender=sender,
            hook=hook,
            record=event.record,
            event_id=str(event.seq),
            delivery=payload.delivery_id(hook.id, event.seq),
            secret=secret,
            clock=self.clock,
        )

    def sender(self) -> Sender:
        if self._sender is None:
            self._sender = Sender.for_settings(self.settings)
        return self._sender


def start_dispatcher(*, store: Store, settings: Settings, clock: Clock) -> Dispatcher | None:
    """Started from the app's lifespan in every worker (unless turned off)."""
    if not settings.webhook_worker:
        return None
    dispatcher = Dispatcher(store=store, settings=settings, clock=clock)
    dispatcher.start()
    return dispatcher
