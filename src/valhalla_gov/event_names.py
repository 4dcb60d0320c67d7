"""The audit event names: every event the application audits, listed once.

Whatever takes an event name from a user (a webhook's ``events``) checks it
here. ``tests/test_event_names.py`` fails when code audits an event that is
missing from this list, or when a name here is audited nowhere.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

# Name -> what happened, in words (shown in docs and help).
AUDITED_EVENTS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "GO_SESSION_START": "a GO session started",
        "GO_SESSION_END": "a GO session ended",
        "GO_STEP_SET": "a playbook step was marked done or not done",
        "CONE_SET": "the cone band was set",
        "CONE_ALLOW": "the cone allowed an engine's action",
        "CONE_DENY": "the cone denied an engine's action",
        "HEALTH_CHANGED": "health moved between green, yellow and red",
        "TOKEN_CREATE": "an API token was created",
        "TOKEN_REVOKE": "an API token was revoked",
        "OWNER_CREDENTIAL_ROTATE": "the owner credential was replaced",
        "SIGNIN_LINK_USED": "a page signed in with a one-time link",
        "DATA_PRUNED": "old cone decisions or server errors were pruned",
        "WEBHOOK_ADD": "a webhook was added",
        "WEBHOOK_REMOVE": "a webhook was removed",
        "WEBHOOK_FAILING": "a webhook's deliveries started failing",
        "WEBHOOK_RECOVERED": "a failing webhook delivered again",
        "WEBHOOK_GAVE_UP": "a webhook gave up on an event after its retry period",
    }
)


def known_event(name: str) -> str | None:
    """The audited event ``name`` spells in any case (upper case), or None."""
    upper = name.strip().upper()
    return upper if upper in AUDITED_EVENTS else None


def closest_event(name: str) -> str | None:
    """The known event name most like ``name`` (a typo's likely meaning), if any is close."""
    found = difflib.get_close_matches(name.strip().upper(), AUDITED_EVENTS, n=1, cutoff=0.6)
    return found[0] if found else None
