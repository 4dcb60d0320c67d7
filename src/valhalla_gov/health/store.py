"""Health persistence: the operator's threshold overrides, the server errors
the light counts, and the last light recorded (for HEALTH_CHANGED).

``thresholds.json`` (optional, any subset of :class:`Thresholds`),
``server_errors.jsonl`` and ``health_mark.json`` in a data dir; generic rows
on SQL.
"""

from __future__ import annotations

from typing import Any

from ..storage.parsing import parse_stored
from ..storage.protocol import Document, Log, Reader, Schema, Store, StoreTxn
from .models import HealthMark, Thresholds

THRESHOLDS = Document("thresholds", file="thresholds.json")
SERVER_ERRORS = Log("server_errors", file="server_errors.jsonl")
MARK = Document("health_mark", file="health_mark.json")

SCHEMA = Schema(documents=(THRESHOLDS, MARK), logs=(SERVER_ERRORS,))


def _parse_thresholds(raw: Any | None) -> Thresholds:
    if raw is None:
        return Thresholds()
    return parse_stored(Thresholds, raw, where=THRESHOLDS.file, what="set of thresholds")


def load_thresholds(*, store: Store) -> Thresholds:
    return _parse_thresholds(store.read_document(THRESHOLDS))


def cached_thresholds(*, store: Store) -> Thresholds:
    """:func:`load_thresholds` through the store's cache (shared: read-only)."""
    return store.read_cached(THRESHOLDS, _parse_thresholds)


def record_server_error(*, store: Store, record: dict[str, Any]) -> None:
    """Durably, so health counts recent server errors across workers."""
    with store.transaction() as txn:
        txn.append_log(SERVER_ERRORS, record)


def read_mark(reader: Reader) -> HealthMark | None:
    raw = reader.read_document(MARK)
    return None if raw is None else parse_stored(HealthMark, raw, where=MARK.file, what="mark")


def write_mark(txn: StoreTxn, mark: HealthMark) -> None:
    txn.write_document(MARK, mark.model_dump())
