"""The auth feature: tokens, scopes, protected mode and rate limits."""

from __future__ import annotations

from ..feature import Feature
from .store import SCHEMA, load_tokens

FEATURE = Feature(__name__, schema=SCHEMA, readiness=(lambda store: load_tokens(store=store),))
