"""Clear answers from the API (issue #11): capped echoes, bands in any case,
refused starts that do not count, actors in refusal logs."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.auth.conftest import REMOTE, make_app, make_tokens
from tests.conftest import FakeClock, owner_headers
from valhalla_gov.observability.logs import JsonFormatter


def test_a_422_echoes_at_most_a_little_of_the_input(client: TestClient) -> None:
    huge = "x" * 10_001
    refused = client.post("/core/go/start_session", json={"notes": huge})
    assert refused.status_code == 422
    [error] = refused.json()["detail"]
    assert error["loc"] == ["body", "notes"]
    assert error["input"].endswith("... (10,001 characters)")
    assert len(error["input"]) < 250
    assert len(refused.content) < 1_000
    # Small inputs are echoed as they were.
    small = client.post("/core/cone/state", json={"band": "Q", "reason": "r"})
    assert small.status_code == 422
    assert small.json()["detail"][0]["input"] == "Q"


def test_bands_and_actions_in_any_case(client: TestClient) -> None:
    moved = client.post("/core/cone/state", json={"band": " c ", "reason": "runway"})
    assert moved.status_code == 200, moved.text
    assert moved.json()["band"] == "C"
    decided = client.get("/core/cone/decide", params={"engine": "flips", "action": "RUN"})
    assert decided.status_code == 200, decided.text
    assert decided.json()["action"] == "run"
    wrong = client.post("/core/cone/state", json={"band": "E", "reason": "r"})
    assert wrong.status_code == 422
    assert "'A', 'B', 'C' or 'D'" in wrong.json()["detail"][0]["msg"]


def test_a_refused_start_does_not_use_up_the_limit(data_dir: Path, clock: FakeClock) -> None:
    owner = owner_headers(data_dir)
    app = make_app(data_dir, clock, rate_limit_start_session="2/hour")
    with TestClient(app, client=("127.0.0.1", 50000), headers=owner) as client:
        assert client.post("/core/go/start_session", json={}).status_code == 200  # 1 of 2
        for _ in range(3):  # refused while one is active: not counted
            assert client.post("/core/go/start_session", json={}).status_code == 409
        assert client.post("/core/go/end_session", json={}).status_code == 200
        second = client.post("/core/go/start_session", json={})
        assert second.status_code == 200  # 2 of 2
        assert second.headers["RateLimit-Remaining"] == "0"
        assert client.post("/core/go/end_session", json={}).status_code == 200
        third = client.post("/core/go/start_session", json={})
        assert third.status_code == 429
        assert "Retry-After" in third.headers


def test_a_403_is_logged_with_who_was_refused(
    data_dir: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    tokens = make_tokens(data_dir, clock)
    app = make_app(data_dir, clock)
    with (
        TestClient(app, client=REMOTE) as client,
        caplog.at_level(logging.INFO, logger="valhalla_gov.access"),
    ):
        refused = client.post(
            "/core/cone/state", json={"band": "A", "reason": "r"}, headers=tokens.header("viewer")
        )
    assert refused.status_code == 403
    lines = [
        json.loads(JsonFormatter().format(r))
        for r in caplog.records
        if r.name == "valhalla_gov.access"
    ]
    assert [(x["status"], x["actor"]) for x in lines] == [(403, "viewer-bot")]
