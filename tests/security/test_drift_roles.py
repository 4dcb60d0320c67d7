"""Health reflects the service, not what clients send: a viewer's cone
decisions are recorded and audited but never move the deny-rate light."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from tests.auth.conftest import make_app, make_tokens
from tests.conftest import FakeClock
from valhalla_gov.compose import open_json
from valhalla_gov.cone.canon import load_canon
from valhalla_gov.cone.service import decide
from valhalla_gov.cone.store import DECISIONS, SCAN_FACTOR, recent_decisions
from valhalla_gov.health.publisher import HealthPublisher

LOOPBACK = ("127.0.0.1", 50000)
DENIED = {"engine": "fx_arbitrage", "action": "scale"}  # band B denies it


def test_viewer_decisions_do_not_move_health_but_operator_ones_do(
    data_dir: Path, clock: FakeClock
) -> None:
    tokens = make_tokens(data_dir, clock)
    app = make_app(data_dir, clock, rate_limit_writes="100000/minute")
    with TestClient(app, raise_server_exceptions=False, client=LOOPBACK) as client:
        for _ in range(25):
            response = client.post(
                "/core/cone/decide", json=DENIED, headers=tokens.header("viewer")
            )
            assert response.status_code == 200
            assert response.json()["allowed"] is False
        light = app.state.ctx.get(HealthPublisher)
        light.judge()  # what the server's health task does within moments
        health = client.get("/core/status/ryg", headers=tokens.header("viewer")).json()
        assert health["checks"]["deny_rate"]["status"] == "green"
        assert "0 cone decisions so far" in health["checks"]["deny_rate"]["detail"]
        roles = [e.record["role"] for e in open_json(data_dir).scan_log_forward(DECISIONS)]
        assert roles == ["viewer"] * 25
        for _ in range(25):
            client.get("/core/cone/decide", params=DENIED, headers=tokens.header("operator"))
        light.judge()
        health = client.get("/core/status/ryg", headers=tokens.header("viewer")).json()
        assert health["checks"]["deny_rate"]["status"] == "red"


def test_a_viewer_flood_bounds_the_scan_and_adds_nothing(data_dir: Path, clock: FakeClock) -> None:
    store = open_json(data_dir)
    canon = load_canon(None)
    for _ in range(3):
        decide(store=store, canon=canon, actor="op", clock=clock, role="operator", **DENIED)  # type: ignore[arg-type]
    for _ in range(10 * SCAN_FACTOR + 1):
        decide(store=store, canon=canon, actor="v", clock=clock, role="viewer", **DENIED)  # type: ignore[arg-type]
    assert recent_decisions(store=store, window=10) == []
    assert len(recent_decisions(store=store, window=20)) == 3
