"""The insights feature: the session history summed up per day, week or month."""

from __future__ import annotations

from ..feature import Feature

FEATURE = Feature(__name__)
