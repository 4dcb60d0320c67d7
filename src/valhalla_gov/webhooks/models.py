"""Webhook schemas: what is stored, what the API takes and answers."""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, RootModel, field_validator

Format = Literal["json", "slack"]
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
EVENT_PATTERN = r"^[A-Z][A-Z0-9_]{0,63}$"
ALL_EVENTS = "all"
# What a webhook gets when no events are named: the moments operators asked
# to hear about (a session starts or ends, the band moves, health changes).
DEFAULT_EVENTS = ("GO_SESSION_START", "GO_SESSION_END", "CONE_SET", "HEALTH_CHANGED")
MAX_WEBHOOKS = 50
MAX_EVENTS = 50
MAX_URL = 2048


class WebhookRecord(BaseModel):
    """A webhook as stored. No secret: it is derived from the master key and
    ``salt`` when a delivery is signed (docs/WEBHOOKS.md, "The secret")."""

    model_config = ConfigDict(extra="ignore")

    id: str
    name: str = Field(pattern=NAME_PATTERN)
    url: str
    events: list[str]
    format: Format = "json"
    created_at_utc: str
    created_by: str
    salt: str
    key_id: str = Field(description="Which master key the secret was derived from.")
    start_seq: int = Field(ge=0, description="Events after this audit seq are delivered.")

    def wants(self, event: str) -> bool:
        return ALL_EVENTS in self.events or event in self.events


class DeliveryState(BaseModel):
    """One webhook's place in the outbox (the audit log)."""

    model_config = ConfigDict(extra="ignore")

    last_seq: int = Field(ge=0, description="Every event up to this audit seq is done.")
    cursor: str | None = Field(
        default=None, description="Where the audit log resumes after last_seq: a hint, checked."
    )
    attempts: int = Field(default=0, description="Failed attempts at the next event.")
    failing: bool = False
    next_attempt_at_utc: str | None = None
    last_attempt_at_utc: str | None = None
    last_status: int | None = None
    last_error: str | None = None
    last_success_at_utc: str | None = None
    delivered: int = 0
    gave_up: int = 0


class Lease(BaseModel):
    holder: str
    expires_at_utc: str


class HealthMark(BaseModel):
    status: str
    at_utc: str


class Outbox(BaseModel):
    """The ``webhook_outbox`` document: the sender lease, the cursors, and the
    last health status announced."""

    model_config = ConfigDict(extra="ignore")

    lease: Lease | None = None
    cursors: dict[str, DeliveryState] = Field(default_factory=dict)
    health: HealthMark | None = None


# -- API -------------------------------------------------------------------------


class WebhookCreate(BaseModel):
    """A receiver to notify, and of what."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "url": "https://hooks.example.com/valhalla",
                    "name": "ops-chat",
                    "events": ["GO_SESSION_START", "GO_SESSION_END"],
                    "format": "json",
                }
            ]
        },
    )

    url: str = Field(min_length=1, max_length=MAX_URL, description="http:// or https:// only.")
    name: str | None = Field(
        default=None,
        pattern=NAME_PATTERN,
        description="Letters, digits, '.', '_', '-'; default: from the URL's host.",
    )
    events: list[str] | None = Field(
        default=None,
        max_length=MAX_EVENTS,
        description=f'Audit event names, or ["all"]; default: {", ".join(DEFAULT_EVENTS)}.',
    )
    format: Format = Field(default="json", description="json, or slack for chat webhooks.")

    # Checked here, so a bad value is the documented 422 over HTTP.
    @field_validator("url")
    @classmethod
    def _usable_url(cls, value: str) -> str:
        return valid_url(value)

    @field_validator("events")
    @classmethod
    def _event_names(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else valid_events(value)


def valid_url(url: str) -> str:
    """A webhook URL we are willing to send to (http or https, with a host)."""
    text = url.strip()
    if len(text) > MAX_URL or any(ord(c) < 33 or ord(c) == 127 for c in text):
        raise ValueError("the URL must be at most 2048 characters without spaces")
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise ValueError(f"not a usable URL: {exc}") from None
    if parts.scheme not in {"http", "https"}:
        raise ValueError("only http:// and https:// webhook URLs are allowed")
    if not parts.hostname:
        raise ValueError("the URL has no host")
    return text


def valid_events(events: list[str]) -> list[str]:
    """Event names as given (deduplicated, in order), or ``["all"]``."""
    names = list(dict.fromkeys(e.strip() for e in events if e.strip()))
    if not names:
        raise ValueError("name at least one event, or 'all'")
    if ALL_EVENTS in names:
        if len(names) > 1:
            raise ValueError("'all' stands alone: it already takes every event")
        return [ALL_EVENTS]
    bad = [n for n in names if not re.match(EVENT_PATTERN, n)]
    if bad:
        raise ValueError(
            f"not event names: {', '.join(repr(b) for b in bad[:5])}; "
            "use audit event names such as GO_SESSION_START, or 'all'"
        )
    return names


class DeliveryInfo(BaseModel):
    last_seq: int = Field(description="Every audit event up to this seq is delivered or given up.")
    pending_attempts: int = Field(description="Failed attempts at the event now due.")
    failing: bool = Field(description="The last attempt failed; the event is being retried.")
    next_attempt_at_utc: str | None = Field(description="When the next retry is due; null if none.")
    last_attempt_at_utc: str | None = Field(description="When it was last tried; null if never.")
    last_status: int | None = Field(
        description="The receiver's HTTP status at the last attempt; null if none came."
    )
    last_error: str | None = Field(description="What went wrong at the last attempt; null if ok.")
    last_success_at_utc: str | None = Field(
        description="When a delivery last succeeded; null if never."
    )
    delivered: int = Field(description="Events delivered.")
    gave_up: int = Field(description="Events given up on after the retry period.")


class WebhookInfo(BaseModel):
    """A webhook as listed: never its secret."""

    id: str = Field(description="Unique id; part of every delivery id.")
    name: str = Field(description="Its name (unique).")
    url: str = Field(description="The receiver's URL.")
    events: list[str] = Field(description="The audit events it receives.")
    format: Format = Field(description="json (the audit record) or slack (readable text).")
    created_at_utc: str = Field(description="When it was added (UTC, Z).")
    created_by: str = Field(description="Who added it (a token name).")
    delivery: DeliveryInfo = Field(description="How delivery to it is going.")


class WebhookCreated(BaseModel):
    webhook: WebhookInfo = Field(description="The webhook as listed from now on.")
    secret: str = Field(description="The signing secret. Shown only in this answer.")


class WebhookRemoved(BaseModel):
    removed: str = Field(description="The removed webhook's name.")


class TestResult(BaseModel):
    name: str = Field(description="The webhook's name.")
    ok: bool = Field(description="The receiver answered with a 2xx status.")
    status: int | None = Field(description="The receiver's HTTP status; null when none came.")
    error: str | None = Field(description="What went wrong; null when ok.")
    delivery_id: str = Field(description="The test delivery's id, as sent in its headers.")
    duration_ms: float = Field(description="How long the receiver took, in milliseconds.")


class WebhookList(RootModel[list[WebhookInfo]]):
    """What ``GET /core/webhooks`` answers."""
