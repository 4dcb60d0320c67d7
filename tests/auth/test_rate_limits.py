"""Rate limits per identity, in memory and in Redis."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import stat
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest
from fastapi.testclient import TestClient

from tests.auth.conftest import REMOTE, make_app, make_tokens
from tests.conftest import FakeClock, join_all, need, owner_headers
from tests.live.server import LiveServer
from valhalla_gov.auth.ratelimit import (
    RATE_LIMIT_DB,
    REDIS_TIMEOUT_SECONDS,
    RULE_START_SESSION,
    RULE_WRITES,
    RateLimiter,
)
from valhalla_gov.auth.service import create_token
from valhalla_gov.compose import open_json
from valhalla_gov.errors import RateLimitedError, ServiceUnavailableError
from valhalla_gov.settings import Settings
from valhalla_gov.storage.errors import StorageUnavailableError

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
        answers: list[str] = []
        lock = threading.Lock()
        barrier = threading.Barrier(limit + extra)

        def start() -> None:
            with server.client(timeout=30) as http:
                barrier.wait(30)
                resp = http.post("/core/cone/decide", json=decide)
            with lock:
                codes.append(resp.status_code)
                answers.append(f"{resp.status_code} {resp.text[:200]}")

        threads = [threading.Thread(target=start) for _ in range(limit + extra)]
        for t in threads:
            t.start()
        join_all(threads)
        assert sorted(codes) == sorted([200] * limit + [429] * extra), answers
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


# -- a Redis that does not answer -----------------------------------------------------


class SilentServer:
    """A TCP listener that accepts connections and never answers: a Redis
    that hangs (a closed port would refuse at once, which is the easy case)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                self.accepted.append(self.sock.accept()[0])

    def close(self) -> None:
        self.sock.close()
        for conn in self.accepted:
            conn.close()


@pytest.fixture
def silent_redis() -> Iterator[SilentServer]:
    server = SilentServer()
    try:
        yield server
    finally:
        server.close()


def test_a_redis_that_does_not_answer_is_asked_once_per_outage_period(
    silent_redis: SilentServer,
) -> None:
    """One caller waits for the short timeout; every other call in the next
    seconds answers at once (refused: fail closed) without a connection."""
    limiter = RateLimiter(
        start_session="10/hour",
        writes="10/minute",
        redis_url=f"redis://127.0.0.1:{silent_redis.port}/0",
        outage_retry_seconds=0.5,
    )
    for n in range(10):
        with pytest.raises(ServiceUnavailableError, match="rate-limit store"):
            limiter.hit(RULE_WRITES, f"token:t{n}")
    assert len(silent_redis.accepted) == 1
    time.sleep(0.6)  # the period is over: it is asked again, once
    for _ in range(3):
        with pytest.raises(ServiceUnavailableError):
            limiter.check(RULE_START_SESSION, "token:t")
    assert len(silent_redis.accepted) == 2


def test_a_redis_that_does_not_answer_can_fail_open(silent_redis: SilentServer) -> None:
    limiter = RateLimiter(
        start_session="10/hour",
        writes="10/minute",
        redis_url=f"redis://127.0.0.1:{silent_redis.port}/0",
        fail_open=True,
    )
    assert [limiter.hit(RULE_WRITES, "token:t") for _ in range(5)] == [{}] * 5
    assert limiter.record(RULE_START_SESSION, "token:t") == {}
    assert len(silent_redis.accepted) == 1


def test_redis_is_given_short_timeouts() -> None:
    limiter = RateLimiter(start_session="1/hour", writes="1/minute", redis_url=REDIS_URL)
    pool = limiter._limiter.storage.storage.connection_pool  # type: ignore[attr-defined]
    assert pool.connection_kwargs["socket_timeout"] == REDIS_TIMEOUT_SECONDS
    assert pool.connection_kwargs["socket_connect_timeout"] == REDIS_TIMEOUT_SECONDS
    assert REDIS_TIMEOUT_SECONDS <= 1


def test_redis_comes_back_after_an_outage(tmp_path: Path) -> None:
    """A failed store is tried again after the period, and counts as before."""
    need(redis_up(), "Redis on 127.0.0.1:6379 is needed: apt-get install redis-server")
    limiter = RateLimiter(
        start_session="10/hour", writes="3/minute", redis_url=REDIS_URL, outage_retry_seconds=0.2
    )
    key = f"token:back-{uuid.uuid4().hex[:12]}"
    limiter._down_until = time.monotonic() + 0.2  # as after a failed call
    with pytest.raises(ServiceUnavailableError):
        limiter.hit(RULE_WRITES, key)
    time.sleep(0.3)
    assert limiter.hit(RULE_WRITES, key)["RateLimit-Remaining"] == "2"
    assert limiter._down_until == 0.0


