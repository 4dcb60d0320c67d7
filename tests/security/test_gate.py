"""The security gate in process: Host allow-list, cross-site refusal,
authentication before the body, body cap and deadline, response headers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.auth.conftest import Tokens, make_app, make_tokens
from tests.conftest import FakeClock
from tests.security.helpers import data_dir_digest
from valhalla_gov.security.gate import allowed_host_names, host_name

LOOPBACK = ("127.0.0.1", 50000)
STATE_CHANGE = {"band": "D", "reason": "hostile"}


@pytest.fixture
def strict(data_dir: Path, clock: FakeClock) -> Iterator[TestClient]:
    """An app with the default Host list (no 'testserver'), seen from loopback."""
    app = make_app(data_dir, clock, allowed_hosts=[], cors_origins=["https://ops.example"])
    with TestClient(
        app, base_url="http://127.0.0.1:8000", raise_server_exceptions=False, client=LOOPBACK
    ) as client:
        yield client


# -- Host allow-list (DNS rebinding) --


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("localhost:8000", "localhost"),
        ("LOCALHOST", "localhost"),
        ("[::1]:8000", "::1"),
        ("127.0.0.1", "127.0.0.1"),
        ("evil.example:80", "evil.example"),
        ("[::1", None),
        ("host:port", None),
        ("", None),
    ],
)
def test_host_name_parsing(header: str, name: str | None) -> None:
    assert host_name(header) == name


def test_allowed_names_are_the_local_ones_the_bind_and_the_setting() -> None:
    assert allowed_host_names(None, []) == {"localhost", "127.0.0.1", "::1"}
    assert "10.1.2.3" in allowed_host_names("10.1.2.3", [])
    assert "0.0.0.0" not in allowed_host_names("0.0.0.0", [])
    assert "ops.lan" in allowed_host_names("0.0.0.0", [" OPS.lan "])


def test_a_rebinding_request_is_refused_before_it_acts(strict: TestClient, data_dir: Path) -> None:
    before = data_dir_digest(data_dir)
    # The reproduced attack: a foreign name with its matching Origin.
    response = strict.post(
        "/core/cone/state",
        json=STATE_CHANGE,
        headers={"Host": "attacker.example:8000", "Origin": "http://attacker.example:8000"},
    )
    assert response.status_code == 421
    assert "VALHALLA_ALLOWED_HOSTS" in response.json()["detail"]
    for path in ("/core/go/session", "/", "/docs", "/openapi.json", "/core/healthz"):
        assert strict.get(path, headers={"Host": "attacker.example"}).status_code == 421
    assert data_dir_digest(data_dir) == before
    assert strict.get("/core/cone/state").json()["band"] == "B"


@pytest.mark.parametrize("host", ["localhost:8000", "127.0.0.1:8000", "[::1]:8000", "localhost"])
def test_local_names_are_served(strict: TestClient, host: str) -> None:
    assert strict.get("/core/go/session", headers={"Host": host}).status_code == 200


def test_configured_names_are_served(data_dir: Path, clock: FakeClock) -> None:
    app = make_app(data_dir, clock, allowed_hosts="ops.lan", bind_host="192.0.2.5")
    with TestClient(app, raise_server_exceptions=False, client=LOOPBACK) as client:
        for host in ("ops.lan:8000", "192.0.2.5:8000"):
            assert client.get("/core/go/session", headers={"Host": host}).status_code == 200
        assert client.get("/core/go/session", headers={"Host": "other.lan"}).status_code == 421


# -- requests from other sites --


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "cross-site"},
        # Another port of the same host is the same site, not the same origin.
        {"Sec-Fetch-Site": "same-site", "Origin": "http://127.0.0.1:9999"},
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
    ],
)
def test_cross_site_writes_are_refused(
    strict: TestClient, data_dir: Path, headers: dict[str, str]
) -> None:
    before = data_dir_digest(data_dir)
    response = strict.post("/core/cone/state", json=STATE_CHANGE, headers=headers)
    assert response.status_code == 403
    assert "VALHALLA_CORS_ORIGINS" in response.json()["detail"]
    # The <img> case: a GET that writes an audited decision.
    img = strict.get(
        "/core/cone/decide",
        params={"engine": "fx_arbitrage", "action": "scale"},
        headers={**headers, "Sec-Fetch-Dest": "image", "Sec-Fetch-Mode": "no-cors"},
    )
    assert img.status_code == 403
    assert data_dir_digest(data_dir) == before


def test_same_origin_and_configured_origins_are_served(strict: TestClient) -> None:
    same = {"Origin": "http://127.0.0.1:8000", "Sec-Fetch-Site": "same-origin"}
    assert strict.post("/core/cone/state", json=STATE_CHANGE, headers=same).status_code == 200
    cors = {"Origin": "https://ops.example", "Sec-Fetch-Site": "cross-site"}
    response = strict.post(
        "/core/cone/decide", json={"engine": "flips", "action": "run"}, headers=cors
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "https://ops.example"
    # Tools (curl, the CLI) send neither header.
    assert (
        strict.get("/core/cone/decide", params={"engine": "flips", "action": "run"}).status_code
        == 200
    )


def test_a_link_from_another_site_opens_the_page_but_nothing_else(strict: TestClient) -> None:
    navigate = {
        "Sec-Fetch-Site": "cross-site",
        "Sec-Fetch-Mode": "navigate",
        "Sec-Fetch-Dest": "document",
    }
    assert strict.get("/", headers=navigate).status_code == 200
    assert strict.get("/docs", headers=navigate).status_code == 200
    decide = strict.get(
        "/core/cone/decide", params={"engine": "flips", "action": "run"}, headers=navigate
    )
    assert decide.status_code == 403


# -- authentication before the body --


class _Channel:
    """An ASGI receive that counts how often the app asked for body bytes."""

    def __init__(self, chunks: list[bytes], delay: float = 0.0) -> None:
        self.chunks = chunks
        self.delay = delay
        self.reads = 0

    async def __call__(self) -> dict[str, Any]:
        self.reads += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.chunks:
            body = self.chunks.pop(0)
            return {"type": "http.request", "body": body, "more_body": bool(self.chunks)}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}


def _call(
    app: Any, method: str, path: str, headers: dict[str, str], channel: _Channel
) -> tuple[int, dict[str, str], dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": LOOPBACK,
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    asyncio.run(app(scope, channel, send))
    start = sent[0]
    body = b"".join(m.get("body", b"") for m in sent[1:])
    head = {k.decode(): v.decode() for k, v in start["headers"]}
    return start["status"], head, json.loads(body)


def test_no_token_is_answered_401_without_reading_the_body(
    data_dir: Path, clock: FakeClock
) -> None:
    make_tokens(data_dir, clock)
    app = make_app(data_dir, clock)
    channel = _Channel([b'{"notes": "x"}'])
    headers = {"host": "localhost", "content-type": "application/json", "content-length": "14"}
    status, head, _ = _call(app, "POST", "/core/go/start_session", headers, channel)
    assert status == 401
    assert head["www-authenticate"].startswith("Bearer")
    assert head["connection"] == "close"
    assert channel.reads == 0
    bad = {**headers, "authorization": "Bearer vgo_wrong"}
    status, _, _ = _call(app, "POST", "/core/go/start_session", bad, _Channel([b"{}"]))
    assert status == 401


def test_a_body_past_the_cap_is_413_from_its_length_alone(data_dir: Path, clock: FakeClock) -> None:
    app = make_app(data_dir, clock, max_body_bytes=2048)
    channel = _Channel([b"{}"])
    headers = {"host": "localhost", "content-type": "application/json", "content-length": "2049"}
    status, _, body = _call(app, "POST", "/core/go/start_session", headers, channel)
    assert status == 413
    assert "VALHALLA_MAX_BODY_BYTES" in body["detail"]
    assert channel.reads == 0


def test_streamed_bytes_are_counted(data_dir: Path, clock: FakeClock) -> None:
    app = make_app(data_dir, clock, max_body_bytes=2048)
    before = data_dir_digest(data_dir)
    channel = _Channel([b" " * 1024] * 3)  # chunked: no Content-Length
    headers = {
        "host": "localhost",
        "content-type": "application/json",
        "transfer-encoding": "chunked",
    }
    status, _, _ = _call(app, "POST", "/core/go/start_session", headers, channel)
    assert status == 413
    assert channel.reads == 3
    assert data_dir_digest(data_dir) == before


def test_a_body_that_does_not_arrive_in_time_is_408(data_dir: Path, clock: FakeClock) -> None:
    app = make_app(data_dir, clock, body_timeout_seconds=0.3)
    channel = _Channel([b"{", b"}"], delay=0.2)
    headers = {"host": "localhost", "content-type": "application/json", "content-length": "2"}
    status, _, body = _call(app, "POST", "/core/go/start_session", headers, channel)
    assert status == 408
    assert "0.3s" in body["detail"]


def test_a_bad_content_length_is_400(data_dir: Path, clock: FakeClock) -> None:
    app = make_app(data_dir, clock)
    headers = {"host": "localhost", "content-length": "-1"}
    status, _, _ = _call(app, "POST", "/core/go/start_session", headers, _Channel([b""]))
    assert status == 400


def test_a_body_within_the_cap_is_served(strict: TestClient) -> None:
    response = strict.post("/core/go/start_session", json={"notes": "n" * 5000})
    assert response.status_code == 200
    assert response.json()["notes"] == "n" * 5000


def test_the_guard_reuses_the_gates_identity(data_dir: Path, clock: FakeClock) -> None:
    tokens: Tokens = make_tokens(data_dir, clock)
    app = make_app(data_dir, clock)
    with TestClient(app, raise_server_exceptions=False, client=LOOPBACK) as client:
        viewer = client.post("/core/go/start_session", json={}, headers=tokens.header("viewer"))
        assert viewer.status_code == 403
        operator = client.post("/core/go/start_session", json={}, headers=tokens.header("operator"))
        assert operator.status_code == 200
        assert operator.json()["started_by"] == "operator-bot"


# -- response headers --


def test_api_responses_are_not_stored_nor_sniffed(strict: TestClient) -> None:
    for response in (
        strict.get("/core/go/session"),
        strict.get("/core/nope"),
        strict.post("/core/cone/state", json={}),
        strict.get("/core/go/session", headers={"Host": "evil.example"}),
    ):
        assert response.headers["cache-control"] == "no-store", response.url
        assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("path", ["/", "/ui/index.html", "/docs", "/ui/docs.html"])
def test_every_html_response_carries_the_page_policy(strict: TestClient, path: str) -> None:
    response = strict.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    csp = response.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp
    assert "default-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"


def test_no_redirect_echoes_the_host(strict: TestClient) -> None:
    for path in ("/core/go/session/", "/ui", "/docs/"):
        response = strict.get(path, follow_redirects=False, headers={"Host": "localhost"})
        assert response.status_code == 404 or "location" not in response.headers, path
        assert "localhost" not in response.headers.get("location", "")


def test_docs_come_from_shipped_files_and_the_schema_needs_a_viewer(
    data_dir: Path, clock: FakeClock
) -> None:
    tokens = make_tokens(data_dir, clock)
    app = make_app(data_dir, clock)
    with TestClient(app, raise_server_exceptions=False, client=LOOPBACK) as client:
        page = client.get("/docs").text
        assert "/ui/vendor/swagger-ui/swagger-ui-bundle.js" in page
        assert "https://" not in page  # nothing from a CDN
        assert "http://" not in page
        assert client.get("/ui/vendor/swagger-ui/swagger-ui-bundle.js").status_code == 200
        assert client.get("/ui/vendor/swagger-ui/LICENSE").status_code == 200
        assert client.get("/openapi.json").status_code == 401
        schema = client.get("/openapi.json", headers=tokens.header("viewer"))
        assert schema.status_code == 200
        assert schema.json()["info"]["title"] == "Valhalla GO"
