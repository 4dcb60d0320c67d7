"""Webhook rules: add, list, remove, test-send. No web framework here (the
sender of a test delivery is handed in)."""

from __future__ import annotations

import re
import secrets
from urllib.parse import urlsplit

from ..audit.service import log_event
from ..errors import ConflictError, NotFoundError
from ..storage.protocol import Store
from ..timeutil import Clock, iso_z, new_id
from .keys import SigningKey, secret_for
from .models import (
    DEFAULT_EVENTS,
    MAX_WEBHOOKS,
    NAME_PATTERN,
    TEST_EVENT,
    DeliveryInfo,
    Outbox,
    TestResult,
    WebhookCreate,
    WebhookInfo,
    WebhookRecord,
    redact_url,
)
from .sender import Sender
from .store import load_outbox, load_webhooks, read_webhooks, write_outbox, write_webhooks


def _default_name(url: str) -> str:
    host = urlsplit(url).hostname or "webhook"
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", host).strip(".-_")[:64]
    return name if re.match(NAME_PATTERN, name) else "webhook"


def _info(hook: WebhookRecord, outbox: Outbox) -> WebhookInfo:
    state = outbox.cursor(hook)
    delivery = DeliveryInfo(
        pending_attempts=state.attempts, **state.model_dump(exclude={"attempts", "cursor"})
    )
    # Never the salt: with the master key, it makes the secret.
    listed = hook.model_dump(exclude={"salt", "key_id", "start_seq"})
    return WebhookInfo(**listed, delivery=delivery)


def add_webhook(
    *, store: Store, key: SigningKey, spec: WebhookCreate, actor: str, clock: Clock
) -> tuple[WebhookInfo, str]:
    """Register a webhook; returns it and its signing secret (shown once).
    It receives the events audited after its own WEBHOOK_ADD line."""
    events = spec.events if spec.events is not None else list(DEFAULT_EVENTS)
    name = spec.name or _default_name(spec.url)
    now = clock()
    hook_id = new_id(now)
    with store.transaction() as txn:
        hooks = read_webhooks(txn)
        if any(h.name == name for h in hooks):
            raise ConflictError(
                f"a webhook named {name!r} exists; remove it first or pick another --name"
            )
        if len(hooks) >= MAX_WEBHOOKS:
            raise ConflictError(f"there are already {MAX_WEBHOOKS} webhooks; remove one first")
        added = log_event(
            txn,
            event="WEBHOOK_ADD",
            payload={
                "webhook_id": hook_id,
                "name": name,
                "url": redact_url(spec.url),
                "events": events,
                "format": spec.format,
            },
            actor=actor,
            clock=clock,
        )
        hook = WebhookRecord(
            id=hook_id,
            name=name,
            url=spec.url,
            events=events,
            format=spec.format,
            created_at_utc=iso_z(now),
            created_by=actor,
            salt=secrets.token_hex(16),
            key_id=key.key_id,
            start_seq=added.seq or 0,
        )
        write_webhooks(txn, [*hooks, hook])
    return _info(hook, Outbox()), key.secret(hook.id, hook.salt)


def list_webhooks(*, store: Store) -> list[WebhookInfo]:
    hooks = load_webhooks(store)
    outbox = load_outbox(store) if hooks else Outbox()
    return [_info(h, outbox) for h in hooks]


def get_webhook(*, store: Store, name: str) -> WebhookRecord:
    for hook in load_webhooks(store):
        if hook.name == name:
            return hook
    raise NotFoundError(f"no webhook named {name!r}")


def remove_webhook(*, store: Store, name: str, actor: str, clock: Clock) -> None:
    """Remove it and its cursor: events not yet delivered to it are dropped."""
    with store.transaction() as txn:
        hooks = read_webhooks(txn)
        gone = next((h for h in hooks if h.name == name), None)
        if gone is None:
            raise NotFoundError(f"no webhook named {name!r}")
        write_webhooks(txn, [h for h in hooks if h is not gone])
        outbox = load_outbox(txn)
        state = outbox.cursor(gone)
        outbox.cursors.pop(gone.id, None)
        write_outbox(txn, outbox)
        log_event(
            txn,
            event="WEBHOOK_REMOVE",
            payload={"webhook_id": gone.id, "name": name, "undelivered_after_seq": state.last_seq},
            actor=actor,
            clock=clock,
        )


async def send_test(
    *, hook: WebhookRecord, key: SigningKey | None, sender: Sender, actor: str, clock: Clock
) -> TestResult:
    """Send a WEBHOOK_TEST event now (not from the outbox, not retried)."""
    secret_for(hook, key)  # a process with another key refuses (503): not the receiver's fault
    now = clock()
    test_id = f"test-{new_id(now)}"
    record = {
        "event": TEST_EVENT,
        "ts_utc": iso_z(now),
        "actor": actor,
        "payload": {"webhook": hook.name, "message": "a test delivery from valhalla webhook test"},
    }
    attempt = await sender.send(hook, record, event_id=test_id, delivery=test_id, key=key)
    return TestResult(
        name=hook.name,
        ok=attempt.ok,
        status=attempt.status,
        error=attempt.error,
        delivery_id=test_id,
        duration_ms=round(attempt.duration_ms, 1),
    )
