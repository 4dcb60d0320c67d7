"""The limits over real HTTP: `valhalla serve` in a subprocess, raw sockets
where a well-behaved client library would not misbehave enough."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.conftest import FakeClock
from tests.live.server import LiveServer
from valhalla_gov.auth.service import create_token
from valhalla_gov.compose import open_json
from valhalla_gov.security.server import MAX_HEADER_BYTES

pytestmark = pytest.mark.live

MB = 1024 * 1024


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _status_line(sock: socket.socket) -> str:
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.split(b"\r\n", 1)[0].decode("latin-1")


def _connect(server: LiveServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    return sock


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A fresh data dir (only the owner credential), short deadlines, few
    writes. (Connections per client and busy ones: test_live_connections.py.)"""
    data_dir = tmp_path_factory.mktemp("limited") / "data"
    env = {
        "VALHALLA_HEADER_TIMEOUT_SECONDS": "1",
        "VALHALLA_BODY_TIMEOUT_SECONDS": "1",
        "VALHALLA_RATE_LIMIT_WRITES": "3/minute",
    }
    with LiveServer(data_dir, env=env) as server:
        yield server


@pytest.fixture(scope="module")
def tokened(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, str]]:
    """A token exists; 127.0.0.1 is a trusted proxy; access log on."""
    data_dir = tmp_path_factory.mktemp("tokened") / "data"
    _, token = create_token(
        store=open_json(data_dir), name="ops", scopes=["owner"], actor="t", clock=FakeClock()
    )
    env = {"VALHALLA_TRUSTED_PROXIES": "127.0.0.1"}
    with LiveServer(data_dir, env=env, log_level="info") as server:
        yield server, token


def test_rebinding_is_refused_over_http(limited: LiveServer) -> None:
    hostile = {"Host": f"attacker.example:{limited.port}"}
    with limited.client() as http:
        response = http.post(
            "/core/cone/state",
            json={"band": "D", "reason": "rebinding"},
            headers={**hostile, "Origin": f"http://attacker.example:{limited.port}"},
        )
        assert response.status_code == 421
        img = http.get(
            "/core/cone/decide",
            params={"engine": "fx_arbitrage", "action": "scale"},
            headers={"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Dest": "image"},
        )
        assert img.status_code == 403
        assert http.get("/core/cone/state").json()["band"] == "B"
        assert http.get("/core/audit/events").json()["items"] == []


def test_forwarded_for_is_not_believed_by_default(limited: LiveServer) -> None:
    """X-Forwarded-For from 127.0.0.1 gives no fresh rate-limit counter (they
    are per identity) and changes nobody's identity."""
    with limited.client() as http:
        statuses = []
        for n in range(4):
            spoof = {"X-Forwarded-For": f"203.0.113.{n}"}
            response = http.post(
                "/core/cone/decide", json={"engine": "flips", "action": "run"}, headers=spoof
            )
            statuses.append(response.status_code)
        assert statuses == [200, 200, 200, 429]
        who = http.get("/core/whoami", headers={"X-Forwarded-For": "localhost"}).json()
        assert who["name"] == "local"
        anonymous = httpx.get(
            f"{limited.url}/core/whoami", headers={"X-Forwarded-For": "127.0.0.1"}, timeout=10
        )
        assert anonymous.status_code == 401  # nor does it make anyone local


