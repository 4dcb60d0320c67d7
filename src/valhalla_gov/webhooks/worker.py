"""The delivery worker: one background task per process, one sender at a time.

Every worker process (and replica) runs a :class:`Dispatcher`. Only the
holder of the sender lease (kept in the store, with an expiry) sends, so
with N workers each event goes out once in the normal case; when the holder
dies, another takes over once the lease runs out. The holder also watches
health and audits HEALTH_CHANGED once per change.

A delivery is: find the webhook's next wanted event in the audit log after
its cursor, POST it, and move the cursor (or schedule a retry) in one store
transaction that first checks nobody else moved it. Crash anywhere and the
event is sent again: at least once, in order per webhook.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
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
from ..storage.protocol import Store
from ..timeutil import Clock, iso_z, parse_iso
from . import store as hook_store
from .keys import SigningKey, load_key
from .metrics import DELIVERIES
from .models import DeliveryState, HealthMark, Lease, Outbox, WebhookRecord
from .sender import Attempt, Sender, redact_url
from .service import build, secret_for

log = logging.getLogger(__name__)

SYSTEM_ACTOR = "system"
# Per webhook and pass: the cursor moves once per pass, so a crash re-sends at
# most this many events to a webhook (with the same delivery ids).
BATCH = 20
# Audit records read past a webhook's cursor looking for an event it wants.
SCAN_LIMIT = 5000

P = ParamSpec("P")
R = TypeVar("R")

HealthProbe = Callable[[], tuple[str, list[str]]]


def _initial(hook: WebhookRecord) -> DeliveryState:
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


def plan_batch(store: Store, hook: WebhookRecord, state: DeliveryState) -> Plan:
    """Up to BATCH wanted events after the webhook's cursor, oldest first."""
    events: list[hook_store.Event] = []
    scanned: hook_store.Event | None = None
    for count, event in enumerate(hook_store.events_after(store, state.last_seq, state.cursor)):
        if wanted(hook, event.record):
            events.append(event)
            if len(events) >= BATCH:
                return Plan(events, None)
        scanned = event
        if count >= SCAN_LIMIT:
            break
    return Plan(events, scanned)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one pass did for one webhook: attempts in order (only the last
    may have failed), and whether the cursor may skip to ``plan.scanned``."""

    hook: WebhookRecord
    expected: DeliveryState
    plan: Plan
    attempts: list[tuple[hook_store.Event, Attempt]]

    @property
    def moved(self) -> bool:
        return bool(self.attempts) or self.plan.scanned is not None


def claim_lease(store: Store, *, holder: str, clock: Clock, seconds: float) -> datetime | None:
    """Take or renew the sender lease; its expiry, or None when another
    process holds a live one."""
    outbox = hook_store.load_outbox(store)
    now = clock()
    if _held_by_other(outbox, holder, now):
        return None  # the common case for non-holders: no lock taken
    with store.transaction() as txn:
        outbox = hook_store.read_outbox(txn)
        now = clock()
        if _held_by_other(outbox, holder, now):
            return None
        until = now + timedelta(seconds=seconds)
        outbox.lease = Lease(holder=holder, expires_at_utc=iso_z(until))
        hook_store.write_outbox(txn, outbox)
        return until


def _held_by_other(outbox: Outbox, holder: str, now: datetime) -> bool:
    lease = outbox.lease
    return lease is not None and lease.holder != holder and parse_iso(lease.expires_at_utc) > now


def release_lease(store: Store, *, holder: str) -> None:
    with store.transaction() as txn:
        outbox = hook_store.read_outbox(txn)
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
        outbox = hook_store.read_outbox(txn)
        now = clock()
        for outcome in outcomes:
            hook = outcome.hook
            current = outbox.cursors.get(hook.id) or _initial(hook)
            expected = outcome.expected
            if hook.id not in live or (current.last_seq, current.attempts) != (
                expected.last_seq,
                expected.attempts,
            ):
                continue  # removed meanwhile, or another sender moved it
            state = current
            for event, attempt in outcome.attempts:
                state, notes, result = apply_attempt(state, hook, event, attempt, now, settings)
                counts[result] += 1
                for name, payload in notes:
                    log_event(txn, event=name, payload=payload, actor=SYSTEM_ACTOR, clock=clock)
            scanned = outcome.plan.scanned
            all_sent = all(a.ok for _, a in outcome.attempts)
            if scanned is not None and all_sent and scanned.seq > state.last_seq:
                state = state.model_copy(update={"last_seq": scanned.seq, "cursor": scanned.after})
            outbox.cursors[hook.id] = state
            saved[hook.id] = state
        if saved:
            hook_store.write_outbox(txn, outbox)
    for result, count in counts.items():
        if count:
            DELIVERIES.labels(result=result).inc(count)
    return saved


def apply_attempt(
    current: DeliveryState,
    hook: WebhookRecord,
    event: hook_store.Event,
    attempt: Attempt,
    now: datetime,
    settings: Settings,
) -> tuple[DeliveryState, list[tuple[str, dict[str, Any]]], str]:
    """The state after one attempt, the audit events it calls for, and its
    result (delivered, failed, gave_up)."""
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
        notes = [("WEBHOOK_RECOVERED", base)] if current.failing else []
        return new, notes, "delivered"
    attempts = current.attempts + 1
    failure = {**base, "attempts": attempts, "status": attempt.status, "error": attempt.error}
    notes = [] if current.failing else [("WEBHOOK_FAILING", failure)]
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
        return new, [*notes, ("WEBHOOK_GAVE_UP", failure)], "gave_up"
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
    return new, notes, "failed"


def _too_old(event: hook_store.Event, now: datetime, settings: Settings) -> bool:
    raw = event.record.get("ts_utc")
    try:
        written = parse_iso(str(raw))
    except ValueError:
        return True  # an undatable event cannot be judged fresh: one try only
    return (now - written).total_seconds() >= settings.webhook_give_up_seconds


def record_health(store: Store, status: str, reasons: list[str], *, clock: Clock) -> bool:
    """Store the status; audit HEALTH_CHANGED when it differs from the last
    one stored (the first look only sets the baseline). Under the store lock,
    so N processes seeing the same change write one event."""
    with store.transaction() as txn:
        outbox = hook_store.read_outbox(txn)
        before = outbox.health
        if before is not None and before.status == status:
            return False
        outbox.health = HealthMark(status=status, at_utc=iso_z(clock()))
        hook_store.write_outbox(txn, outbox)
        if before is None:
            return False
        log_event(
            txn,
            event="HEALTH_CHANGED",
            payload={"from": before.status, "to": status, "reasons": reasons},
            actor=SYSTEM_ACTOR,
            clock=clock,
        )
        return True


class Dispatcher:
    """The per-process delivery loop (see the module docstring)."""

    def __init__(
        self,
        *,
        store: Store,
        settings: Settings,
        clock: Clock,
        health: HealthProbe | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self.health = health
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._sender: Sender | None = None  # made when there is something to send
        self._lease_until: datetime | None = None
        self._next_health = 0.0
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
        cursors. True when a webhook has more waiting than one pass sends."""
        hooks = await self._io(hook_store.load_webhooks, self.store)
        if not hooks:
            return False  # nothing to send: no lease, no writes
        if not await self._hold_lease():
            return False
        await self._watch_health()
        key = await self._io(load_key, self.settings, create=False)
        outbox = await self._io(hook_store.load_outbox, self.store)
        now = self.clock()
        due = []
        for hook in hooks:
            state = outbox.cursors.get(hook.id) or _initial(hook)
            retry_at = state.next_attempt_at_utc
            if retry_at is None or parse_iso(retry_at) <= now:
                due.append(self._send(hook, state, key))
        outcomes = [o for o in await asyncio.gather(*due) if o.moved]
        if outcomes:
            await self._io(
                record_pass, self.store, outcomes, clock=self.clock, settings=self.settings
            )
        return any(
            len(o.plan.events) >= BATCH and all(a.ok for _, a in o.attempts) for o in outcomes
        )

    async def _hold_lease(self) -> bool:
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

    async def _watch_health(self) -> None:
        if self.health is None or time.monotonic() < self._next_health:
            return
        self._next_health = time.monotonic() + self.settings.webhook_health_seconds
        status, reasons = await self._io(self.health)
        await self._io(record_health, self.store, status, reasons, clock=self.clock)

    async def _send(
        self, hook: WebhookRecord, state: DeliveryState, key: SigningKey | None
    ) -> Outcome:
        """Send this webhook's planned events in order until one fails."""
        plan = await self._io(plan_batch, self.store, hook, state)
        sent: list[tuple[hook_store.Event, Attempt]] = []
        for event in plan.events:
            # Renewed before each send: a send fits in half a lease (settings).
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
        complete = len(sent) == len(plan.events)
        return Outcome(hook, state, plan if complete else Plan(plan.events, None), sent)

    async def _deliver(
        self, hook: WebhookRecord, event: hook_store.Event, key: SigningKey | None
    ) -> Attempt:
        try:
            secret = secret_for(hook, key)
        except ServiceUnavailableError as exc:
            return Attempt(False, None, exc.detail, 0.0)
        body, headers = build(hook, event.record, secret)
        return await self.sender().post(hook.url, body, headers)

    def sender(self) -> Sender:
        if self._sender is None:
            self._sender = Sender(
                connect=self.settings.webhook_connect_timeout,
                read=self.settings.webhook_read_timeout,
                max_bytes=self.settings.webhook_max_response_bytes,
            )
        return self._sender


def start_dispatcher(
    *, store: Store, settings: Settings, clock: Clock, health: HealthProbe | None
) -> Dispatcher | None:
    """Started from the app's lifespan in every worker (unless turned off)."""
    if not settings.webhook_worker:
        return None
    dispatcher = Dispatcher(store=store, settings=settings, clock=clock, health=health)
    dispatcher.start()
    return dispatcher


__all__ = ["Dispatcher", "start_dispatcher"]
