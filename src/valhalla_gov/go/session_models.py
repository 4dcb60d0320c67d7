"""PACK I schemas. ``GoSession`` keeps the seed's seven fields first; the
rest are additive."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..constants import Text


class GoSession(BaseModel):
    """An operational governance session (or the inactive default)."""

    model_config = ConfigDict(extra="allow")

    active: bool = Field(default=False, description="True from start until end.")
    started_at_utc: str | None = Field(default=None, description="When it started (UTC, Z).")
    ended_at_utc: str | None = Field(default=None, description="When it ended; null while active.")
    cone_band: str | None = Field(default=None, description="The cone band at the start.")
    status: str | None = Field(default=None, description="The health light at the start.")
    notes: str | None = Field(
        default=None, description="The last notes given (the end notes once ended)."
    )
    snapshot: dict[str, Any] | None = Field(
        default=None, description='The start snapshot: {"cone": ConeState, "status": health}.'
    )
    id: str | None = Field(
        default=None, description="Sortable unique id (null for very old sessions)."
    )
    started_by: str | None = Field(default=None, description="Who started it: a token name.")
    ended_by: str | None = Field(default=None, description="Who ended it.")
    start_notes: str | None = Field(default=None, description="Notes given at the start.")
    end_notes: str | None = Field(default=None, description="Notes given at the end.")
    end_snapshot: dict[str, Any] | None = Field(
        default=None, description="The snapshot at the end, shaped like `snapshot`."
    )
    duration_seconds: float | None = Field(default=None, description="End minus start.")
    steps_completed: list[str] = Field(
        default_factory=list, description="Playbook steps marked done during the session."
    )


class SessionNotes(BaseModel):
    """Notes for the start or the end of a session."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"notes": "weekly review"}]}
    )

    notes: Text | None = Field(
        default=None, description="Free text, at most 10,000 characters; blank means none."
    )


class SessionPage(BaseModel):
    items: list[GoSession] = Field(description="Ended sessions, newest first.")
    next_cursor: str | None = Field(
        default=None, description="Pass back as `cursor` for the next page; null at the end."
    )
