"""What `valhalla serve` does with connections, over real sockets: each
client's share of requests in progress, busy slots, stalled connections
closed to make room, the open cap under the fd limit, slow readers,
pipelined heads.

A second client needs a second address: connections from a non-loopback
address of this machine (to 127.0.0.1) are one client, loopback another.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import resource
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.conftest import FakeClock, need
from tests.live.server import LiveServer
from valhalla_gov.auth.service import create_token
from valhalla_gov.compose import open_json
from valhalla_gov.security.server import (
    FD_HEADROOM,
    LOOPBACK,
    MAX_HEADER_BYTES,
    client_key,
    open_cap,
)

pytestmark = pytest.mark.live

SHARE = 5  # VALHALLA_MAX_CONNECTIONS_PER_CLIENT in the fixtures below
BUSY = 8  # VALHALLA_MAX_CONNECTIONS


def _other_address() -> str:
    """An IPv4 address of this machine that is not loopback."""
    candidates: list[str] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe, contextlib.suppress(OSError):
        probe.connect(("192.0.2.1", 9))  # a UDP "connect" sends nothing
        candidates.append(probe.getsockname()[0])
    with contextlib.suppress(OSError):
        candidates += [
            str(info[4][0])
            for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
        ]
    for address in candidates:
        if not ipaddress.ip_address(address).is_loopback:
            with contextlib.suppress(OSError), socket.socket() as sock:
                sock.bind((address, 0))
                return address
    need(False, "these tests need a non-loopback IPv4 address on this machine")
    raise AssertionError  # need() skips or fails


def _connect(server: LiveServer, source: str = "127.0.0.1", rcvbuf: int = 0) -> socket.socket:
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.bind((source, 0))
    sock.settimeout(30)
    sock.connect(("127.0.0.1", server.port))
    return sock


def _read_all(sock: socket.socket, timeout: float = 30) -> bytes:
    """Everything until the server closes (a reset ends it too)."""
    sock.settimeout(timeout)
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(1 << 20):
            data += chunk
    return data


def _get(path: str, *, host: str = "localhost", extra: bytes = b"") -> bytes:
    return b"GET %s HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (path.encode(), host.encode(), extra)


def _auth(server: LiveServer) -> bytes:
    """The owner's credential as a header line, for requests written by hand."""
    return b"Authorization: Bearer %s\r\n" % server.owner_token.encode()


def _status(sock: socket.socket, request: bytes) -> str:
    """Send ``request`` (asking for the connection to close); the status line."""
    sock.sendall(request.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1))
    return _read_all(sock).split(b"\r\n", 1)[0].decode("latin-1")


def _responses(sock: socket.socket, count: int) -> list[str]:
    """Read ``count`` whole responses (sized by Content-Length); their status
    lines, then whatever status line follows before the server closes."""
    sock.settimeout(30)
    buffer, statuses = b"", list[str]()
    while len(statuses) < count:
        while b"\r\n\r\n" not in buffer:
            chunk = sock.recv(65536)
            assert chunk, f"the server closed after {statuses}"
            buffer += chunk
        head, _, buffer = buffer.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        statuses.append(lines[0].decode("latin-1"))
        length = next(
            int(line.split(b":", 1)[1])
            for line in lines
            if line.lower().startswith(b"content-length:")
        )
        while len(buffer) < length:
            chunk = sock.recv(65536)
            assert chunk, "the server closed inside a response"
            buffer += chunk
        buffer = buffer[length:]
    return statuses


# -- one client's share ---------------------------------------------------------

GRACE = 0.5  # VALHALLA_STALL_GRACE_SECONDS where eviction is tested
NEVER = "300"  # ... and where it must not happen during a test


def _owner_server(
    tmp_path_factory: pytest.TempPathFactory, name: str, env: dict[str, str]
) -> tuple[LiveServer, str]:
    """A server (not started) over a data dir with an owner token."""
    data_dir = tmp_path_factory.mktemp(name) / "data"
    _, token = create_token(
        store=open_json(data_dir), name="ops", scopes=["owner"], actor="t", clock=FakeClock()
    )
    return LiveServer(data_dir, env=env), token


