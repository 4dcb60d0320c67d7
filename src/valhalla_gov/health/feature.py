"""The health feature: the red/yellow/green light, liveness and readiness."""

from __future__ import annotations

from ..feature import Feature
from .store import SCHEMA, load_thresholds

FEATURE = Feature(__name__, schema=SCHEMA, readiness=(lambda store: load_thresholds(store=store),))
