"""POST /core/auth/hello: the server proves it keeps a token's hash, to a
client that sends no credential (the GO page, before it trusts the port)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path

from fastapi.testclient import TestClient

from tests.auth.conftest import REMOTE, make_app
from tests.conftest import FakeClock, owner_headers
from valhalla_gov.audit.service import query_events
from valhalla_gov.auth.service import create_token
from valhalla_gov.compose import open_json

HELLO = "/core/auth/hello"


def _expected(token: str, nonce: str) -> str:
    """What the page computes: HMAC keyed with the raw SHA-256 of its token."""
    key = hashlib.sha256(token.encode()).digest()
    return hmac.new(key, nonce.encode("ascii"), hashlib.sha256).hexdigest()


def _made(data_dir: Path, clock: FakeClock, name: str = "phone") -> str:
    _, token = create_token(
        store=open_json(data_dir), name=name, scopes=["owner"], actor="test", clock=clock
    )
    return token


def test_the_proof_is_the_hmac_of_the_nonce_under_the_tokens_hash(
    data_dir: Path, clock: FakeClock
) -> None:
    token = _made(data_dir, clock)
    other = _made(data_dir, clock, "other")
    with TestClient(make_app(data_dir, clock), client=REMOTE) as client:
        events_before = len(query_events(store=open_json(data_dir), limit=100).items)
        for _ in range(2):
            nonce = secrets.token_hex(32)
            # No credential sent: that is the point of the route.
            answer = client.post(HELLO, json={"name": "phone", "nonce": nonce})
            assert answer.status_code == 200, answer.text
            assert answer.json() == {"proof": _expected(token, nonce)}
            assert answer.json()["proof"] != _expected(other, nonce)
    # A read: nothing audited.
    assert len(query_events(store=open_json(data_dir), limit=100).items) == events_before


def test_an_unknown_or_revoked_name_is_refused(data_dir: Path, clock: FakeClock) -> None:
    _made(data_dir, clock)
    nonce = secrets.token_hex(32)
    with TestClient(make_app(data_dir, clock), client=REMOTE) as client:
        unknown = client.post(HELLO, json={"name": "nobody", "nonce": nonce})
        assert unknown.status_code == 401, unknown.text
        assert "proof" not in unknown.json()
        assert client.post(HELLO, json={"name": "phone", "nonce": nonce}).status_code == 200
        revoked = client.delete("/core/tokens/phone", headers=owner_headers(data_dir))
        assert revoked.status_code == 200, revoked.text
        after = client.post(HELLO, json={"name": "phone", "nonce": nonce})
        assert after.status_code == 401, after.text
        assert after.json() == unknown.json() | {"detail": after.json()["detail"]}
        assert "phone" in after.json()["detail"]


def test_a_bad_nonce_or_name_is_422(data_dir: Path, clock: FakeClock) -> None:
    _made(data_dir, clock)
    bad_bodies = [
        {"name": "phone", "nonce": "ab" * 31},  # 31 bytes
        {"name": "phone", "nonce": "ab" * 33},  # 33 bytes
        {"name": "phone", "nonce": "AB" * 32},  # not lower-case hex
        {"name": "phone", "nonce": "zz" * 32},
        {"name": "phone", "nonce": ""},
        {"name": "phone", "nonce": 7},
        {"name": "phone"},
        {"nonce": "ab" * 32},
        {"name": "../etc", "nonce": "ab" * 32},
        {"name": "x" * 65, "nonce": "ab" * 32},
        {"name": "phone", "nonce": "ab" * 32, "extra": 1},
    ]
    with TestClient(make_app(data_dir, clock), client=REMOTE) as client:
        for body in bad_bodies:
            answer = client.post(HELLO, json=body)
            assert answer.status_code == 422, (body, answer.text)
        assert client.post(HELLO, content=b"not json").status_code == 422


def test_the_body_is_capped(data_dir: Path, clock: FakeClock) -> None:
    _made(data_dir, clock)
    with TestClient(make_app(data_dir, clock, max_body_bytes=2048), client=REMOTE) as client:
        big = client.post(HELLO, json={"name": "phone", "nonce": "ab" * 32, "pad": "x" * 4096})
        assert big.status_code == 413, big.text
