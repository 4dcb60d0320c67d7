"""Sign-in links and the owner credential on every backend: minted once,
one-time codes that expire, stored as hashes, exchanged once."""

from __future__ import annotations

import os
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.auth.conftest import REMOTE
from tests.conftest import FakeClock, join_all, owner_headers, wait_child
from valhalla_gov.app import create_app
from valhalla_gov.audit.service import query_events
from valhalla_gov.auth.owner_file import read_owner_token
from valhalla_gov.auth.service import (
    OwnerCredential,
    create_signin_code,
    ensure_owner_credential,
    exchange_signin_code,
    hash_token,
    list_tokens,
)
from valhalla_gov.auth.store import load_codes
from valhalla_gov.compose import open_json
from valhalla_gov.errors import UnauthorizedError
from valhalla_gov.settings import Settings
from valhalla_gov.storage.protocol import Store


def test_a_code_works_once_and_is_kept_as_a_hash(store: Store, clock: FakeClock) -> None:
    link = create_signin_code(store=store, actor="local", clock=clock)
    assert [c.sha256 for c in load_codes(store=store)] == [hash_token(link.code)]
    info, token = exchange_signin_code(store=store, code=link.code, clock=clock)
    assert token.startswith("vgo_")
    assert info.kind == "page"
    assert info.scopes == ["owner"]
    assert info.name.startswith("page-20260101-")
    assert load_codes(store=store) == []
    with pytest.raises(UnauthorizedError, match="used already"):
        exchange_signin_code(store=store, code=link.code, clock=clock)
    assert [(t.name, t.kind) for t in list_tokens(store=store)] == [(info.name, "page")]


def test_a_code_expires(store: Store, clock: FakeClock) -> None:
    link = create_signin_code(store=store, actor="local", clock=clock)
    clock.advance(minutes=15)
    with pytest.raises(UnauthorizedError, match="expired"):
        exchange_signin_code(store=store, code=link.code, clock=clock)
    assert list_tokens(store=store) == []


def test_unused_codes_do_not_pile_up(store: Store, clock: FakeClock) -> None:
    for _ in range(3):
        create_signin_code(store=store, actor="local", clock=clock, ttl=timedelta(minutes=1))
    clock.advance(minutes=2)
    create_signin_code(store=store, actor="local", clock=clock)
    assert len(load_codes(store=store)) == 1  # the expired ones went with the next write
    for _ in range(40):
        create_signin_code(store=store, actor="local", clock=clock)
    assert len(load_codes(store=store)) == 32


def test_two_concurrent_exchanges_of_one_code_one_wins(store: Store, clock: FakeClock) -> None:
    link = create_signin_code(store=store, actor="local", clock=clock)
    barrier = threading.Barrier(8)
    won: list[str] = []
    refused: list[str] = []
    lock = threading.Lock()

    def exchange() -> None:
        barrier.wait(30)
        try:
            info, _ = exchange_signin_code(store=store, code=link.code, clock=clock)
        except UnauthorizedError as exc:
            with lock:
                refused.append(exc.detail)
            return
        with lock:
            won.append(info.name)

    threads = [threading.Thread(target=exchange) for _ in range(8)]
    for t in threads:
        t.start()
    join_all(threads)
    assert len(won) == 1, won
    assert len(refused) == 7
    assert [t.name for t in list_tokens(store=store)] == won


def test_the_exchange_is_audited_and_the_page_token_works(data_dir: Path, clock: FakeClock) -> None:
    owner = owner_headers(data_dir)
    app = create_app(Settings(data_dir=data_dir), clock=clock)
    with TestClient(app, client=REMOTE) as client:
        made = client.post("/core/auth/links", headers=owner)
        assert made.status_code == 201, made.text
        code = made.json()["code"]
        signed = client.post("/core/auth/signin", json={"code": code})
        assert signed.status_code == 201, signed.text
        body = signed.json()
        page = {"Authorization": f"Bearer {body['token']}"}
        assert client.get("/core/whoami", headers=page).json()["name"] == body["name"]
        again = client.post("/core/auth/signin", json={"code": code})
        assert again.status_code == 401
        assert "valhalla token link" in again.json()["detail"]
        listed = {t["name"]: t["kind"] for t in client.get("/core/tokens", headers=page).json()}
        assert listed == {"local": "owner_credential", body["name"]: "page"}
        # Revocable like any token.
        assert client.delete(f"/core/tokens/{body['name']}", headers=owner).status_code == 200
        assert client.get("/core/whoami", headers=page).status_code == 401
    events = query_events(store=open_json(data_dir), limit=10).items
    used = [e for e in events if e.event == "SIGNIN_LINK_USED"]
    assert len(used) == 1
    assert used[0].actor == body["name"]
    assert used[0].payload == {"name": body["name"], "scopes": ["owner"], "link_by": "local"}


def test_the_owner_credential_is_minted_once(
    store: Store, tmp_path: Path, clock: FakeClock
) -> None:
    data_dir = tmp_path / "credential"
    data_dir.mkdir(mode=0o700)
    outcomes: list[OwnerCredential] = []
    barrier = threading.Barrier(6)
    lock = threading.Lock()

    def ensure() -> None:
        barrier.wait(30)
        outcome = ensure_owner_credential(store=store, data_dir=data_dir, clock=clock)
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=ensure) for _ in range(6)]
    for t in threads:
        t.start()
    join_all(threads)
    assert sorted(o.value for o in outcomes) == ["created"] + ["present"] * 5
    token = read_owner_token(data_dir)
    assert token is not None
    owners = [t for t in list_tokens(store=store) if t.kind == "owner_credential"]
    assert [t.name for t in owners] == ["local"]
    assert ensure_owner_credential(store=store, data_dir=data_dir, clock=clock) is (
        OwnerCredential.PRESENT
    )


def test_processes_starting_together_make_one_owner_credential(tmp_path: Path) -> None:
    """Separate processes on one data dir (a `--workers N` start, a CLI
    beside a server): the file with O_EXCL, the record under the lock."""
    data_dir = tmp_path / "data"
    open_json(data_dir)
    read_end, write_end = os.pipe()
    children = []
    for _ in range(6):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 1
            try:
                os.close(write_end)
                os.read(read_end, 1)  # all start at once
                ensure_owner_credential(
                    store=open_json(data_dir), data_dir=data_dir, clock=FakeClock()
                )
                code = 0
            finally:
                os._exit(code)
        children.append(pid)
    os.close(read_end)
    os.write(write_end, b"go" * 6)
    os.close(write_end)
    assert [wait_child(pid) for pid in children] == [0] * 6
    store = open_json(data_dir)
    owners = [t for t in list_tokens(store=store) if t.kind == "owner_credential"]
    assert len(owners) == 1
    token = read_owner_token(data_dir)
    assert token is not None
    assert owners[0].name == "local"
    assert not [p for p in data_dir.iterdir() if p.name.endswith(".new")]
