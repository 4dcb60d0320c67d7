"""The audit feature: the hash-chained event log, its pages and its check."""

from __future__ import annotations

from ..feature import Feature
from .store import SCHEMA

FEATURE = Feature(__name__, schema=SCHEMA)
