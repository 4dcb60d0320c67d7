"""Refusals in one plain sentence (no regular expression, no validator's
jargon, no Python list), before anything is sent."""

from __future__ import annotations

import json

from tests.cli.conftest import Cli
from valhalla_gov.audit.service import ANCHOR_PATTERN
from valhalla_gov.auth.models import TOKEN_NAME_PATTERN
from valhalla_gov.cli.audit import ANCHOR
from valhalla_gov.cli.token import TOKEN_NAME
from valhalla_gov.event_names import AUDITED_EVENTS

HOOK_URL = "https://hooks.example.com/T000/B000/XXXX"


def _refused(cli: Cli, *args: str) -> str:
    result = cli.local(*args)
    assert result.exit_code == 2, result.output
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1, message
    for jargon in ("Value error", "String should", "pattern", "^", "$", "['"):
        assert jargon not in message, message
    return message


def test_bad_anchor_token_name_scope_and_url_are_refused_in_words(cli: Cli) -> None:
    said = _refused(cli, "audit", "verify", "--anchor", "garbage")
    assert "'garbage' is not a chain head" in said
    said = _refused(cli, "token", "create", "--name", "bad name!", "--scopes", "viewer")
    assert "'bad name!' is not a token name" in said
    said = _refused(cli, "token", "revoke", "bad name!")
    assert "NAME 'bad name!' is not a token name" in said
    said = _refused(cli, "token", "create", "--name", "phone", "--scopes", "admin")
    assert said == (
        "error: unknown scopes in --scopes 'admin': choose from viewer, operator, owner "
        "(several with commas, e.g. viewer,operator)"
    )
    said = _refused(cli, "webhook", "add", "ftp://x")
    assert said == "error: url: the URL must start with http:// or https://"


def test_webhook_events_are_checked_in_any_case(cli: Cli) -> None:
    said = _refused(cli, "webhook", "add", HOOK_URL, "--events", "GO_SESION_START")
    assert "GO_SESION_START is not an audited event (did you mean GO_SESSION_START?)" in said
    assert all(name in said for name in AUDITED_EVENTS)
    added = cli.local("webhook", "add", HOOK_URL, "--events", "go_session_start,Cone_Set", "--json")
    assert added.exit_code == 0, added.output
    assert json.loads(added.stdout)["webhook"]["events"] == ["GO_SESSION_START", "CONE_SET"]


def test_patterns_written_out_are_the_apps() -> None:
    assert TOKEN_NAME == TOKEN_NAME_PATTERN
    assert ANCHOR == ANCHOR_PATTERN
