"""Insights schemas."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

Bucket = Literal["day", "week", "month"]


class InsightBucket(BaseModel):
    start: str = Field(description="Start of the bucket (UTC midnight; weeks start on Monday).")
    sessions: int = Field(description="Ended sessions that started in the bucket.")
    total_seconds: float = Field(description="The sessions' durations added up.")
    median_seconds: float | None = Field(description="Null when the bucket has no session.")
    steps_completed: int = Field(description="Steps completed during those sessions.")
    bands: dict[str, int] = Field(description="Sessions by cone band at their start.")
    statuses: dict[str, int] = Field(description="Sessions by health status at their start.")


class Insights(BaseModel):
    bucket: Bucket = Field(description="day, week or month.")
    since: str = Field(description="Start of the first bucket.")
    until: str = Field(description="The range's end (inclusive).")
    items: list[InsightBucket] = Field(description="One per bucket, oldest first, empty ones too.")
