"""PACK I schemas. ``GoSession`` keeps the seed's seven fields first; the
rest are additive."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..constants import Text


class GoSession(BaseModel):
    """An operational governance session (or the inactive default)."""

    model_config = ConfigDict(extra="allow")

    active: bool = False
    started_at_utc: str | None = None
    ended_at_utc: str | None = None
    cone_band: str | None = None
    status: str | None = None
    notes: str | None = None
    snapshot: dict[str, Any] | None = None
    id: str | None = None
    started_by: str | None = None
    ended_by: str | None = None
    start_notes: str | None = None
    end_notes: str | None = None
    end_snapshot: dict[str, Any] | None = None
    duration_seconds: float | None = None
    steps_completed: list[str] = Field(default_factory=list)


class SessionNotes(BaseModel):
    model_config = ConfigDict(extra="forbid")

    notes: Text | None = None


class SessionPage(BaseModel):
    items: list[GoSession]
    next_cursor: str | None = None
