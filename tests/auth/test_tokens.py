"""Tokens, the owner credential and actors: authority from a credential,
never from an address."""

from __future__ import annotations

import json
import logging
import subprocess
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from tests.auth.conftest import LOOPBACK, REMOTE, Tokens
from tests.cli.conftest import CLEAN_ENV
from tests.conftest import FakeClock, owner_headers
from tests.live.server import VALHALLA
from valhalla_gov.app import create_app
from valhalla_gov.auth.service import (
    LAST_USED_RESOLUTION_S,
    create_signin_code,
    create_token,
    hash_token,
    list_tokens,
    revoke_token,
    rotate_owner_credential,
)
from valhalla_gov.cli import app as cli_app
from valhalla_gov.compose import open_json
from valhalla_gov.errors import ConflictError, InvalidInputError, NotFoundError
from valhalla_gov.settings import Settings


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "203.0.113.7"])
def test_an_address_grants_nothing(generous_app: FastAPI, host: str) -> None:
    # No token exists at all: a loopback client is still nobody.
    with TestClient(generous_app, client=(host, 1)) as client:
        who = client.get("/core/whoami")
        assert who.status_code == 401
        assert who.headers["WWW-Authenticate"].startswith("Bearer")
        assert "valhalla token link" in who.json()["detail"]
        assert client.get("/core/go/session").status_code == 401
        assert client.post("/core/go/start_session", json={}).status_code == 401
        assert (
            client.post("/core/tokens", json={"name": "x", "scopes": ["owner"]}).status_code == 401
        )
        assert client.get("/core/healthz").status_code == 200


def test_the_owner_credential_acts_as_local(
    data_dir: Path, local_client: TestClient, remote_client: TestClient
) -> None:
    owner = owner_headers(data_dir)
    for client in (local_client, remote_client):  # from any address alike
        who = client.get("/core/whoami", headers=owner).json()
        assert who == {
            "name": "local",
            "scopes": ["owner"],
            "via": "token",
            "protected_mode": False,
        }
    assert (
        local_client.post(
            "/core/cone/state", json={"band": "A", "reason": "ok"}, headers=owner
        ).status_code
        == 200
    )
    started = remote_client.post("/core/go/start_session", json={}, headers=owner).json()
    assert started["started_by"] == "local"


def test_tokens_act_under_their_own_names(
    tokens: Tokens, local_client: TestClient, remote_client: TestClient
) -> None:
    assert local_client.get("/core/go/session").status_code == 401
    assert remote_client.get("/core/go/session", headers=tokens.header("viewer")).status_code == 200
    who = remote_client.get("/core/whoami", headers=tokens.header("operator")).json()
    assert who == {
        "name": "operator-bot",
        "scopes": ["operator"],
        "via": "token",
        "protected_mode": False,
    }


def test_malformed_authorization_headers_are_401(tokens: Tokens, local_client: TestClient) -> None:
    for value in ("Basic abc", "Bearer", "Bearer   ", tokens.operator):
        resp = local_client.get("/core/go/session", headers={"Authorization": value})
        assert resp.status_code == 401, value


def test_actors_are_recorded_everywhere(tokens: Tokens, remote_client: TestClient) -> None:
    op, owner = tokens.header("operator"), tokens.header("owner")
    started = remote_client.post("/core/go/start_session", json={"notes": "n"}, headers=op).json()
    assert started["started_by"] == "operator-bot"
    remote_client.post("/core/go/complete", json={"step_id": "intake_ready"}, headers=op)
    remote_client.post("/core/cone/state", json={"band": "A", "reason": "go"}, headers=owner)
    ended = remote_client.post("/core/go/end_session", json={}, headers=owner).json()
    assert ended["ended_by"] == "owner-bot"
    cone = remote_client.get("/core/cone/state", headers=op).json()
    assert cone["updated_by"] == "owner-bot"
    events = remote_client.get("/core/audit/events", headers=op).json()["items"]
    assert [(e["event"], e["actor"]) for e in events[:4]] == [
        ("GO_SESSION_END", "owner-bot"),
        ("CONE_SET", "owner-bot"),
        ("GO_STEP_SET", "operator-bot"),
        ("GO_SESSION_START", "operator-bot"),
    ]


def test_revoked_token_stops_working_at_once(
    tokens: Tokens, remote_client: TestClient, data_dir: Path, clock: FakeClock
) -> None:
    assert remote_client.get("/core/go/session", headers=tokens.header("viewer")).status_code == 200
    revoke_token(store=open_json(data_dir), name="viewer-bot", actor="t", clock=clock)
    assert remote_client.get("/core/go/session", headers=tokens.header("viewer")).status_code == 401


def test_only_the_hash_is_stored_and_last_use_is_recorded(
    tokens: Tokens, remote_client: TestClient, data_dir: Path, clock: FakeClock
) -> None:
    raw = (data_dir / "tokens.json").read_text()
    assert tokens.operator not in raw
    assert hash_token(tokens.operator) in raw
    assert all(t.last_used_at_utc is None for t in list_tokens(store=open_json(data_dir)))
    remote_client.get("/core/go/session", headers=tokens.header("operator"))
    used = {t.name: t.last_used_at_utc for t in list_tokens(store=open_json(data_dir))}
    assert used == {
        "viewer-bot": None,
        "operator-bot": "2026-01-01T09:00:00.000000Z",
        "owner-bot": None,
    }
    # Bounded writes: within LAST_USED_RESOLUTION_S the file is not rewritten.
    stamped = (data_dir / "tokens.json").stat().st_ino
    for _ in range(3):
        remote_client.get("/core/go/session", headers=tokens.header("operator"))
    assert (data_dir / "tokens.json").stat().st_ino == stamped
    assert LAST_USED_RESOLUTION_S == 60