@pytest.fixture(scope="module")
def crowded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, str]]:
    """Few requests in progress, long head and body deadlines, no eviction of
    requests in progress, a token for every client."""
    env = {
        "VALHALLA_HEADER_TIMEOUT_SECONDS": "30",
        "VALHALLA_BODY_TIMEOUT_SECONDS": "30",
        "VALHALLA_MAX_CONNECTIONS": str(BUSY),
        "VALHALLA_MAX_CONNECTIONS_PER_CLIENT": str(SHARE),
        "VALHALLA_STALL_GRACE_SECONDS": NEVER,
    }
    server, token = _owner_server(tmp_path_factory, "crowded", env)
    with server:
        yield server, token


@contextlib.contextmanager
def _held(sockets: list[socket.socket]) -> Iterator[list[socket.socket]]:
    try:
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


def _served_again(server: LiveServer, source: str = "127.0.0.1") -> None:
    """Wait until closed connections are off the server's books."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with _connect(server, source) as sock:
            if _status(sock, _get("/core/healthz")) == "HTTP/1.1 200 OK":
                return
        time.sleep(0.1)
    raise AssertionError("the server did not serve again once the connections closed")


def _still_open(sock: socket.socket) -> bool:
    """Whether the server has neither closed ``sock`` nor written to it."""
    sock.setblocking(False)
    try:
        sock.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return True
    except ConnectionError:
        return False
    finally:
        sock.setblocking(True)
    return False


def _whoami(sock: socket.socket, token: str) -> str:
    """The status of an authenticated request (the owner's, say) on ``sock``."""
    return _status(
        sock, _get("/core/whoami", extra=b"Authorization: Bearer %s\r\n" % token.encode())
    )


def test_idle_connections_deny_nobody(crowded: tuple[LiveServer, str]) -> None:
    """Idle connections (another local account's, say: all of loopback is
    one address) count towards no share: far more than a share of them, and
    the owner is still served from the same address."""
    server, token = crowded
    with _held([_connect(server) for _ in range(20 * SHARE)]) as idle:
        time.sleep(0.5)  # accepted and on the books
        with _connect(server) as owner:
            assert _whoami(owner, token) == "HTTP/1.1 200 OK"
        assert all(_still_open(sock) for sock in idle)


def test_every_loopback_address_is_the_same_client(crowded: tuple[LiveServer, str]) -> None:
    """A share is of requests in progress, and every loopback address shares one."""
    server, token = crowded
    other = _other_address()
    sources = [f"127.0.0.{n}" for n in range(2, 2 + SHARE)]
    with _held([_connect(server, source) for source in sources]) as busy:
        for sock in busy:
            _slow_post(sock, token)
        time.sleep(0.5)  # every head read: the loopback share in progress
        with _connect(server, "127.0.0.99") as fresh_address:
            assert _whoami(fresh_address, token) == "HTTP/1.1 503 Service Unavailable"
        with _connect(server, other) as someone_else:
            assert _status(someone_else, _get("/core/healthz")) == "HTTP/1.1 200 OK"
    _served_again(server)


def _slow_post(sock: socket.socket, token: str) -> None:
    """A whole head and the first byte of its body: busy until the rest."""
    sock.sendall(
        b"POST /core/cone/decide HTTP/1.1\r\nHost: localhost\r\n"
        b"Authorization: Bearer " + token.encode() + b"\r\n"
        b"Content-Type: application/json\r\nContent-Length: 40\r\n\r\n{"
    )


def test_busy_connections_past_the_limit_get_503(crowded: tuple[LiveServer, str]) -> None:
    server, token = crowded
    other = _other_address()
    loopback = [_connect(server) for _ in range(SHARE)]
    remote = [_connect(server, other) for _ in range(BUSY - SHARE)]
    with _held(loopback + remote):
        for sock in loopback + remote:
            _slow_post(sock, token)
        time.sleep(0.5)  # every head read: BUSY connections busy
        with _connect(server, other) as late:
            assert _status(late, _get("/core/healthz")) == "HTTP/1.1 503 Service Unavailable"
        # One finishes its body and is answered: its slot is free again.
        body = b'"engine": "flips", "action": "run"}'.ljust(39)
        loopback[0].sendall(body)
        assert _responses(loopback[0], 1)[0].startswith("HTTP/1.1 200")
        with _connect(server, other) as next_one:
            assert _status(next_one, _get("/core/healthz")) == "HTTP/1.1 200 OK"


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, str]]:
    env = {
        "VALHALLA_TRUSTED_PROXIES": "127.0.0.0/8",
        "VALHALLA_HEADER_TIMEOUT_SECONDS": "30",
        "VALHALLA_BODY_TIMEOUT_SECONDS": "30",
        "VALHALLA_MAX_CONNECTIONS_PER_CLIENT": str(SHARE),
        "VALHALLA_STALL_GRACE_SECONDS": NEVER,
    }
    server, token = _owner_server(tmp_path_factory, "proxied", env)
    with server:
        yield server, token


