"""Health over HTTP: /core/status/ryg, /core/healthz, /core/readyz."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.conftest import FakeClock, health_now, owner_headers, unwritable
from valhalla_gov.app import create_app
from valhalla_gov.audit.service import HEALTH_WINDOW, log_event
from valhalla_gov.compose import open_json
from valhalla_gov.cone.service import set_cone_state
from valhalla_gov.settings import Settings

# A loopback address: with no token yet the caller is the local owner.
LOOPBACK = ("127.0.0.1", 50000)


def _light_when(client: TestClient, ready: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The light once ``ready`` holds for it (the server judges it again at
    least every few seconds), failing after 10 s."""
    deadline = time.monotonic() + 10
    while True:
        response = client.get("/core/status/ryg")
        assert response.status_code == 200
        body: dict[str, Any] = response.json()
        if ready(body) or time.monotonic() > deadline:
            assert ready(body), body
            return body
        time.sleep(0.1)


def _set_band(client: TestClient, band: str, reason: str = "test") -> None:
    response = client.post("/core/cone/state", json={"band": band, "reason": reason})
    assert response.status_code == 200


def test_healthz(client: TestClient) -> None:
    response = client.get("/core/healthz")
    assert response.status_code == 200
    assert response.json() == {"ok": True}


def test_readyz_when_healthy(client: TestClient) -> None:
    response = client.get("/core/readyz")
    assert response.status_code == 200
    assert response.json() == {"ready": True, "reasons": []}


@pytest.mark.parametrize("name", ["go_session.json", "cone_state.json"])
def test_readyz_503_naming_a_corrupt_file(client: TestClient, data_dir: Path, name: str) -> None:
    path = data_dir / name
    path.write_bytes(b'{"session": ')
    response = client.get("/core/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["ready"] is False
    assert any(name in reason for reason in body["reasons"])
    assert path.read_bytes() == b'{"session": '
    # healthz is liveness only: the process still answers.
    assert client.get("/core/healthz").status_code == 200
    # The RYG light names the file too, and is served (not a 5xx): a hand
    # edit is no audited change, so the light shows it at its next judgement.
    ryg = _light_when(client, lambda body: body["checks"]["storage"]["status"] == "red")
    assert any(name in reason for reason in ryg["reasons"])
    # Repaired: ready again.
    path.unlink()
    assert client.get("/core/readyz").status_code == 200


def test_readyz_503_while_the_data_dir_is_not_writable(client: TestClient, data_dir: Path) -> None:
    with unwritable(data_dir):
        response = client.get("/core/readyz")
    assert response.status_code == 503
    assert any("not writable" in reason for reason in response.json()["reasons"])
    assert client.get("/core/readyz").status_code == 200


def test_readyz_503_for_a_cone_state_that_is_not_a_cone_state(
    client: TestClient, data_dir: Path
) -> None:
    (data_dir / "cone_state.json").write_text(json.dumps({"band": "Z"}))
    assert client.get("/core/cone/state").status_code == 503
    response = client.get("/core/readyz")
    assert response.status_code == 503
    assert any("cone_state.json" in reason for reason in response.json()["reasons"])


def test_ryg_shape_and_band_d_red(client: TestClient) -> None:
    _set_band(client, "D", reason="survival")
    response = client.get("/core/status/ryg")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "red"
    assert body["cone_band"] == "D"
    assert body["checks"]["band"]["status"] == "red"
    assert body["checked_at_utc"] == "2026-01-01T09:00:00.000000Z"
    assert set(body["checks"]) == {"band", "deny_rate", "storage", "audit", "server_errors"}
    assert body["reasons"] == [body["checks"]["band"]["detail"]]


def test_ryg_green_in_band_a(client: TestClient) -> None:
    _set_band(client, "A")
    body = client.get("/core/status/ryg").json()
    assert body["status"] == "green"
    assert body["reasons"] == ["all signals green"]


def test_ryg_deny_rate_drift_over_http(client: TestClient) -> None:
    _set_band(client, "A")
    for _ in range(13):
        client.get("/core/cone/decide", params={"engine": "brrrr", "action": "run"})
    for _ in range(7):
        client.get("/core/cone/decide", params={"engine": "resort_chain", "action": "run"})
    # The decisions are audited: the server judges again within moments.
    body = _light_when(client, lambda b: b["checks"]["deny_rate"]["status"] == "red")
    assert "35%" in body["checks"]["deny_rate"]["detail"]  # 7 of 20
    assert body["status"] == "red"


# -- unhandled server errors, end to end ------------------------------------


@pytest.fixture
def boom_client(data_dir: Path, clock: FakeClock) -> Iterator[TestClient]:
    app: FastAPI = create_app(Settings(data_dir=data_dir), clock=clock)

    def boom() -> None:
        raise RuntimeError("kaboom")

    app.add_api_route("/boom", boom, methods=["GET"])
    owner = owner_headers(data_dir)
    with TestClient(app, raise_server_exceptions=False, client=LOOPBACK, headers=owner) as client:
        yield client


def test_unhandled_error_is_a_json_500_and_turns_health_red(
    boom_client: TestClient, clock: FakeClock, data_dir: Path
) -> None:
    _set_band(boom_client, "A")
    assert boom_client.get("/core/status/ryg").json()["status"] == "green"
    response = boom_client.get("/boom")
    assert response.status_code == 500
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"detail": "internal server error"}
    assert "kaboom" not in response.text  # no internals leak to the caller
    body = boom_client.get("/core/status/ryg").json()
    assert body["status"] == "red"
    assert body["checks"]["server_errors"]["status"] == "red"
    assert any("server error" in reason for reason in body["reasons"])
    # Fifteen minutes later it has aged out.
    clock.advance(minutes=16)
    assert boom_client.get("/core/status/ryg").json()["status"] == "green"