def test_token_never_reaches_the_logs(
    tokens: Tokens, remote_client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        remote_client.get("/core/go/session", headers=tokens.header("owner"))
        remote_client.get("/core/go/session", headers={"Authorization": "Bearer vgo_wrong"})
    assert tokens.owner not in caplog.text
    assert "vgo_wrong" not in caplog.text


def test_token_rules(data_dir: Path, clock: FakeClock) -> None:
    store = open_json(data_dir)
    info, token = create_token(store=store, name="ci", scopes=["viewer"], actor="t", clock=clock)
    assert token.startswith("vgo_")
    assert len(token) > 40
    assert info.name == "ci"
    with pytest.raises(ConflictError):
        create_token(store=store, name="ci", scopes=["owner"], actor="t", clock=clock)
    with pytest.raises(InvalidInputError):
        create_token(store=store, name="bad name!", scopes=["owner"], actor="t", clock=clock)
    with pytest.raises(NotFoundError):
        revoke_token(store=store, name="nobody", actor="t", clock=clock)
    # The owner credential's name is not for a token.
    with pytest.raises(ConflictError, match="owner credential"):
        create_token(store=store, name="local", scopes=["viewer"], actor="t", clock=clock)


def test_unknown_or_empty_scopes_are_refused_where_a_token_is_asked_for(
    data_dir: Path,
) -> None:
    # Refused before anything is asked of the store (the parser of a token's
    # scopes is the CLI's; the API's model answers 422 for them).
    for scopes in ("admin", " , ", "viewer,admin"):
        result = CliRunner().invoke(
            cli_app,
            ["token", "create", "--name", "x", "--scopes", scopes, "--data-dir", str(data_dir)],
            env=CLEAN_ENV,
        )
        assert result.exit_code == 2, result.output
        assert "unknown scopes" in result.stderr
    assert list_tokens(store=open_json(data_dir)) == []


def test_the_owner_credential_is_rotated_not_revoked(data_dir: Path, clock: FakeClock) -> None:
    store = open_json(data_dir)
    old = owner_headers(data_dir, store)
    assert (data_dir / "owner.token").stat().st_mode & 0o777 == 0o600
    with pytest.raises(ConflictError, match="rotate-owner"):
        revoke_token(store=store, name="local", actor="t", clock=clock)
    listed = {t.name: t.kind for t in list_tokens(store=store)}
    assert listed == {"local": "owner_credential"}
    link = create_signin_code(store=store, actor="local", clock=clock)
    rotate_owner_credential(store=store, data_dir=data_dir, actor="local", clock=clock)
    new = owner_headers(data_dir, store)
    assert new != old
    assert (data_dir / "owner.token").stat().st_mode & 0o777 == 0o600
    app = create_app(Settings(data_dir=data_dir), clock=clock)
    with TestClient(app, client=REMOTE) as client:
        assert client.get("/core/whoami", headers=old).status_code == 401
        assert client.get("/core/whoami", headers=new).json()["name"] == "local"
        events = client.get("/core/audit/events", headers=new).json()["items"]
        # The link made before the rotation was withdrawn with the old credential.
        assert client.post("/core/auth/signin", json={"code": link.code}).status_code == 401
    assert [(e["event"], e["actor"]) for e in events] == [("OWNER_CREDENTIAL_ROTATE", "local")]
    assert events[0]["payload"]["signin_links_withdrawn"] == 1
    assert [t.name for t in list_tokens(store=store)] == ["local"]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([VALHALLA, *args], capture_output=True, text=True, check=False)


def test_token_cli_round_trip(data_dir: Path, generous_app: FastAPI) -> None:
    created = _cli(
        "token", "create", "--name", "phone", "--scopes", "operator", "--data-dir", str(data_dir)
    )
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip().splitlines()[-1]
    assert token.startswith("vgo_")
    assert token not in created.stdout.strip().splitlines()[0]
    listed = _cli("token", "list", "--json", "--data-dir", str(data_dir))
    assert [t["name"] for t in json.loads(listed.stdout)] == ["phone"]
    assert token not in listed.stdout
    with TestClient(generous_app, client=REMOTE) as client:
        ok = client.post(
            "/core/go/start_session", json={}, headers={"Authorization": f"Bearer {token}"}
        )
        assert ok.status_code == 200
        assert ok.json()["started_by"] == "phone"
    dup = _cli(
        "token", "create", "--name", "phone", "--scopes", "owner", "--data-dir", str(data_dir)
    )
    assert dup.returncode == 1
    bad = _cli("token", "create", "--name", "x", "--scopes", "root", "--data-dir", str(data_dir))
    assert bad.returncode == 2
    assert "viewer, operator, owner" in bad.stderr
    assert _cli("token", "revoke", "phone", "--data-dir", str(data_dir)).returncode == 0
    assert _cli("token", "revoke", "phone", "--data-dir", str(data_dir)).returncode == 1
    with TestClient(generous_app, client=LOOPBACK) as client:
        # No token left: nobody is served without a credential, loopback or not.
        assert client.get("/core/whoami").status_code == 401
