"""Audit schemas."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class AuditEvent(BaseModel):
    """One audit line. Legacy lines (the earlier implementation's) lack the
    chain fields ``seq``, ``actor``, ``prev`` and ``hash``."""

    model_config = ConfigDict(extra="allow")

    ts_utc: str
    event: str
    payload: Any = None
    seq: int | None = None
    actor: str | None = None
    prev: str | None = None
    hash: str | None = None


class AuditPage(BaseModel):
    items: list[AuditEvent]
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` for the next (older) page; null at the end."
    )


class AuditVerifyResult(BaseModel):
    ok: bool
    events: int = Field(description="Chained (hashed) events checked.")
    legacy_events: int = Field(description="Lines without chain fields, kept and counted.")
    first_bad_seq: int | None = Field(
        default=None,
        description="Sequence number where the chain first breaks: every event before it verified.",
    )
    detail: str | None = None
