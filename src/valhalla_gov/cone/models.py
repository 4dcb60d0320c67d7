"""Cone schemas."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from ..constants import MAX_TEXT, ensure_utf8
from .canon import BOOT_BAND, BOOT_REASON, Action, Band


class ConeState(BaseModel):
    # Unknown keys from older files are kept, not dropped.
    model_config = ConfigDict(extra="allow")

    band: Band = BOOT_BAND
    reason: str = BOOT_REASON
    metrics: dict[str, Any] = Field(default_factory=dict)
    updated_at_utc: str | None = None
    updated_by: str | None = None


class ConeSetRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    band: Band
    reason: str = Field(min_length=1, max_length=MAX_TEXT)
    metrics: Annotated[dict[str, Any] | None, AfterValidator(ensure_utf8)] = None


class ConeDecision(BaseModel):
    allowed: bool
    band: Band
    engine: str
    action: Action
    reason: str
    engine_class: str
    hard_cap_usd: int | None = None
