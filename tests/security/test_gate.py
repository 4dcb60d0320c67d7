"""The security gate in process: Host allow-list, cross-site refusal,
authentication before the body, body cap and deadline, response headers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import sqlalchemy
from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from tests.auth.conftest import Tokens, make_app, make_tokens
from tests.conftest import FakeClock, need, owner_headers, pg_available, pg_schema
from tests.security.helpers import data_dir_digest
from valhalla_gov.app import create_app
from valhalla_gov.auth.service import create_token, revoke_token
from valhalla_gov.compose import open_json, open_sql
from valhalla_gov.security.gate import allowed_host_names, host_name
from valhalla_gov.settings import Settings

LOOPBACK = ("127.0.0.1", 50000)
STATE_CHANGE = {"band": "D", "reason": "hostile"}


@pytest.fixture
def strict(data_dir: Path, clock: FakeClock) -> Iterator[TestClient]:
    """An app with the default Host list (no 'testserver'), used by its owner
    (the owner credential on every request)."""
    owner = owner_headers(data_dir)
    app = make_app(data_dir, clock, allowed_hosts=[], cors_origins=["https://ops.example"])
    with TestClient(
        app,
        base_url="http://127.0.0.1:8000",
        raise_server_exceptions=False,
        client=LOOPBACK,
        headers=owner,
    ) as client:
        assert client.get("/core/whoami").status_code == 200  # its first use, stamped now
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
    owner = owner_headers(data_dir)
    app = make_app(data_dir, clock, allowed_hosts="ops.lan", bind_host="192.0.2.5")
    with TestClient(app, raise_server_exceptions=False, client=LOOPBACK, headers=owner) as client:
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
    app: Any,
    method: str,
    path: str,
    headers: dict[str, str] | list[tuple[str, str]],
    channel: _Channel,
) -> tuple[int, dict[str, str], dict[str, Any]]:
    sent: list[dict[str, Any]] = []
    pairs = list(headers.items()) if isinstance(headers, dict) else headers

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
        "headers": [(k.lower().encode(), v.encode()) for k, v in pairs],
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


def _owner(data_dir: Path) -> dict[str, str]:
    return {"authorization": owner_headers(data_dir)["Authorization"]}


def test_a_body_past_the_cap_is_413_from_its_length_alone(data_dir: Path, clock: FakeClock) -> None:
    app = make_app(data_dir, clock, max_body_bytes=2048)
    channel = _Channel([b"{}"])
    headers = {
        "host": "localhost",
        "content-type": "application/json",
        "content-length": "2049",
        **_owner(data_dir),
    }
    status, _, body = _call(app, "POST", "/core/go/start_session", headers, channel)
    assert status == 413
    assert "VALHALLA_MAX_BODY_BYTES" in body["detail"]
    assert channel.reads == 0


def test_streamed_bytes_are_counted(data_dir: Path, clock: FakeClock) -> None:
    app = make_app(data_dir, clock, max_body_bytes=2048)
    owner = _owner(data_dir)
    # The credential's first use is stamped in tokens.json: done before.
    assert _call(app, "GET", "/core/whoami", {"host": "localhost", **owner}, _Channel([]))[0] == 200
    before = data_dir_digest(data_dir)
    channel = _Channel([b" " * 1024] * 3)  # chunked: no Content-Length
    headers = {
        "host": "localhost",
        "content-type": "application/json",
        "transfer-encoding": "chunked",
        **owner,
    }
    status, _, _ = _call(app, "POST", "/core/go/start_session", headers, channel)
    assert status == 413
    assert channel.reads == 3
    assert data_dir_digest(data_dir) == before


def test_a_body_that_does_not_arrive_in_time_is_408(data_dir: Path, clock: FakeClock) -> None:
    app = make_app(data_dir, clock, body_timeout_seconds=0.3)
    channel = _Channel([b"{", b"}"], delay=0.2)
    headers = {
        "host": "localhost",
        "content-type": "application/json",
        "content-length": "2",
        **_owner(data_dir),
    }
    status, _, body = _call(app, "POST", "/core/go/start_session", headers, channel)
    assert status == 408
    assert "0.3s" in body["detail"]


def test_a_bad_content_length_is_400(data_dir: Path, clock: FakeClock) -> None:
    app = make_app(data_dir, clock)
    headers = {"host": "localhost", "content-length": "-1", **_owner(data_dir)}
    status, _, _ = _call(app, "POST", "/core/go/start_session", headers, _Channel([b""]))
    assert status == 400


def test_a_body_within_the_cap_is_served(strict: TestClient) -> None:
    response = strict.post("/core/go/start_session", json={"notes": "n" * 5000})
    assert response.status_code == 200
    assert response.json()["notes"] == "n" * 5000


class _RevokingChannel(_Channel):
    """A body that arrives only after the token that sent it was revoked."""

    def __init__(self, chunks: list[bytes], revoke: Any) -> None:
        super().__init__(chunks)
        self.revoke = revoke

    async def __call__(self) -> dict[str, Any]:
        if self.reads == 0:
            self.revoke()
        return await super().__call__()


def test_the_route_decides_when_it_runs_not_when_headers_arrived(
    data_dir: Path, clock: FakeClock
) -> None:
    """The gate let the headers through with a valid token; the token is
    revoked while the body is on its way: the route refuses (the reproduced
    bug: a POST whose headers came first ran with the rights they had)."""
    tokens: Tokens = make_tokens(data_dir, clock)
    app = make_app(data_dir, clock)
    store = open_json(data_dir)

    def revoke() -> None:
        revoke_token(store=store, name="owner-bot", actor="t", clock=clock)

    channel = _RevokingChannel([b'{"band": "D", "reason": "late"}'], revoke)
    headers = {
        "host": "localhost",
        "content-type": "application/json",
        "content-length": "31",
        "authorization": tokens.header("owner")["Authorization"],
    }
    status, _, body = _call(app, "POST", "/core/cone/state", headers, channel)
    assert status == 401, body
    assert body["detail"] == "invalid or revoked token"
    assert channel.reads == 1  # the gate did read the body: the guard refused after it
    assert not (data_dir / "cone_state.json").exists()
    with TestClient(app, client=LOOPBACK, headers=owner_headers(data_dir)) as client:
        assert client.get("/core/cone/state").json()["band"] == "B"
        events = [e["event"] for e in client.get("/core/audit/events").json()["items"]]
    assert "CONE_SET" not in events


def test_scopes_are_checked_by_the_route_guard(data_dir: Path, clock: FakeClock) -> None:
    tokens: Tokens = make_tokens(data_dir, clock)
    app = make_app(data_dir, clock)
    with TestClient(app, raise_server_exceptions=False, client=LOOPBACK) as client:
        viewer = client.post("/core/go/start_session", json={}, headers=tokens.header("viewer"))
        assert viewer.status_code == 403
        operator = client.post("/core/go/start_session", json={}, headers=tokens.header("operator"))
        assert operator.status_code == 200
        assert operator.json()["started_by"] == "operator-bot"


@pytest.mark.parametrize("name", ["Host", "Origin", "Sec-Fetch-Site", "Authorization"])
def test_a_repeated_header_the_checks_read_is_400(
    data_dir: Path, clock: FakeClock, name: str
) -> None:
    """Two copies could be read differently by the gate and by the route
    (one checks the first, another the last): the request is refused."""
    owner = owner_headers(data_dir)["Authorization"]
    app = make_app(data_dir, clock)
    before = data_dir_digest(data_dir)
    base = {
        "host": "localhost",
        "origin": "http://localhost",
        "sec-fetch-site": "same-origin",
        "authorization": owner,
        "content-type": "application/json",
        "content-length": "31",
    }
    second = {
        "host": "attacker.example",
        "origin": "http://attacker.example",
        "sec-fetch-site": "cross-site",
        "authorization": "Bearer vgo_someone-else",
    }[name.lower()]
    pairs = [*base.items(), (name.lower(), second)]
    channel = _Channel([b'{"band": "D", "reason": "twice"}'])
    status, _, body = _call(app, "POST", "/core/cone/state", pairs, channel)
    assert status == 400, body
    assert name.lower() in body["detail"]
    assert channel.reads == 0
    assert data_dir_digest(data_dir) == before
    # Once is fine.
    status, _, _ = _call(app, "POST", "/core/cone/state", list(base.items()), _Channel([b"{}"]))
    assert status == 422  # past the gate: the route's own validation


def test_websockets_are_refused(client: TestClient) -> None:
    with (
        pytest.raises(WebSocketDisconnect) as refused,
        client.websocket_connect("/core/go/session"),
    ):
        pass
    assert refused.value.code == 1008


def test_the_gates_503_on_postgresql_names_no_sql_and_no_url(clock: FakeClock) -> None:
    need(pg_available(), "PostgreSQL at 127.0.0.1:5432 is needed")
    with pg_schema() as url:
        store = open_sql(url)
        try:
            _, token = create_token(
                store=store, name="ops", scopes=["owner"], actor="t", clock=clock
            )
        finally:
            store.close()
        app = create_app(Settings(database_url=url), clock=clock)
        headers = {"Authorization": f"Bearer {token}"}
        with TestClient(app, raise_server_exceptions=False, client=LOOPBACK) as client:
            assert client.get("/core/whoami", headers=headers).status_code == 200
            schema = url.rsplit("%3D", 1)[1]
            engine = sqlalchemy.create_engine(url)
            with engine.begin() as conn:  # the database stops answering as expected
                conn.exec_driver_sql(f"ALTER TABLE {schema}.store_generation RENAME TO gone")
            try:
                gate = client.post("/core/cone/state", json=STATE_CHANGE, headers=headers)
                route = client.get("/core/cone/state", headers=headers)
            finally:
                with engine.begin() as conn:
                    conn.exec_driver_sql(f"ALTER TABLE {schema}.gone RENAME TO store_generation")
                engine.dispose()
    for response in (gate, route):
        assert response.status_code == 503, response.text
        text = response.text.lower()
        for leak in ("select", "store_generation", "postgresql", "5432", schema, "[sql"):
            assert leak not in text, (leak, response.text)
        assert response.json()["file"] == "database test"  # the database's name alone


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


def test_a_redirect_the_app_makes_keeps_its_path_and_loses_its_host(strict: TestClient) -> None:
    # The app itself makes no redirect today; one added later must not echo
    # a host (the Host header, say) back.
    app = cast(FastAPI, strict.app)

    @app.get("/elsewhere", include_in_schema=False)
    def elsewhere() -> RedirectResponse:
        return RedirectResponse("http://localhost:8000/ui/?x=1")

    @app.get("/home", include_in_schema=False)
    def home() -> RedirectResponse:
        return RedirectResponse("https://localhost")

    response = strict.get("/elsewhere", follow_redirects=False)
    assert response.status_code == 307
    assert response.headers["location"] == "/ui/?x=1"
    assert strict.get("/home", follow_redirects=False).headers["location"] == "/"


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