def test_a_trusted_proxy_has_a_larger_share_but_a_finite_one(
    proxied: tuple[LiveServer, str],
) -> None:
    """It speaks for many clients: four clients' shares. Not unlimited: any
    local account connecting to the port directly counts as the proxy."""
    server, token = proxied
    with _held([_connect(server) for _ in range(2 * SHARE)]) as first:
        for sock in first:
            _slow_post(sock, token)
        time.sleep(0.5)
        with _connect(server) as one_more:
            assert _whoami(one_more, token) == "HTTP/1.1 200 OK"
        with _held([_connect(server) for _ in range(2 * SHARE)]) as second:
            for sock in second:
                _slow_post(sock, token)
            time.sleep(0.5)
            with _connect(server) as past_the_share:
                assert _whoami(past_the_share, token) == "HTTP/1.1 503 Service Unavailable"
    _served_again(server)


def test_client_keys() -> None:
    assert client_key("127.0.0.1") == client_key("127.255.3.4") == client_key("::1") == LOOPBACK
    assert client_key("::ffff:127.0.0.9") == LOOPBACK
    assert client_key("::ffff:192.0.2.7") == client_key("192.0.2.7") == "192.0.2.7"
    assert client_key("192.0.2.7") != client_key("192.0.2.8")
    assert client_key("2001:db8:1:2::1") == client_key("2001:db8:1:2:ffff::9%eth0")
    assert client_key("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")


# -- stalled connections make room -------------------------------------------------

EVICTING_BUSY = 20


@pytest.fixture(scope="module")
def evicting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, str]]:
    """Long head and body deadlines, a short stall grace."""
    env = {
        "VALHALLA_HEADER_TIMEOUT_SECONDS": "60",
        "VALHALLA_BODY_TIMEOUT_SECONDS": "60",
        "VALHALLA_MAX_CONNECTIONS": str(EVICTING_BUSY),
        "VALHALLA_STALL_GRACE_SECONDS": str(GRACE),
    }
    server, token = _owner_server(tmp_path_factory, "evicting", env)
    with server:
        yield server, token


def _slow_signin(sock: socket.socket) -> None:
    """No credential needed: the sign-in's body is the credential. One byte of it."""
    sock.sendall(
        b"POST /core/auth/signin HTTP/1.1\r\nHost: localhost\r\n"
        b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
    )


def test_slow_bodies_make_room_for_the_owner(evicting: tuple[LiveServer, str]) -> None:
    """Every place held by a body that never comes: the owner's request
    closes the oldest of them (408) and is served; once it is, its place is
    free again and the next request closes nobody."""
    server, token = evicting
    with _held([_connect(server) for _ in range(EVICTING_BUSY)]) as slow:
        for sock in slow:
            _slow_signin(sock)
        time.sleep(GRACE + 0.5)  # every one in progress, and stalled
        for _ in range(3):
            with _connect(server) as owner:
                assert _whoami(owner, token) == "HTTP/1.1 200 OK"
        answer = _read_all(slow[0])
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
        assert b"connection: close" in answer
        assert all(_still_open(sock) for sock in slow[1:])
    _served_again(server)


