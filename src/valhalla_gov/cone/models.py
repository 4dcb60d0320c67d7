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

    band: Band = Field(
        default=BOOT_BAND,
        description="A (expansion), B (caution), C (stabilize) or D (survival).",
    )
    reason: str = Field(default=BOOT_REASON, description="Why the cone is in this band.")
    metrics: dict[str, Any] = Field(
        default_factory=dict, description="Free-form KPIs given with the last move."
    )
    updated_at_utc: str | None = Field(
        default=None, description="When the band last moved; null before the first move."
    )
    updated_by: str | None = Field(default=None, description="Who moved it last (a token name).")


# Integers in free-form metrics: signed 64 bits, what SQLite's and
# PostgreSQL's integers, orjson and most JSON readers hold exactly (a
# browser holds 53 bits; a longer one is stored, but hard to use anywhere).
MIN_INT, MAX_INT = -(2**63), 2**63 - 1


def _bounded_integers(value: dict[str, Any] | None) -> dict[str, Any] | None:
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, int) and not MIN_INT <= item <= MAX_INT:
            # Its size, not its digits: str() refuses past 4,300 of them.
            raise ValueError(
                f"an integer of {item.bit_length()} bits is outside signed 64 bits "
                f"({MIN_INT} to {MAX_INT})"
            )
    return value


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
        dict[str, Any] | None,
        AfterValidator(bounded_json),
        AfterValidator(ensure_utf8),
        AfterValidator(_bounded_integers),
    ] = Field(
        default=None,
        description=(
            f"Free-form KPIs, at most {MAX_TEXT} characters as JSON, nested at most "
            f"{MAX_FREE_FORM_DEPTH} levels, {MAX_FREE_FORM_KEYS} keys in all; no NaN or "
            "Infinity, integers within signed 64 bits."
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
    allowed: bool = Field(description="Whether the engine may take the action in this band.")
    band: Band = Field(description="The band the decision was made in.")
    engine: str = Field(description="The engine asked about.")
    action: Action = Field(description="run, scale or optimize.")
    reason: str = Field(description="Why, in one sentence.")
    engine_class: str = Field(description="The engine's class in the canon.")
    hard_cap_usd: int | None = Field(
        default=None, description="The engine's spending cap in the canon; null for none."
    )