# -- called from worker threads ---------------------------------------------------------


def _limiter(backend: str, tmp_path: Path) -> RateLimiter:
    if backend == "redis":
        need(redis_up(), "Redis on 127.0.0.1:6379 is needed: apt-get install redis-server")
    return RateLimiter(
        start_session="10/hour",
        writes="50/minute",
        redis_url=REDIS_URL if backend == "redis" else None,
        shared_dir=tmp_path / "rl" if backend == "shared file" else None,
    )


@pytest.mark.parametrize("backend", ["memory", "shared file", "redis"])
def test_one_limiter_called_from_many_threads_counts_exactly(backend: str, tmp_path: Path) -> None:
    """What the HTTP guard does: one limiter, calls from the worker threads."""
    limiter = _limiter(backend, tmp_path)
    assert limiter.blocking is (backend != "memory")
    key = f"token:threads-{uuid.uuid4().hex[:12]}"
    allowed: list[int] = []
    lock = threading.Lock()

    def hammer() -> None:
        for _ in range(12):
            try:
                limiter.hit(RULE_WRITES, key)
            except RateLimitedError:
                continue
            with lock:
                allowed.append(1)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    join_all(threads)
    assert len(allowed) == 50


# -- the shared counters' directory -------------------------------------------------------


def _limiter_on(directory: Path) -> RateLimiter:
    return RateLimiter(start_session="5/hour", writes="5/minute", shared_dir=directory)


def test_the_shared_counters_are_private(tmp_path: Path) -> None:
    directory = tmp_path / "made" / "here"
    old = os.umask(0o002)
    try:
        _limiter_on(directory).hit(RULE_WRITES, "token:x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((directory / RATE_LIMIT_DB).stat().st_mode) == 0o600


def test_an_operators_readable_dir_is_made_private(tmp_path: Path) -> None:
    directory = tmp_path / "rl"
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    (directory / RATE_LIMIT_DB).touch(mode=0o644)
    _limiter_on(directory)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((directory / RATE_LIMIT_DB).stat().st_mode) == 0o600


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o1777])
def test_a_dir_others_can_write_is_refused(tmp_path: Path, mode: int) -> None:
    directory = tmp_path / "rl"
    directory.mkdir()
    directory.chmod(mode)
    with pytest.raises(StorageUnavailableError, match="writable by other users"):
        _limiter_on(directory)
    assert list(directory.iterdir()) == []


def _someone_elses(path: Path) -> Path:
    """``path``, owned by another user (as root: chown; else a root-owned path)."""
    if os.geteuid() == 0:
        os.chown(path, 65534, 65534)
        return path
    need(Path("/").stat().st_uid != os.geteuid(), "needs a directory of another user's")
    return Path("/")


def test_a_dir_of_another_user_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "rl"
    directory.mkdir(mode=0o700)
    directory = _someone_elses(directory)
    with pytest.raises(StorageUnavailableError, match="belongs to user"):
        _limiter_on(directory)
    assert not (directory / RATE_LIMIT_DB).exists()


def test_a_dir_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(StorageUnavailableError, match="not a symlink"):
        _limiter_on(tmp_path / "link")
    assert list(real.iterdir()) == []


@pytest.mark.parametrize("name", [RATE_LIMIT_DB, f"{RATE_LIMIT_DB}-wal", f"{RATE_LIMIT_DB}-shm"])
def test_a_planted_symlink_is_not_followed(tmp_path: Path, name: str) -> None:
    directory = tmp_path / "rl"
    directory.mkdir(mode=0o700)
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    (directory / name).symlink_to(victim)
    with pytest.raises(StorageUnavailableError):
        _limiter_on(directory)
    assert victim.read_bytes() == b"precious"


def test_a_counters_file_of_another_user_is_refused(tmp_path: Path) -> None:
    need(os.geteuid() == 0, "making a file of another user's needs root")
    directory = tmp_path / "rl"
    directory.mkdir(mode=0o700)
    planted = directory / RATE_LIMIT_DB
    planted.touch()
    os.chown(planted, 65534, 65534)
    with pytest.raises(StorageUnavailableError, match="not a regular file of this user's"):
        _limiter_on(directory)
