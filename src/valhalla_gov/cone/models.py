"""Cone schemas."""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from ..constants import (
    MAX_FREE_FORM_DEPTH,
    MAX_FREE_FORM_KEYS,
    MAX_TEXT,
    bounded_json,
    ensure_utf8,
)
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
    metrics: Annotated[
        dict[str, Any] | None, AfterValidator(bounded_json), AfterValidator(ensure_utf8)
    ] = Field(
        default=None,
        description=(
            f"Free-form KPIs, at most {MAX_TEXT} characters as JSON, nested at most "
            f"{MAX_FREE_FORM_DEPTH} levels, {MAX_FREE_FORM_KEYS} keys in all; no NaN or Infinity."
        ),
    )

    @field_validator("reason")
    @classmethod
    def _reason_says_something(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the reason must say something, not only spaces")
        return value

    @field_validator("metrics")
    @classmethod
    def _metrics_bounded(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        # Copied into every CONE_SET audit line: keep it small.
        if value is not None and len(json.dumps(value, ensure_ascii=False)) > MAX_TEXT:
            raise ValueError(f"metrics are limited to {MAX_TEXT} characters of JSON")
        return value


class ConeDecideRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    engine: str = Field(min_length=1, max_length=200)
    action: Action


class ConeDecision(BaseModel):
    allowed: bool
    band: Band
    engine: str
    action: Action
    reason: str
    engine_class: str
    hard_cap_usd: int | None = None
