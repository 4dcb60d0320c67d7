"""Reading the audit log forward from a seq: the stream's only source.

The audit log is seq-ordered (appends happen under the store's exclusive
lock), so "every event after seq N" is exact: a reader keeps a log cursor
and the last seq it sent, and a record is sent only when its seq is greater.
Whether it arrives by replay or live makes no difference, which is what makes
resume free of gaps and duplicates.

Synchronous on purpose: callers run these off the event loop.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from ..audit.store import AUDIT_LOG
from ..storage.protocol import Store


@dataclass(frozen=True, slots=True)
class Position:
    """Where a reader stands: the log cursor to scan forward from (None: the
    beginning) and the highest seq already delivered."""

    cursor: str | None
    last_seq: int


def record_seq(record: dict[str, Any]) -> int | None:
    seq = record.get("seq")
    # bool is an int in Python; a legacy line has no seq at all.
    return seq if isinstance(seq, int) and not isinstance(seq, bool) else None


def start_position(store: Store, last_event_id: int | None) -> Position:
    """The position just past ``last_event_id``, or at the end for a new reader.

    Walks back from the newest record only as far as the reader is behind, so
    a reconnect costs what it missed, not the log's length. An id at or beyond
    the newest seq (beyond: the log was replaced since) starts at the end.
    """
    entries = iter(store.scan_log(AUDIT_LOG))
    first = next(entries, None)
    if first is None:
        return Position(None, 0)
    newest = record_seq(first.record) or 0
    if last_event_id is None or last_event_id >= newest:
        # A backward cursor resumes a forward scan at this very record, which
        # the seq check then skips.
        return Position(first.cursor, newest)
    for entry in itertools.chain((first,), entries):
        seq = record_seq(entry.record)
        if seq is None or seq <= last_event_id:
            return Position(entry.cursor, last_event_id)
    return Position(None, last_event_id)


def read_after(
    store: Store, position: Position, limit: int
) -> tuple[list[dict[str, Any]], Position]:
    """Up to ``limit`` records with seq above ``position.last_seq``, in order."""
    records: list[dict[str, Any]] = []
    cursor, last_seq = position.cursor, position.last_seq
    for entry in store.scan_log_forward(AUDIT_LOG, after=cursor):
        seq = record_seq(entry.record)
        if seq is not None and seq > last_seq:
            if len(records) == limit:
                break
            records.append(entry.record)
            last_seq = seq
        cursor = entry.cursor
    return records, Position(cursor, last_seq)
