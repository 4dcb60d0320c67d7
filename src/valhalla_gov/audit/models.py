"""Audit schemas."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, computed_field


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
    hash: str | None
    ts_utc: str | None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def anchor(self) -> str | None:
        """`SEQ:HASH`, the form `valhalla audit verify --anchor` takes."""
        return None if self.hash is None else f"{self.seq}:{self.hash}"
