"""Rate limits per identity, in memory and in Redis."""

from __future__ import annotations

import json
import logging
import socket
import threading
import uuid
from pathlib import Path

import httpx2 as httpx
import pytest
from fastapi.testclient import TestClient

from tests.auth.conftest import REMOTE, make_app, make_tokens
from tests.conftest import FakeClock, join_all, need, owner_headers
from tests.live.server import LiveServer
from valhalla_gov.auth.ratelimit import RULE_START_SESSION, RateLimiter
from valhalla_gov.auth.service import create_token
from valhalla_gov.compose import open_json
from valhalla_gov.errors import RateLimitedError
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


def test_writes_limit_is_keyed_by_identity_not_address(data_dir: Path, clock: FakeClock) -> None:
    owner = owner_headers(data_dir)
    tokens = make_tokens(data_dir, clock)
    app = make_app(data_dir, clock, rate_limit_writes="3/minute")
    body = {"step_id": "intake_ready"}
    with (
        TestClient(app, client=("127.0.0.1", 1), headers=owner) as first,
        TestClient(app, client=("127.0.0.2", 1), headers=owner) as moved,
        TestClient(app, client=("127.0.0.1", 1)) as same_address,
    ):
        codes = [first.post("/core/go/complete", json=body).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        # Another address gives the same credential no fresh budget ...
        assert moved.post("/core/go/complete", json=body).status_code == 429
        # ... and another credential from the same address has its own.
        op = tokens.header("operator")
        assert same_address.post("/core/go/complete", json=body, headers=op).status_code == 200
        # Reads are not limited.
        assert all(first.get("/core/go/checklist").status_code == 200 for _ in range(5))


def test_bad_limit_notation_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="not a rate limit"):
        Settings(rate_limit_writes="lots")


def test_unreachable_redis_refuses_writes_by_default(
    data_dir: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    owner = owner_headers(data_dir)
    app = make_app(data_dir, clock, redis_url="redis://127.0.0.1:1/0")
    with (
        TestClient(app, client=("127.0.0.1", 1), headers=owner) as client,
        caplog.at_level(logging.ERROR),
    ):
        resp = client.post("/core/go/start_session", json={})
        assert resp.status_code == 503
        assert "rate-limit store" in resp.json()["detail"]
        assert client.get("/core/go/session").json()["active"] is False
        assert client.get("/core/go/session").status_code == 200
    assert "redis://127.0.0.1:1 unreachable" in caplog.text


def test_unreachable_redis_can_fail_open(data_dir: Path, clock: FakeClock) -> None:
    owner = owner_headers(data_dir)
    app = make_app(data_dir, clock, redis_url="redis://127.0.0.1:1/0", rate_limit_fail_open=True)
    with TestClient(app, client=("127.0.0.1", 1), headers=owner) as client:
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


# -- worker processes without Redis ---------------------------------------------


def test_limiters_sharing_a_dir_count_together(tmp_path: Path) -> None:
    """What each worker process builds: two limiters, one SQLite file."""
    one, two = (
        RateLimiter(start_session="5/hour", writes="1000/minute", shared_dir=tmp_path)
        for _ in range(2)
    )
    allowed = 0
    for n in range(8):
        try:
            (one if n % 2 else two).hit(RULE_START_SESSION, "token:x")
            allowed += 1
        except RateLimitedError:
            pass
    assert allowed == 5
    # Another identity has its own budget in the same file.
    assert one.hit(RULE_START_SESSION, "token:y")["RateLimit-Remaining"] == "4"


def test_the_shared_file_never_gives_out_more_than_the_limit_under_contention(
    tmp_path: Path,
) -> None:
    limiters = [
        RateLimiter(start_session="25/hour", writes="1/minute", shared_dir=tmp_path)
        for _ in range(4)
    ]
    allowed: list[int] = []
    lock = threading.Lock()

    def hammer(limiter: RateLimiter) -> None:
        for _ in range(15):
            try:
                limiter.hit(RULE_START_SESSION, "token:busy")
            except RateLimitedError:
                continue
            with lock:
                allowed.append(1)

    threads = [threading.Thread(target=hammer, args=(limiter,)) for limiter in limiters]
    for t in threads:
        t.start()
    join_all(threads)
    assert len(allowed) == 25


@pytest.mark.live
def test_three_workers_without_redis_enforce_the_configured_limit(tmp_path: Path) -> None:
    """``--workers 3``, no Redis: 429 at the configured count, not at 3 times it.
    Requests go out concurrently on fresh connections so every worker takes
    some; the JSON access log shows which ones did."""
    # Cone decisions: every one counts (a refused session start does not).
    limit, extra = 12, 6
    env = {"VALHALLA_RATE_LIMIT_WRITES": f"{limit}/hour"}
    decide = {"engine": "flips", "action": "run"}
    with LiveServer(tmp_path / "data", workers=3, env=env, log_level="info") as server:
        codes: list[int] = []
        lock = threading.Lock()
        barrier = threading.Barrier(limit + extra)

        def start() -> None:
            with server.client(timeout=30) as http:
                barrier.wait(30)
                resp = http.post("/core/cone/decide", json=decide)
            with lock:
                codes.append(resp.status_code)

        threads = [threading.Thread(target=start) for _ in range(limit + extra)]
        for t in threads:
            t.start()
        join_all(threads)
        assert sorted(codes) == sorted([200] * limit + [429] * extra), codes
        after = httpx.post(f"{server.url}/core/cone/decide", json=decide, headers=server.headers)
        assert after.status_code == 429
    lines = [
        json.loads(line)
        for line in server.log_path.read_text().splitlines()
        if line.startswith("{")
    ]
    pids = {
        x["pid"]
        for x in lines
        if x.get("logger") == "valhalla_gov.access" and x.get("route") == "/core/cone/decide"
    }
    assert len(pids) >= 2, "one worker took every request: the test proved nothing"


@pytest.mark.parametrize("name", ["rate_limit_start_session", "rate_limit_writes"])
def test_default_limits_parse_and_bad_ones_are_refused(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Settings skip parsing their own defaults (to keep `limits` out of the
    # CLI's start-up): the defaults must be valid notation.
    from limits import parse
    from pydantic import ValidationError

    default = Settings.model_fields[name].default
    assert parse(default).amount > 0
    monkeypatch.setenv(f"VALHALLA_{name.upper()}", "ten per hour")
    with pytest.raises(ValidationError, match="is not a rate limit"):
        Settings()
