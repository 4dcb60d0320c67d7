"""Webhook persistence: two documents, and the audit log read as the outbox.

- ``webhooks`` (webhooks.json): ``{"webhooks": [WebhookRecord]}``, the
  configuration; no secrets (see keys.py).
- ``webhook_outbox`` (webhook_outbox.json): the :class:`Outbox`, the sender
  lease and one cursor per webhook.

The events themselves are the audit log: a delivery cursor is an audit
``seq`` (the truth) plus the log cursor just after it (a hint, checked on
use, since log cursors change when data moves between backends).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import RootModel

from ..audit.store import AUDIT_LOG
from ..storage.errors import InvalidCursorError
from ..storage.parsing import parse_stored
from ..storage.protocol import Document, LogEntry, Reader, Schema, Store, StoreTxn
from .models import Outbox, WebhookRecord

WEBHOOKS = Document("webhooks", file="webhooks.json", envelope="webhooks")
OUTBOX = Document("webhook_outbox", file="webhook_outbox.json")

SCHEMA = Schema(documents=(WEBHOOKS, OUTBOX))


class _Webhooks(RootModel[list[WebhookRecord]]):
    pass


def _parse_webhooks(raw: Any) -> list[WebhookRecord]:
    if raw is None:
        return []
    return parse_stored(_Webhooks, raw, where=WEBHOOKS.file, what="webhook list").root


def load_webhooks(store: Store) -> list[WebhookRecord]:
    """Cached while the document is unchanged: the sender looks every poll."""
    return store.read_cached(WEBHOOKS, _parse_webhooks)


def read_webhooks(txn: StoreTxn) -> list[WebhookRecord]:
    return _parse_webhooks(txn.read_document(WEBHOOKS))


def write_webhooks(txn: StoreTxn, hooks: list[WebhookRecord]) -> None:
    txn.write_document(WEBHOOKS, [h.model_dump() for h in hooks])


def load_outbox(reader: Reader) -> Outbox:
    """In a transaction (to write it back) or outside one."""
    raw = reader.read_document(OUTBOX)
    return (
        Outbox()
        if raw is None
        else parse_stored(Outbox, raw, where=OUTBOX.file, what="webhook outbox")
    )


def write_outbox(txn: StoreTxn, outbox: Outbox) -> None:
    txn.write_document(OUTBOX, outbox.model_dump())


def newest_seq(store: Store) -> int:
    for entry in store.scan_log(AUDIT_LOG, take=1):
        seq = entry.record.get("seq")
        return seq if isinstance(seq, int) else 0
    return 0


@dataclass(frozen=True, slots=True)
class Event:
    """One audit record after a webhook's cursor."""

    seq: int
    record: dict[str, Any]
    before: str | None  # the log boundary just before this record
    after: str  # and just after it


def events_after(store: Store, seq: int, hint: str | None) -> Iterator[Event]:
    """Chained audit records with a seq above ``seq``, oldest first.

    Starts at ``hint`` when the record found there is the one expected
    (seq + 1); otherwise finds the place by walking back from the end, which
    costs the backlog, not the log.
    """
    if hint is not None:
        try:
            entries = store.scan_log_forward(AUDIT_LOG, after=hint)
            first = next(iter(entries), None)
        except InvalidCursorError:
            first = None
        if first is not None and first.record.get("seq") == seq + 1:
            yield Event(seq + 1, first.record, hint, first.cursor)
            yield from _chained(entries, first.cursor)
            return
        # Nothing after the hint yet, or a hint that no longer fits: walking
        # back from the newest record tells the two apart cheaply.
    start: str | None = None
    for entry in store.scan_log(AUDIT_LOG):
        found = entry.record.get("seq")
        if not isinstance(found, int) or found <= seq:
            break
        start = entry.cursor  # a backward cursor passed as `after` starts at this record
    if start is not None:
        yield from _chained(store.scan_log_forward(AUDIT_LOG, after=start), start)


def _chained(entries: Iterable[LogEntry], before: str | None) -> Iterator[Event]:
    for entry in entries:
        seq = entry.record.get("seq")
        if isinstance(seq, int):
            yield Event(seq, entry.record, before, entry.cursor)
        before = entry.cursor