# -- open connections stay under the fd limit ------------------------------------

FD_LIMIT = 400  # the server's soft RLIMIT_NOFILE in the fixture below
IDLE_FLOOD = 600


@pytest.fixture(scope="module")
def few_fds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, str]]:
    """A server started with a low fd limit (a child inherits its parent's),
    trusting a proxy on loopback as deploy/valhalla.env does: any local
    account connecting to the port directly counts as that proxy."""
    env = {"VALHALLA_TRUSTED_PROXIES": "127.0.0.1"}
    server, token = _owner_server(tmp_path_factory, "few-fds", env)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, hard))
    try:
        server.start()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        yield server, token
    finally:
        server.stop()


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_idle_connections_past_the_cap_close_the_oldest(few_fds: tuple[LiveServer, str]) -> None:
    """More idle connections than the fd limit allows: the oldest are closed
    as new ones come, the open ones stay under the cap, no fd runs out and
    the owner is served."""
    server, token = few_fds
    assert server.proc is not None
    cap = open_cap(4096, FD_LIMIT)
    assert cap == FD_LIMIT - FD_HEADROOM
    time.sleep(0.5)  # the start-up's connections closed
    before = _fds(server.proc.pid)
    with _held([]) as idle:
        for _ in range(IDLE_FLOOD):
            idle.append(_connect(server))
        time.sleep(1)  # all accepted, the oldest closed
        assert _fds(server.proc.pid) <= before + cap
        with _connect(server) as owner:
            assert _whoami(owner, token) == "HTTP/1.1 200 OK"
        assert _read_all(idle[0], timeout=5) == b""  # closed, without a word
        assert _still_open(idle[-1])
        assert _fds(server.proc.pid) <= before + cap
    log = server.log_path.read_text()
    assert "Too many open files" not in log
    assert "out of system resource" not in log


def test_the_open_cap_follows_the_fd_limit() -> None:
    assert open_cap(4096, 1024) == 1024 - FD_HEADROOM
    assert open_cap(4096, 65536) == 4096
    assert open_cap(100, resource.RLIM_INFINITY) == 100
    assert open_cap(4096, 10) == 1


# -- slow readers ------------------------------------------------------------------