def test_server_error_seen_by_another_app_on_the_same_data_dir(
    boom_client: TestClient, data_dir: Path, clock: FakeClock
) -> None:
    # Recorded durably, so another worker's health sees it.
    assert boom_client.get("/boom").status_code == 500
    other = create_app(Settings(data_dir=data_dir), clock=clock)
    with TestClient(other, client=LOOPBACK, headers=owner_headers(data_dir)) as client:
        body = client.get("/core/status/ryg").json()
    assert body["checks"]["server_errors"]["status"] == "red"


# -- bounded cost: health reads only the newest audit lines ------------------


def _write_chain(data_dir: Path, clock: FakeClock, count: int) -> None:
    store = open_json(data_dir)
    with store.transaction() as txn:
        for i in range(count):
            log_event(txn, event="TEST", payload={"n": f"line{i:05d}"}, actor="t", clock=clock)


def _tamper(path: Path, old: bytes, new: bytes) -> None:
    raw = path.read_bytes()
    assert raw.count(old) == 1
    assert len(old) == len(new)
    path.write_bytes(raw.replace(old, new))


def test_health_reads_a_bounded_window_of_the_audit_log(data_dir: Path, clock: FakeClock) -> None:
    # A server starting on a long log: its first look checks the newest lines.
    store = open_json(data_dir)
    set_cone_state(store=store, band="A", reason="t", metrics=None, actor="t", clock=clock)
    _write_chain(data_dir, clock, HEALTH_WINDOW + 50)
    # The CONE_SET line is first; line00000 is second, far beyond the window.
    _tamper(data_dir / "audit.log", b'"line00000"', b'"LINE00000"')
    app = create_app(Settings(data_dir=data_dir), clock=clock)
    headers = owner_headers(data_dir)
    with TestClient(app, raise_server_exceptions=False, client=LOOPBACK, headers=headers) as client:
        verify = client.get("/core/audit/verify").json()
        assert verify["ok"] is False  # the full walk sees it
        body = client.get("/core/status/ryg").json()
    assert body["checks"]["audit"]["status"] == "green"  # health does not walk that far
    assert body["status"] == "green"


def test_health_window_still_catches_a_recent_edit(data_dir: Path, clock: FakeClock) -> None:
    store = open_json(data_dir)
    _write_chain(data_dir, clock, HEALTH_WINDOW + 50)
    _tamper(data_dir / "audit.log", b'"line00040"', b'"LINE00040"')
    far = health_now(store, clock)
    assert far.checks["audit"].status == "green"
    recent = f'"line{HEALTH_WINDOW + 40:05d}"'.encode()
    _tamper(data_dir / "audit.log", recent, recent.upper())
    near = health_now(store, clock)
    assert near.checks["audit"].status == "red"


def test_readyz_also_reads_every_document_as_its_model(client: TestClient, data_dir: Path) -> None:
    (data_dir / "go_session.json").write_text('{"session": 5}')
    ready = client.get("/core/readyz")
    assert ready.status_code == 503
    assert any("go_session.json" in r for r in ready.json()["reasons"])
    (data_dir / "go_session.json").write_text('{"session": null}')
    (data_dir / "tokens.json").write_text('{"tokens": "nope"}')
    assert any("tokens.json" in r for r in client.get("/core/readyz").json()["reasons"])
    (data_dir / "tokens.json").unlink()
    assert client.get("/core/readyz").status_code == 200
