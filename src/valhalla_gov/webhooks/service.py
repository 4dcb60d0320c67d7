"""Webhook rules: add, list, remove, test, and what one delivery is. No HTTP
here (the sender is handed in)."""

from __future__ import annotations

import logging
import re
import secrets
from typing import Any
from urllib.parse import urlsplit

from ..audit.service import log_event
from ..errors import ConflictError, NotFoundError, ServiceUnavailableError
from ..storage.protocol import Store
from ..timeutil import Clock, iso_z, new_id
from . import payload
from . import store as hook_store
from .keys import SigningKey
from .models import (
    DEFAULT_EVENTS,
    MAX_WEBHOOKS,
    NAME_PATTERN,
    TEST_EVENT,
    DeliveryInfo,
    DeliveryState,
    TestResult,
    WebhookCreate,
    WebhookInfo,
    WebhookRecord,
)
from .sender import Attempt, Sender, failed
from .urls import redact_url

log = logging.getLogger(__name__)


def _default_name(url: str) -> str:
    host = urlsplit(url).hostname or "webhook"
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", host).strip(".-_")[:64]
    return name if re.match(NAME_PATTERN, name) else "webhook"


def _info(hook: WebhookRecord, state: DeliveryState | None) -> WebhookInfo:
    st = state or DeliveryState(last_seq=hook.start_seq)
    return WebhookInfo(
        id=hook.id,
        name=hook.name,
        url=hook.url,
        events=hook.events,
        format=hook.format,
        created_at_utc=hook.created_at_utc,
        created_by=hook.created_by,
        delivery=DeliveryInfo(
            last_seq=st.last_seq,
            pending_attempts=st.attempts,
            failing=st.failing,
            next_attempt_at_utc=st.next_attempt_at_utc,
            last_attempt_at_utc=st.last_attempt_at_utc,
            last_status=st.last_status,
            last_error=st.last_error,
            last_success_at_utc=st.last_success_at_utc,
            delivered=st.delivered,
            gave_up=st.gave_up,
        ),
    )


def add_webhook(
    *, store: Store, key: SigningKey, spec: WebhookCreate, actor: str, clock: Clock
) -> tuple[WebhookInfo, str]:
    """Register a webhook; returns it and its signing secret (shown once).

    It receives the events audited after its own WEBHOOK_ADD line.
    """
    url = spec.url  # checked by the model, like the events
    events = spec.events if spec.events is not None else list(DEFAULT_EVENTS)
    name = spec.name or _default_name(url)
    now = clock()
    hook_id = new_id(now)
    salt = secrets.token_hex(16)
    with store.transaction() as txn:
        hooks = hook_store.read_webhooks(txn)
        if any(h.name == name for h in hooks):
            raise ConflictError(
                f"a webhook named {name!r} exists; remove it first or pick another --name"
            )
        if len(hooks) >= MAX_WEBHOOKS:
            raise ConflictError(f"there are already {MAX_WEBHOOKS} webhooks; remove one first")
        event = log_event(
            txn,
            event="WEBHOOK_ADD",
            payload={
                "webhook_id": hook_id,
                "name": name,
                "url": redact_url(url),
                "events": events,
                "format": spec.format,
            },
            actor=actor,
            clock=clock,
        )
        hook = WebhookRecord(
            id=hook_id,
            name=name,
            url=url,
            events=events,
            format=spec.format,
            created_at_utc=iso_z(now),
            created_by=actor,
            salt=salt,
            key_id=key.key_id,
            start_seq=event.seq or 0,
        )
        hook_store.write_webhooks(txn, [*hooks, hook])
    return _info(hook, None), key.secret(hook.id, salt)


def list_webhooks(*, store: Store) -> list[WebhookInfo]:
    hooks = hook_store.load_webhooks(store)
    if not hooks:
        return []
    cursors = hook_store.load_outbox(store).cursors
    return [_info(h, cursors.get(h.id)) for h in hooks]


def get_webhook(*, store: Store, name: str) -> WebhookRecord:
    for hook in hook_store.load_webhooks(store):
        if hook.name == name:
            return hook
    raise NotFoundError(f"no webhook named {name!r}")


def remove_webhook(*, store: Store, name: str, actor: str, clock: Clock) -> None:
    """Remove it and its cursor: events not yet delivered to it are dropped."""
    with store.transaction() as txn:
        hooks = hook_store.read_webhooks(txn)
        gone = [h for h in hooks if h.name == name]
        if not gone:
            raise NotFoundError(f"no webhook named {name!r}")
        hook_store.write_webhooks(txn, [h for h in hooks if h.name != name])
        outbox = hook_store.load_outbox(txn)
        state = outbox.cursors.pop(gone[0].id, None)
        hook_store.write_outbox(txn, outbox)
        log_event(
            txn,
            event="WEBHOOK_REMOVE",
            payload={
                "webhook_id": gone[0].id,
                "name": name,
                "undelivered_after_seq": state.last_seq if state else gone[0].start_seq,
            },
            actor=actor,
            clock=clock,
        )


def secret_for(hook: WebhookRecord, key: SigningKey | None) -> str:
    """The hook's secret, or ServiceUnavailableError when the key in use is
    not the one it was created with (a replica with another key must not
    send events receivers would reject, or worse, accept from the wrong key)."""
    if key is None or key.key_id != hook.key_id:
        have = "no webhook key" if key is None else f"key {key.key_id}"
        raise ServiceUnavailableError(
            f"webhook {hook.name!r} was created with master key {hook.key_id} but this "
            f"process has {have}: give every process the same VALHALLA_WEBHOOK_KEY "
            "(or key file), or remove and re-add the webhook"
        )
    return key.secret(hook.id, hook.salt)


async def deliver(
    *,
    sender: Sender,
    hook: WebhookRecord,
    record: dict[str, Any],
    event_id: str,
    delivery: str,
    secret: str,
    clock: Clock,
) -> Attempt:
    """Build, sign and POST one event to one webhook. Never raises: whatever
    fails (the body, the signature, the send, the answer) is this attempt's
    failure, reported like a refused connection."""
    try:
        body = payload.render(record, hook.format, event_id=event_id)
        headers = payload.headers(
            event=str(record.get("event")),
            delivery=delivery,
            secret=secret,
            body=body,
            timestamp=int(clock().timestamp()),
        )
    except Exception as exc:
        log.debug("webhooks: building a delivery for %s raised", hook.name, exc_info=True)
        return failed(f"the delivery could not be built ({type(exc).__name__}: {exc})", hook.url)
    return await sender.post(hook.url, body, headers)


async def send_test(
    *, hook: WebhookRecord, key: SigningKey | None, sender: Sender, actor: str, clock: Clock
) -> TestResult:
    """Send a WEBHOOK_TEST event now (not from the outbox, not retried)."""
    secret = secret_for(hook, key)
    now = clock()
    test_id = f"test-{new_id(now)}"
    record = {
        "event": TEST_EVENT,
        "ts_utc": iso_z(now),
        "actor": actor,
        "payload": {"webhook": hook.name, "message": "a test delivery from valhalla webhook test"},
    }
    attempt = await deliver(
        sender=sender,
        hook=hook,
        record=record,
        event_id=test_id,
        delivery=test_id,
        secret=secret,
        clock=clock,
    )
    return TestResult(
        name=hook.name,
        ok=attempt.ok,
        status=attempt.status,
        error=attempt.error,
        delivery_id=test_id,
        duration_ms=round(attempt.duration_ms, 1),
    )