def test_forwarded_for_is_believed_from_a_trusted_proxy(tokened: tuple[LiveServer, str]) -> None:
    server, token = tokened
    with httpx.Client(base_url=server.url, timeout=10) as http:
        response = http.get(
            "/core/whoami",
            headers={"X-Forwarded-For": "198.51.100.23", "Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 200
    deadline = time.monotonic() + 10
    clients: list[str | None] = []
    while time.monotonic() < deadline and "198.51.100.23" not in clients:
        lines = server.log_path.read_text().splitlines()
        clients = [json.loads(line).get("client") for line in lines if line.startswith("{")]
        time.sleep(0.1)
    assert "198.51.100.23" in clients


def test_a_huge_header_is_refused_and_the_server_lives_on(limited: LiveServer) -> None:
    with _connect(limited) as sock:
        sock.sendall(b"GET /core/whoami HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ")
        with contextlib.suppress(OSError):  # the server may close while we send
            for _ in range(20):
                sock.sendall(b"a" * MB)
        status = _status_line(sock)
    assert status.startswith("HTTP/1.1 4"), status
    assert httpx.get(f"{limited.url}/core/healthz", timeout=10).status_code == 200


def _auth(server: LiveServer) -> bytes:
    return b"Authorization: Bearer " + server.owner_token.encode() + b"\r\n"


def _request_head(server: LiveServer, extra_header_bytes: int) -> bytes:
    return (
        b"GET /core/whoami HTTP/1.1\r\nHost: localhost\r\n"
        + _auth(server)
        + b"X-Pad: "
        + b"p" * extra_header_bytes
        + b"\r\n\r\n"
    )


def test_a_head_just_past_the_cap_is_431_and_one_just_under_is_served(
    limited: LiveServer,
) -> None:
    with _connect(limited) as sock:
        sock.sendall(_request_head(limited, MAX_HEADER_BYTES + 16))
        assert _status_line(sock) == "HTTP/1.1 431 Request Header Fields Too Large"
    with _connect(limited) as sock:
        sock.sendall(_request_head(limited, MAX_HEADER_BYTES - 200))
        assert _status_line(sock) == "HTTP/1.1 200 OK"


def test_the_head_cap_counts_each_request_on_a_kept_alive_connection(
    limited: LiveServer,
) -> None:
    # Several heads under the cap on one connection: each is counted alone,
    # even when the end of a head is split across reads.
    with _connect(limited) as sock:
        for _ in range(3):
            head = _request_head(limited, MAX_HEADER_BYTES // 2)
            sock.sendall(head[:-3])
            time.sleep(0.05)
            sock.sendall(head[-3:])
            assert _one_response(sock) == "HTTP/1.1 200 OK"


def test_a_body_arriving_with_its_head_does_not_count_as_head(limited: LiveServer) -> None:
    body = json.dumps({"notes": "n" * (MAX_HEADER_BYTES + 8000)}).encode()
    with _connect(limited) as sock:
        sock.sendall(
            b"POST /core/go/end_session HTTP/1.1\r\nHost: localhost\r\n"
            + _auth(limited)
            + b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
            + body
        )
        status = _status_line(sock)
    assert not status.startswith("HTTP/1.1 431"), status
    assert status.startswith("HTTP/1.1 2") or status.startswith("HTTP/1.1 4"), status


def _one_response(sock: socket.socket) -> str:
    """Read one whole response (by its Content-Length); its status line."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, "the server closed the connection"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    length = next(
        int(line.split(b":", 1)[1]) for line in lines if line.lower().startswith(b"content-length:")
    )
    while len(rest) < length:
        rest += sock.recv(4096)
    assert len(rest) == length, "a response carried more than its Content-Length"
    return lines[0].decode()


def test_slow_headers_are_cut_off(limited: LiveServer) -> None:
    with _connect(limited) as sock:
        sock.sendall(b"GET /core/healthz HTTP/1.1\r\nHost: localh")
        # The one-second header deadline closes the connection: recv sees EOF.
        assert sock.recv(4096) == b""


def test_a_slow_body_is_408(limited: LiveServer) -> None:
    with _connect(limited) as sock:
        sock.sendall(
            b"POST /core/go/end_session HTTP/1.1\r\nHost: localhost\r\n"
            + _auth(limited)
            + b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"no'
        )
        assert _status_line(sock) == "HTTP/1.1 408 Request Timeout"


def test_a_slow_unauthenticated_body_is_408_and_closed(limited: LiveServer) -> None:
    """The sign-in's body is its credential: read without one, but timed too,
    and the connection is closed after the 408 (not kept for another try)."""
    with _connect(limited) as sock:
        sock.sendall(
            b"POST /core/auth/signin HTTP/1.1\r\nHost: localhost\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
        )
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
        assert data.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), data[:200]
        assert b"connection: close" in data.lower()


def _send_body(sock: socket.socket, size: int, chunked: bool) -> None:
    block = b"x" * (256 * 1024)
    sent = 0
    with contextlib.suppress(OSError):
        while sent < size:
            if chunked:
                sock.sendall(b"%x\r\n" % len(block) + block + b"\r\n")
            else:
                sock.sendall(block)
            sent += len(block)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_50_mb_unauthenticated_body_is_answered_without_growing_the_server(
    tokened: tuple[LiveServer, str], chunked: bool
) -> None:
    server, _ = tokened
    assert server.proc is not None
    httpx.get(f"{server.url}/core/healthz", timeout=10)  # warm
    before = _rss_kib(server.proc.pid)
    framing = (
        b"Transfer-Encoding: chunked\r\n" if chunked else b"Content-Length: %d\r\n" % (50 * MB)
    )
    with _connect(server) as sock:
        sock.sendall(
            b"POST /core/cone/state HTTP/1.1\r\nHost: localhost\r\n"
            b"Content-Type: application/json\r\n" + framing + b"\r\n"
        )
        sender = threading.Thread(target=_send_body, args=(sock, 50 * MB, chunked))
        sender.start()
        status = _status_line(sock)
        with contextlib.suppress(OSError):  # already closed by the server
            sock.shutdown(socket.SHUT_RDWR)
        sender.join(timeout=60)
    assert status.startswith("HTTP/1.1 401"), status
    grown_mib = (_rss_kib(server.proc.pid) - before) / 1024
    assert grown_mib < 16, f"server grew by {grown_mib:.1f} MiB"


def test_an_authenticated_body_past_the_cap_is_413(tokened: tuple[LiveServer, str]) -> None:
    server, token = tokened
    with _connect(server) as sock:
        sock.sendall(
            b"POST /core/cone/state HTTP/1.1\r\nHost: localhost\r\n"
            b"Authorization: Bearer " + token.encode() + b"\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        sender = threading.Thread(target=_send_body, args=(sock, 5 * MB, True))
        sender.start()
        status = _status_line(sock)
        with contextlib.suppress(OSError):  # already closed by the server
            sock.shutdown(socket.SHUT_RDWR)
        sender.join(timeout=60)
    assert status.startswith("HTTP/1.1 413"), status
