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
    """Where the cone moves, and why (both go into the audit log)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"band": "C", "reason": "cash runway under 6 months"}]},
    )

    band: Band = Field(
        description="A (expansion), B (caution), C (stabilize) or D (survival); any case."
    )
    reason: str = Field(
        min_length=1, max_length=MAX_TEXT, description="Why the band moves; not blank."
    )

    @field_validator("band", mode="before")
    @classmethod
    def _band_any_case(cls, value: object) -> object:
        # "c" is band C, as on the command line.
        return value.strip().upper() if isinstance(value, str) else value

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
    """Which engine wants to take which action."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"engine": "flips", "action": "run"}]}
    )

    engine: str = Field(
        min_length=1, max_length=200, description="The engine's name, as the canon lists it."
    )
    action: Action = Field(description="run, scale or optimize; any case.")

    @field_validator("action", mode="before")
    @classmethod
    def _action_any_case(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value


class ConeDecision(BaseModel):
    allowed: bool
    band: Band
    engine: str
    action: Action
    reason: str
    engine_class: str
    hard_cap_usd: int | None = None
