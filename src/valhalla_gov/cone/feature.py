"""The cone feature: the risk band and the engine/action matrix."""

from __future__ import annotations

from ..feature import Feature
from .store import SCHEMA, read_state

FEATURE = Feature(__name__, schema=SCHEMA, readiness=(read_state,))
