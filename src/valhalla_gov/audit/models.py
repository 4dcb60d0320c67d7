"""Audit schemas."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, computed_field


class AuditEvent(BaseModel):
    """One audit line. Legacy lines (the earlier implementation's) lack the
    chain fields ``seq``, ``actor``, ``prev`` and ``hash``."""

    model_config = ConfigDict(extra="allow")

    ts_utc: str = Field(description="When it happened (ISO-8601 UTC, ending in Z).")
    event: str = Field(description="What happened, an upper-case name such as GO_SESSION_START.")
    payload: Any = Field(default=None, description="The event's details (its own shape per event).")
    seq: int | None = Field(
        default=None, description="Position in the chain, from 1; null on a legacy line."
    )
    actor: str | None = Field(
        default=None, description="Who did it: a token's name, or `local`; null on a legacy line."
    )
    prev: str | None = Field(
        default=None, description="The previous chained event's hash (64 zeros for the first)."
    )
    hash: str | None = Field(
        default=None,
        description="SHA-256 (hex) over `prev` and this event's canonical JSON without `hash`.",
    )


class AuditPage(BaseModel):
    items: list[AuditEvent] = Field(description="Events, newest first.")
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` for the next (older) page; null at the end."
    )


class AuditVerifyResult(BaseModel):
    ok: bool = Field(description="True when every chained event verified (and the anchor held).")
    events: int = Field(description="Chained (hashed) events checked.")
    legacy_events: int = Field(description="Lines without chain fields, kept and counted.")
    first_bad_seq: int | None = Field(
        default=None,
        description="Sequence number where the chain first breaks: every event before it verified.",
    )
    detail: str | None = Field(default=None, description="What broke, where; null when ok.")
    head_seq: int | None = Field(
        default=None, description="The last seq of the verified chain (0: no chained event)."
    )
    head_hash: str | None = Field(default=None, description="Its hash.")
    anchored: bool = Field(
        default=False, description="True when an anchor was given and the log still holds it."
    )


class AuditHead(BaseModel):
    """The newest chained event: keep `anchor` apart from the log (a backup,
    a monitoring system) and pass it to verify to detect a truncated tail."""

    seq: int = Field(description="Its seq; 0 when the log holds no chained event.")
    hash: str | None = Field(description="Its hash; null when the log holds no chained event.")
    ts_utc: str | None = Field(description="Its time; null when the log holds no chained event.")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def anchor(self) -> str | None:
        """`SEQ:HASH`, the form `valhalla audit verify --anchor` takes."""
        return None if self.hash is None else f"{self.seq}:{self.hash}"
