"""The open GO page sends its credential only to the server that issued it.

While the server is down another account can listen on its port; the page
keeps polling and reconnecting its stream, and must send that listener no
bearer token, only hellos (which carry no secret), until the real server
is back and has proven itself (POST /core/auth/hello).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import socket
import threading
import time

import pytest
from playwright.sync_api import Page, expect

from tests.live.server import LiveServer
from tests.ui.test_go_page import open_page
from valhalla_gov.auth.service import hash_token, revoke_token
from valhalla_gov.compose import open_json
from valhalla_gov.timeutil import utc_now

pytestmark = pytest.mark.live

TOKEN_KEY = "valhalla.go.token"
# How many requests the squatter waits for: enough that the page has gone
# through its reconnects and hello retries more than once.
REQUESTS_TO_SEE = 3


class Squatter:
    """A plain listener on the server's port that records every request it
    gets (head and body) and answers each with a plausible 200 JSON, a wrong
    proof for a hello: what another account could run there."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket()
        # As any program may: the killed server's connections linger in TIME_WAIT.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(64)
        self.requests: list[bytes] = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            data = b""
            try:
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                head, _, body = data.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    key, _, value = line.partition(b":")
                    if key.strip().lower() == b"content-length":
                        length = int(value.strip())
                while len(body) < length:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    body += chunk
                with self.lock:
                    self.requests.append(head + b"\r\n\r\n" + body)
                answer = (
                    b'{"proof": "' + b"0" * 64 + b'"}' if b"/core/auth/hello" in head else b"{}"
                )
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(answer), answer)
                )
            except OSError:
                return

    def seen(self) -> list[bytes]:
        with self.lock:
            return list(self.requests)

    def close(self) -> None:
        self.sock.close()
        self.thread.join(timeout=5)


def _wait_for_requests(squatter: Squatter, count: int, timeout: float = 60.0) -> list[bytes]:
    # Waits for evidence (requests arriving), not for a time: nothing is timed.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = squatter.seen()
        if len(seen) >= count:
            return seen
        time.sleep(0.1)
    return squatter.seen()


def test_a_squatter_on_the_port_gets_no_credential_and_the_page_recovers(
    page: Page, server: LiveServer
) -> None:
    open_page(page, server)  # signed in with a link: the page's own owner token
    expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
    token = page.evaluate(f"localStorage.getItem({TOKEN_KEY!r})")
    assert token
    assert token.startswith("vgo_")

    server.kill()  # a crash: the page is left open
    squatter = Squatter(server.port)
    try:
        seen = _wait_for_requests(squatter, REQUESTS_TO_SEE)
    finally:
        squatter.close()
    assert len(seen) >= REQUESTS_TO_SEE, seen  # the page kept trying
    for request in seen:
        head = request.partition(b"\r\n\r\n")[0].lower()
        assert b"\r\nauthorization:" not in head, request
        # Neither the token nor its hash (the key of the proof) went out.
        assert token.encode() not in request, request
        assert hash_token(token).encode() not in request, request
        # Only hellos: the page sent nothing else to a server it could not verify.
        assert request.startswith(b"POST /core/auth/hello HTTP/1.1\r\n"), request
    # Calm, and still signed in: a wrong proof is not a refusal.
    expect(page.locator("#message")).to_contain_text("Can't reach the server you signed in to")
    expect(page.locator("#live-status")).to_contain_text("can't reach the server")
    expect(page.locator("#signin")).to_be_hidden()
    assert page.evaluate(f"localStorage.getItem({TOKEN_KEY!r})") == token

    # The real server is back on the same address and data dir.
    server.start()
    # Recovered without signing in again: the stream is live, the message
    # gone, and a change made elsewhere shows up on the page by itself.
    expect(page.locator("#live-status")).to_have_attribute("data-state", "live", timeout=60000)
    expect(page.locator("#signin")).to_be_hidden()
    expect(page.locator("#message")).not_to_contain_text("Can't reach")
    with server.client() as http:
        changed = http.post("/core/cone/state", json={"band": "C", "reason": "after the squat"})
        assert changed.status_code == 200, changed.text
    expect(page.locator("#band-letter")).to_have_text("C")
    expect(page.locator("#band-reason")).to_have_text("after the squat")


def test_the_proof_without_webcrypto_is_the_servers(page: Page, quiet_server: LiveServer) -> None:
    """Plain HTTP to a LAN address is no secure context: the page then has no
    crypto.subtle and computes the proof itself. Both ways give the server's."""
    page.goto(quiet_server.url + "/")
    tokens = ["", "vgo_abc", "x" * 55, "x" * 56, "y" * 64, "z" * 119, "w" * 120, "ünï-☃"]
    nonce = secrets.token_hex(32)
    for token in tokens:
        fallback, webcrypto = page.evaluate(
            """async ([token, nonce]) => {
                const trust = await import("/ui/js/trust.js");
                const { sha256, hmacSha256, hex } = trust.fallbackForTests;
                const text = new TextEncoder();
                const mac = hmacSha256(sha256(text.encode(token)), text.encode(nonce));
                return [hex(mac), await trust.proof(token, nonce)];
            }""",
            [token, nonce],
        )
        key = hashlib.sha256(token.encode()).digest()
        expected = hmac.new(key, nonce.encode(), hashlib.sha256).hexdigest()
        assert fallback == expected, token
        assert webcrypto == expected, token


def test_a_page_revoked_while_the_server_was_down_returns_to_the_signin_screen(
    page: Page, server: LiveServer
) -> None:
    """After a restart the hello comes first; a revoked token's hello is
    refused (401), and the page asks for a sign-in instead of waiting."""
    open_page(page, server)
    expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
    name = page.evaluate("localStorage.getItem('valhalla.go.token-name')")
    assert name
    assert name.startswith("page-")
    server.stop()
    revoke_token(store=open_json(server.data_dir), name=name, actor="test", clock=utc_now)
    server.start()
    expect(page.locator("#signin")).to_be_visible(timeout=60000)
    expect(page.locator("#signin-reason")).to_contain_text("no longer works")
    assert page.evaluate(f"localStorage.getItem({TOKEN_KEY!r})") is None


def test_the_docs_page_sends_the_credential_only_after_a_right_proof(
    page: Page, server: LiveServer
) -> None:
    """The API docs page uses the GO page's credential: it too proves the
    server first. A wrong proof (here, answered by the browser's router in
    the server's place) and the credential stays home."""
    open_page(page, server)
    carried: list[str] = []
    page.on(
        "request",
        lambda r: carried.append(r.url) if "authorization" in r.all_headers() else None,
    )
    page.route(
        "**/core/auth/hello",
        lambda route: route.fulfill(status=200, json={"proof": "0" * 64}),
    )
    page.goto(f"{server.url}/docs")
    # Whichever comes: the page's message, or the API description loaded.
    page.wait_for_selector("#docs-message:not(:empty), .swagger-ui .info .title")
    assert carried == []
    expect(page.locator("#docs-message")).to_contain_text("Can't reach the server you signed in to")
    # The real server's proof: the API description loads with the credential.
    page.unroute("**/core/auth/hello")
    page.reload()
    page.wait_for_selector(".swagger-ui .info .title", timeout=20_000)
    assert any(url.endswith("/openapi.json") for url in carried), carried
