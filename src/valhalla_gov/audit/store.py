"""Audit persistence: one append-only log, filterable by event name.

``audit.log`` in a data dir (JSON Lines, one chained record per line); rows of
the generic log table on SQL, with the event name indexed.
"""

from __future__ import annotations

from ..storage.protocol import Log, Schema

AUDIT_LOG = Log("audit", file="audit.log", kind_field="event")

SCHEMA = Schema(logs=(AUDIT_LOG,))
