"""Health persistence: the operator's threshold overrides, and the server
errors the light counts.

``thresholds.json`` (optional, any subset of :class:`Thresholds`) and
``server_errors.jsonl`` in a data dir; generic rows on SQL.
"""

from __future__ import annotations

from typing import Any

from ..storage.parsing import parse_stored
from ..storage.protocol import Document, Log, Schema, Store
from .models import Thresholds

THRESHOLDS = Document("thresholds", file="thresholds.json")
SERVER_ERRORS = Log("server_errors", file="server_errors.jsonl")

SCHEMA = Schema(documents=(THRESHOLDS,), logs=(SERVER_ERRORS,))


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
