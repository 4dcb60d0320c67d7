"""Webhook schemas: what is stored, what the API takes and answers."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, RootModel, field_validator
from pydantic_core import PydanticCustomError

from ..event_names import AUDITED_EVENTS, closest_event, known_event
from .urls import MAX_URL, UnusableUrlError, check_url

Format = Literal["json", "slack"]
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
NAME_RULE = "1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"
ALL_EVENTS = "all"
# What `webhook test` sends: never audited, so no webhook subscribes to it.
TEST_EVENT = "WEBHOOK_TEST"
# What a webhook gets when no events are named: the moments operators asked
# to hear about (a session starts or ends, the band moves, health changes).
DEFAULT_EVENTS = ("GO_SESSION_START", "GO_SESSION_END", "CONE_SET", "HEALTH_CHANGED")
MAX_WEBHOOKS = 50
MAX_EVENTS = 50


def valid_name(name: str) -> str:
    """A webhook name, or a 422 that says what a name may be."""
    if not re.match(NAME_PATTERN, name):
        raise PydanticCustomError("webhook_name", f"a webhook name is {NAME_RULE}")
    return name


# A webhook's name as the API takes it (a plain-words 422 when it is not one).
WebhookName = Annotated[str, AfterValidator(valid_name)]


class WebhookRecord(BaseModel):
    """A webhook as stored. No secret: it is derived from the master key and
    ``salt`` when a delivery is signed (docs/WEBHOOKS.md, "The secret").
    ``url`` is checked when it is used, not here: a URL edited by hand into
    the file is that webhook's failed delivery, not a broken file."""

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


class Outbox(BaseModel):
    """The ``webhook_outbox`` document: the sender lease and the cursors.

    Files written by earlier versions also hold a ``health`` mark (when the
    sender audited health changes); it is ignored."""

    model_config = ConfigDict(extra="ignore")

    lease: Lease | None = None
    cursors: dict[str, DeliveryState] = Field(default_factory=dict)


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

    url: str = Field(
        min_length=1,
        max_length=MAX_URL,
        description=f"http:// or https:// with a host, at most {MAX_URL} characters.",
    )
    name: WebhookName | None = Field(
        default=None,
        description=f"{NAME_RULE[0].upper()}{NAME_RULE[1:]}; default: from the URL's host.",
    )
    events: list[str] | None = Field(
        default=None,
        max_length=MAX_EVENTS,
        description="Audit event names in any case (stored in upper case), or "
        f'["all"]; default: {", ".join(DEFAULT_EVENTS)}.',
    )
    format: Format = Field(default="json", description="json, or slack for chat webhooks.")

    # Checked here, so a bad value is the documented 422 over HTTP, in words.
    @field_validator("url")
    @classmethod
    def _usable_url(cls, value: str) -> str:
        try:
            return check_url(value)
        except UnusableUrlError as exc:
            raise PydanticCustomError("webhook_url", str(exc)) from None

    @field_validator("events")
    @classmethod
    def _event_names(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        try:
            return valid_events(value)
        except ValueError as exc:
            raise PydanticCustomError("webhook_events", str(exc)) from None


def valid_events(events: list[str]) -> list[str]:
    """Known audit event names in upper case (deduplicated, in order), or
    ``["all"]``; a ValueError in words otherwise."""
    names = list(dict.fromkeys(e.strip() for e in events if e.strip()))
    if not names:
        raise ValueError("name at least one event, or all")
    if any(n.lower() == ALL_EVENTS for n in names):
        if len(names) > 1:
            raise ValueError("all stands alone: it already takes every event")
        return [ALL_EVENTS]
    known: list[str] = []
    for name in names:
        event = known_event(name)
        if event is None:
            raise ValueError(unknown_event(name))
        known.append(event)
    return list(dict.fromkeys(known))


def unknown_event(name: str) -> str:
    """Why ``name`` is refused, with the likely meaning of a typo."""
    printable = "".join(c if c.isprintable() else "?" for c in name)
    shown = printable if len(printable) <= 64 else printable[:61] + "..."
    if name.strip().upper() == TEST_EVENT:
        return (
            f"{TEST_EVENT} is not an audited event: a test delivery (webhook test) "
            "reaches a webhook whatever its events"
        )
    guess = closest_event(name)
    if guess is not None:
        return f"{shown} is not an audited event; did you mean {guess}?"
    return f"{shown} is not an audited event; the events are {', '.join(AUDITED_EVENTS)}, or all"


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