WRITE_TIMEOUT = 2.0
READERS = 6  # stalled connections per wave
PIPELINED = 3  # requests each sends before it stops reading
BIG = "/core/audit/events?limit=500"


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def big_answers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A data dir whose newest 500 audit events make a ~10 MB answer."""
    data_dir = tmp_path_factory.mktemp("big") / "data"
    data_dir.mkdir(mode=0o700)
    with (data_dir / "audit.log").open("w") as log:
        for n in range(500):
            payload = {"n": n, "text": "x" * 20_000}
            event = {"ts_utc": "2025-01-01T00:00:00Z", "event": "BIG_NOTE", "payload": payload}
            log.write(json.dumps(event) + "\n")
    env = {"VALHALLA_WRITE_TIMEOUT_SECONDS": str(WRITE_TIMEOUT)}
    with LiveServer(data_dir, env=env, log_level="info") as server:
        yield server


def _served(server: LiveServer, path: str) -> int:
    """Requests for ``path`` the app has finished (its access log lines)."""
    lines = [
        json.loads(line)
        for line in server.log_path.read_text().splitlines()
        if line.startswith("{")
    ]
    return sum(
        1
        for line in lines
        if line.get("logger") == "valhalla_gov.access"
        and line.get("path") == path.partition("?")[0]
    )


def _wait_served(server: LiveServer, path: str, count: int) -> None:
    deadline = time.monotonic() + 10
    while _served(server, path) < count and time.monotonic() < deadline:
        time.sleep(0.05)


def _stall_a_wave(server: LiveServer) -> list[socket.socket]:
    """Connections that ask for the big answer and never read: half pipeline
    all their requests at once, half send the rest once their output is
    backed up."""
    request = _get(BIG, extra=_auth(server))
    stalled = [_connect(server, rcvbuf=4096) for _ in range(READERS)]
    for n, sock in enumerate(stalled):
        sock.sendall(request * (PIPELINED if n % 2 else 1))
    time.sleep(0.5)
    for sock in stalled[::2]:
        sock.sendall(request * (PIPELINED - 1))
    return stalled


def test_clients_that_never_read_hold_one_answer_for_the_write_timeout(
    big_answers: LiveServer,
) -> None:
    server = big_answers
    assert server.proc is not None
    whole = httpx.get(f"{server.url}{BIG}", headers=server.headers, timeout=60)
    assert whole.status_code == 200
    answer = len(whole.content)
    assert answer > 8_000_000  # more than the kernel's socket buffers take
    _wait_served(server, BIG, 1)  # its access line is written just after the answer
    served_before = _served(server, BIG)
    rss = []
    for _wave in range(3):
        with _held(_stall_a_wave(server)) as stalled:
            # Others are served meanwhile.
            assert httpx.get(f"{server.url}/core/healthz", timeout=30).status_code == 200
            time.sleep(WRITE_TIMEOUT + 2)
            # The server dropped each one with its pending output: reading now
            # gets what the kernel held, then the end, not the answers.
            received = [len(_read_all(sock)) for sock in stalled]
            assert all(size < answer for size in received), (received, answer)
        rss.append(_rss_mib(server.proc.pid))
    # Each stalled connection ran its first request only: the ones pipelined
    # behind it waited for output that never drained, and the ones sent
    # later were not even read.
    _wait_served(server, BIG, served_before + 3 * READERS)
    time.sleep(0.5)
    assert _served(server, BIG) - served_before == 3 * READERS
    # Memory comes back for reuse: the later waves grow the server by less
    # than one wave's answers (it would be twice that per wave if held).
    grown = rss[-1] - rss[0]
    assert grown < READERS * answer / 2**20, f"RSS per wave: {rss} MiB"
    assert httpx.get(f"{server.url}{BIG}", headers=server.headers, timeout=60).content == (
        whole.content
    )


# -- pipelined heads ---------------------------------------------------------------


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with LiveServer(tmp_path_factory.mktemp("plain") / "data") as server:
        yield server


def _first_request(kind: str, server: LiveServer) -> bytes:
    """A request with no body, a sized body or a chunked one."""
    if kind == "no body":
        return _get("/core/healthz")
    body = b'{"engine": "flips", "action": "run"}'
    head = (
        b"POST /core/cone/decide HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        + _auth(server)
    )
    if kind == "sized body":
        return head + b"Content-Length: %d\r\n\r\n" % len(body) + body
    frames = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:10], body[10:]))
    return head + b"Transfer-Encoding: chunked\r\n\r\n" + frames + b"0\r\n\r\n"


def _padded_get(pad: int) -> bytes:
    return _get("/core/healthz", extra=b"X-Pad: " + b"p" * pad + b"\r\n")


KINDS = ["no body", "sized body", "chunked body"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_pipelined_head_past_the_cap_is_431_after_the_answer_before_it(
    plain: LiveServer, kind: str
) -> None:
    # Both in one send: the second head arrives in the same read as the
    # first request's end.
    with _connect(plain) as sock:
        sock.sendall(_first_request(kind, plain) + _padded_get(MAX_HEADER_BYTES + 16))
        first, second = _responses(sock, 2)
        assert first == "HTTP/1.1 200 OK"
        assert second == "HTTP/1.1 431 Request Header Fields Too Large"
        assert _read_all(sock) == b""


@pytest.mark.parametrize("kind", KINDS)
def test_a_pipelined_head_under_the_cap_is_served(plain: LiveServer, kind: str) -> None:
    with _connect(plain) as sock:
        sock.sendall(_first_request(kind, plain) + _padded_get(MAX_HEADER_BYTES - 200))
        assert _responses(sock, 2) == ["HTTP/1.1 200 OK", "HTTP/1.1 200 OK"]
