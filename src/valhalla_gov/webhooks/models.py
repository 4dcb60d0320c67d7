"""Webhook schemas and their rules: what a name, a URL and an event list may
be, what is stored, and what the API takes and answers."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, RootModel
from pydantic_core import PydanticCustomError

from ..event_names import AUDITED_EVENTS, closest_event, known_event

Format = Literal["json", "slack"]
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
NAME_RULE = "1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"
MAX_URL = 2048
MAX_WEBHOOKS = 50
MAX_EVENTS = 50
ALL_EVENTS = "all"
# What a webhook gets when no events are named: the moments operators asked
# to hear about (a session starts or ends, the band moves, health changes).
DEFAULT_EVENTS = ("GO_SESSION_START", "GO_SESSION_END", "CONE_SET", "HEALTH_CHANGED")
# What `webhook test` sends: never audited, so no webhook subscribes to it.
TEST_EVENT = "WEBHOOK_TEST"
# Spaces, controls and invisible characters (bidi overrides, zero-width
# ones): a URL holding one can show as something else than where it leads.
_HIDDEN = {"Cc", "Cf", "Cn", "Co", "Cs", "Zl", "Zp", "Zs"}
UNREADABLE = "the URL cannot be read as an http:// or https:// address"
BAD_PORT = "the URL's port must be a number from 1 to 65535"


def _in_words(kind: str, check: Callable[[Any], Any]) -> AfterValidator:
    """``check`` as a validator whose ValueError is a 422 of type ``kind`` with
    exactly its message (pydantic's own would start "Value error, ")."""

    def validate(value: Any) -> Any:
        try:
            return check(value)
        except ValueError as exc:
            raise PydanticCustomError(kind, str(exc)) from None

    return AfterValidator(validate)


def _check_name(name: str) -> str:
    if not re.match(NAME_PATTERN, name):
        raise ValueError(f"a webhook name is {NAME_RULE}")
    return name


class UnusableUrlError(ValueError):
    """Why a URL cannot be a webhook's, in words for the person who gave it."""


def check_url(url: str) -> str:
    """The URL, stripped, when we may send to it; else UnusableUrlError.

    Our rules first, then the parser of the HTTP client that will send to it,
    so a URL that passes is one the client can use. It runs when a webhook is
    added (a 422) and before each send (a URL edited by hand into
    webhooks.json is that webhook's failed attempt).
    """
    text = url.strip()
    if not text:
        raise UnusableUrlError("the URL is empty")
    if len(text) > MAX_URL:
        raise UnusableUrlError(f"the URL is longer than {MAX_URL} characters")
    for char in text:
        if unicodedata.category(char) in _HIDDEN:
            raise UnusableUrlError(
                f"the URL contains a space or an invisible character (U+{ord(char):04X}); "
                "remove it, or write a space in the path as %20"
            )
    try:
        parts = urlsplit(text)
    except ValueError:  # e.g. an unclosed [ in the host
        raise UnusableUrlError(UNREADABLE) from None
    if parts.scheme.lower() not in ("http", "https"):
        raise UnusableUrlError("the URL must start with http:// or https://")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise UnusableUrlError(BAD_PORT)
    if not parts.hostname:
        raise UnusableUrlError(
            "the URL has no host name; write it as https://host/path, e.g. "
            "https://hooks.example.com/valhalla"
        )
    import httpx2 as httpx  # the client's own parser; imported only when a URL is checked

    try:
        parsed = httpx.URL(text)
    except httpx.InvalidURL as exc:
        raise UnusableUrlError(_client_reason(str(exc))) from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise UnusableUrlError(UNREADABLE)
    return text


def _client_reason(reason: str) -> str:
    """The HTTP client's refusal, in words."""
    if reason.startswith("Invalid port"):
        return BAD_PORT
    if reason.startswith("Invalid IPv6"):
        return "the URL's host in [brackets] is not a valid IPv6 address"
    if reason.startswith(("Invalid IDNA", "Invalid IPv4")):
        return (
            "the URL's host name is not a valid domain name or IP address "
            "(check for empty parts such as two dots in a row)"
        )
    return "a part of the URL is too long" if "too long" in reason else UNREADABLE


def redact_url(url: str) -> str:
    """Scheme, host and port only: chat webhook URLs carry their credential
    in the path, so the audit log, the logs and error texts never show more."""
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unusable url>"
    # A hand-edited URL may hold what a log should not print as is.
    host = "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in parts.hostname or "")
    if ":" in host:
        host = f"[{host}]"
    more = "/…" if parts.path not in ("", "/") or parts.query else ""
    return f"{parts.scheme}://{host}{port}{more}"


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
    known = []
    for name in names:
        event = known_event(name)
        if event is None:
            raise ValueError(_unknown_event(name))
        known.append(event)
    return list(dict.fromkeys(known))


def _unknown_event(name: str) -> str:
    """Why ``name`` is refused, with the likely meaning of a typo."""
    if name.strip().upper() == TEST_EVENT:
        return (
            f"{TEST_EVENT} is not an audited event: a test delivery (webhook test) "
            "reaches a webhook whatever its events"
        )
    shown = "".join(c if c.isprintable() else "?" for c in name)
    shown = shown if len(shown) <= 64 else shown[:61] + "..."
    guess = closest_event(name)
    meant = f" (did you mean {guess}?)" if guess is not None else ""
    return (
        f"{shown} is not an audited event{meant}; the events are "
        f"{', '.join(AUDITED_EVENTS)}, or all"
    )


# What the API takes (a name also in the path), checked in this order; each
# refusal is a 422 in words.
WebhookName = Annotated[str, _in_words("webhook_name", _check_name)]
WebhookUrl = Annotated[
    str, Field(min_length=1, max_length=MAX_URL), _in_words("webhook_url", check_url)
]
EventNames = Annotated[
    list[str], Field(max_length=MAX_EVENTS), _in_words("webhook_events", valid_events)
]


# -- stored ------------------------------------------------------------------------


class WebhookFields(BaseModel):
    """What a webhook is, as stored and as listed."""

    id: str = Field(description="Unique id; part of every delivery id.")
    name: str = Field(pattern=NAME_PATTERN, description="Its name (unique).")
    url: str = Field(description="The receiver's URL.")
    events: list[str] = Field(description="The audit events it receives.")
    format: Format = Field(description="json (the audit record) or slack (readable text).")
    created_at_utc: str = Field(description="When it was added (UTC, Z).")
    created_by: str = Field(description="Who added it (a token name).")


class WebhookRecord(WebhookFields):
    """A webhook as stored. No secret: it is derived from the master key and
    ``salt`` when a delivery is signed (keys.py). ``url`` is checked when it
    is used, not here: a URL edited by hand into the file is that webhook's
    failed delivery, not a broken file."""

    format: Format = "json"
    salt: str
    key_id: str  # which master key the secret was derived from
    start_seq: int = Field(ge=0)  # events after this audit seq are delivered


class DeliveryState(BaseModel):
    """One webhook's place in the outbox (the audit log)."""

    last_seq: int = Field(ge=0)  # every event up to this audit seq is done
    cursor: str | None = None  # where the audit log resumes after last_seq: a hint, checked
    attempts: int = 0  # failed attempts at the next event
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
    Files written by earlier versions also hold a ``health`` mark; it is ignored."""

    lease: Lease | None = None
    cursors: dict[str, DeliveryState] = Field(default_factory=dict)

    def cursor(self, hook: WebhookRecord) -> DeliveryState:
        """Where ``hook`` stands; a new webhook starts after its own WEBHOOK_ADD."""
        return self.cursors.get(hook.id) or DeliveryState(last_seq=hook.start_seq)


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

    url: WebhookUrl = Field(
        description=f"http:// or https:// with a host, at most {MAX_URL} characters."
    )
    name: WebhookName | None = Field(
        default=None,
        description=f"{NAME_RULE[0].upper()}{NAME_RULE[1:]}; default: from the URL's host.",
    )
    events: EventNames | None = Field(
        default=None,
        description="Audit event names in any case (stored in upper case), or "
        f'["all"]; default: {", ".join(DEFAULT_EVENTS)}.',
    )
    format: Format = Field(default="json", description="json, or slack for chat webhooks.")


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


class WebhookInfo(WebhookFields):
    """A webhook as listed: never its secret (nor the salt it is made from)."""

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
