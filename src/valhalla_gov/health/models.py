"""Health schemas."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

Status = Literal["green", "yellow", "red"]
STATUSES: tuple[Status, ...] = get_args(Status)  # best to worst
STATUS_RANK: dict[str, int] = {status: rank for rank, status in enumerate(STATUSES)}


class Thresholds(BaseModel):
    """Overridable in ``thresholds.json`` (any subset of these keys)."""

    model_config = ConfigDict(extra="forbid")

    deny_rate_yellow: float = Field(default=0.25, ge=0, le=1)
    deny_rate_red: float = Field(default=0.35, ge=0, le=1)
    deny_window: int = Field(default=200, ge=1, le=100_000)
    deny_min_decisions: int = Field(default=20, ge=1)
    error_window_minutes: float = Field(default=15, gt=0, le=525_600)  # at most a year
    errors_red: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        if self.deny_rate_yellow > self.deny_rate_red:
            raise ValueError("deny_rate_yellow must not exceed deny_rate_red")
        if self.deny_min_decisions > self.deny_window:
            # Drift could then never be judged: refuse rather than switch it off.
            raise ValueError("deny_min_decisions must not exceed deny_window")
        return self


class CheckResult(BaseModel):
    status: Status = Field(description="This signal's light: green, yellow or red.")
    detail: str = Field(description="What was found, in words.")


class HealthStatus(BaseModel):
    status: Status = Field(description="The worst light of the checks.")
    reasons: list[str] = Field(description="The details of the checks that are not green.")
    checks: dict[str, CheckResult] = Field(
        description="Each signal by name (band, deny rate, storage, audit, errors ...)."
    )
    cone_band: str | None = Field(
        default=None, description="The cone's band; null when the cone state cannot be read."
    )
    checked_at_utc: str = Field(description="When health was judged (UTC, Z).")


class HealthMark(BaseModel):
    """The light last recorded with HEALTH_CHANGED (``health_mark.json``)."""

    status: Status
    at_utc: str


class Liveness(BaseModel):
    ok: bool = Field(description="Always true: the process answers.")


class Readiness(BaseModel):
    ready: bool = Field(description="Storage answers and every feature's documents can be read.")
    reasons: list[str] = Field(description="What is not ready; empty when ready.")
