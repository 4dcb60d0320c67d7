"""Rate limits per identity, in memory and in Redis."""

from __future__ import annotations

import logging
import socket
import threading
import uuid
from pathlib import Path

import httpx2 as httpx
import pytest
from fastapi.testclient import TestClient

from tests.auth.conftest import REMOTE, make_app, make_tokens
from tests.conftest import FakeClock, join_all, need
from tests.live.server import LiveServer
from valhalla_gov.auth.service import create_token
from valhalla_gov.compose import open_json
from valhalla_gov.settings import Settings

REDIS_URL = "redis://127.0.0.1:6379/0"


def redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def test_start_session_limit_is_per_identity_and_changes_nothing(
    data_dir: Path, clock: FakeClock
) -> None:
    tokens = make_tokens(data_dir, clock)
    app = make_app(data_dir, clock, rate_limit_start_session="2/hour")
    op = tokens.header("operator")
    with TestClient(app, client=REMOTE) as client:
        for _ in range(2):
            ok = client.post("/core/go/start_session", json={}, headers=op)
            assert ok.status_code == 200
            assert ok.headers["RateLimit-Limit"] == "2"
            client.post("/core/go/end_session", json={}, headers=op)
        assert ok.headers["RateLimit-Remaining"] == "0"
        before = client.get("/core/go/session", headers=op).json()
        audit_before = client.get("/core/audit/events", headers=op).json()["items"]
        limited = client.post("/core/go/start_session", json={}, headers=op)
        assert limited.status_code == 429
        assert 3500 <= int(limited.headers["Retry-After"]) <= 3600
        assert limited.headers["RateLimit-Remaining"] == "0"
        assert "rate limit" in limited.json()["detail"]
        assert client.get("/core/go/session", headers=op).json() == before
        assert client.get("/core/audit/events", headers=op).json()["items"] == audit_before
        # The owner token has its own budget.
        other = client.post("/core/go/start_session", json={}, headers=tokens.header("owner"))
        assert other.status_code == 200


def test_writes_limit_and_anonymous_clients_keyed_by_address(
    data_dir: Path, clock: FakeClock
) -> None:
    app = make_app(data_dir, clock, rate_limit_writes="3/minute")
    body = {"step_id": "intake_ready"}
    with (
        TestClient(app, client=("127.0.0.1", 1)) as first,
        TestClient(app, client=("127.0.0.2", 1)) as second,
    ):
        codes = [first.post("/core/go/complete", json=body).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        assert second.post("/core/go/complete", json=body).status_code == 200
        # Reads are not limited.
        assert all(first.get("/core/go/checklist").status_code == 200 for _ in range(5))


def test_bad_limit_notation_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="not a rate limit"):
        Settings(rate_limit_writes="lots")


def test_unreachable_redis_refuses_writes_by_default(
    data_dir: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(data_dir, clock, redis_url="redis://127.0.0.1:1/0")
    with TestClient(app, client=("127.0.0.1", 1)) as client, caplog.at_level(logging.ERROR):
        resp = client.post("/core/go/start_session", json={})
        assert resp.status_code == 503
        assert "rate-limit store" in resp.json()["detail"]
        assert client.get("/core/go/session").json()["active"] is False
        assert client.get("/core/go/session").status_code == 200
    assert "redis://127.0.0.1:1 unreachable" in caplog.text


def test_unreachable_redis_can_fail_open(data_dir: Path, clock: FakeClock) -> None:
    app = make_app(data_dir, clock, redis_url="redis://127.0.0.1:1/0", rate_limit_fail_open=True)
    with TestClient(app, client=("127.0.0.1", 1)) as client:
        assert client.post("/core/go/start_session", json={}).status_code == 200


def test_redis_limit_is_shared_by_two_server_processes(tmp_path: Path, clock: FakeClock) -> None:
    need(redis_up(), "Redis on 127.0.0.1:6379 is needed: apt-get install redis-server")
    data_dir = tmp_path / "data"
    # A fresh token name gives fresh Redis keys, so runs never see each other's counts.
    name = f"shared-{uuid.uuid4().hex[:12]}"
    _, token = create_token(
        store=open_json(data_dir), name=name, scopes=["operator"], actor="t", clock=clock
    )
    env = {"VALHALLA_REDIS_URL": REDIS_URL, "VALHALLA_RATE_LIMIT_WRITES": "6/minute"}
    headers = {"Authorization": f"Bearer {token}"}
    body = {"step_id": "intake_ready"}
    with LiveServer(data_dir, env=env) as one, LiveServer(data_dir, env=env) as two:
        codes = []
        for n in range(8):
            url = (one if n % 2 == 0 else two).url
            codes.append(
                httpx.post(f"{url}/core/go/complete", json=body, headers=headers).status_code
            )
        assert codes == [200] * 6 + [429, 429]
        results: list[int] = []
        lock = threading.Lock()

        def burst(url: str) -> None:
            resp = httpx.post(f"{url}/core/go/complete", json=body, headers=headers)
            with lock:
                results.append(resp.status_code)

        threads = [threading.Thread(target=burst, args=(s.url,)) for s in (one, two)]
        for t in threads:
            t.start()
        join_all(threads)
        assert results == [429, 429]
