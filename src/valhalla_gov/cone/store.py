"""Cone persistence: the current state, and the recent decisions health
judges drift from.

``cone_state.json`` (a ``ConeState``) and ``cone_decisions.jsonl`` in a data
dir; a row of the generic document table and generic log rows on SQL.
"""

from __future__ import annotations

from typing import Any

from ..storage.parsing import parse_stored
from ..storage.protocol import Document, Log, Reader, Schema, Store
from .models import ConeState

CONE_STATE = Document("cone_state", file="cone_state.json")
DECISIONS = Log("cone_decisions", file="cone_decisions.jsonl")

SCHEMA = Schema(documents=(CONE_STATE,), logs=(DECISIONS,))


def _parse_state(raw: Any) -> ConeState:
    if raw is None:
        return ConeState()
    return parse_stored(ConeState, raw, where=CONE_STATE.file, what="cone state")


def read_state(reader: Reader) -> ConeState:
    """The stored state (the boot default when there is none), read through
    the store or inside a transaction."""
    return _parse_state(reader.read_document(CONE_STATE))


def cached_state(store: Store) -> ConeState:
    """:func:`read_state` through the store's cache (parsed once per stored
    value). The result is shared: read-only."""
    return store.read_cached(CONE_STATE, _parse_state)


# Roles whose decisions count towards the deny rate; lines written before roles
# were recorded (no "role") count as they always did.
DRIFT_ROLES = frozenset({"operator", "owner", None})
# A flood of viewer decisions may hide older counted ones, but never adds any:
# the scan for counted decisions stops after this many lines per window.
SCAN_FACTOR = 5


def recent_decisions(*, store: Store, window: int) -> list[dict[str, Any]]:
    """The last ``window`` decisions that count for drift (operators' and
    owners'), newest first, read from the log's end; at most
    ``window * SCAN_FACTOR`` lines are read."""
    out: list[dict[str, Any]] = []
    for scanned, entry in enumerate(store.scan_log(DECISIONS), start=1):
        if entry.record.get("role") in DRIFT_ROLES:
            out.append(entry.record)
        if len(out) >= window or scanned >= window * SCAN_FACTOR:
            break
    return out
