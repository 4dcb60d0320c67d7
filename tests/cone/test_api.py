"""Cone over HTTP: state, validation, decisions, storage failures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from valhalla_gov.audit.store import AUDIT_LOG
from valhalla_gov.compose import open_json
from valhalla_gov.cone.store import DECISIONS

from .expected import ACTIONS, ALL_ENGINES, BOOT_REASON, CLASS_OF, HARD_CAPS_USD, expected_allowed


def _audit(data_dir: Path) -> list[dict[str, Any]]:
    return [e.record for e in open_json(data_dir).scan_log_forward(AUDIT_LOG)]


def test_get_state_boot_default(client: TestClient) -> None:
    response = client.get("/core/cone/state")
    assert response.status_code == 200
    body = response.json()
    assert body["band"] == "B"
    assert body["reason"] == BOOT_REASON


def test_post_state_sets_persists_and_audits(client: TestClient, data_dir: Path) -> None:
    response = client.post(
        "/core/cone/state",
        json={"band": "A", "reason": "all KPIs green", "metrics": {"runway_months": 12}},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["band"] == "A"
    assert body["reason"] == "all KPIs green"
    assert body["metrics"] == {"runway_months": 12}
    assert body["updated_at_utc"] == "2026-01-01T09:00:00.000000Z"
    assert body["updated_by"] == "local"
    assert client.get("/core/cone/state").json()["band"] == "A"
    on_disk = json.loads((data_dir / "cone_state.json").read_text(encoding="utf-8"))
    assert on_disk["band"] == "A"
    assert on_disk["reason"] == "all KPIs green"
    (event,) = _audit(data_dir)
    assert event["event"] == "CONE_SET"
    assert event["actor"] == "local"
    assert event["payload"]["from"] == "B"
    assert event["payload"]["to"] == "A"


def test_post_state_metrics_optional(client: TestClient) -> None:
    response = client.post("/core/cone/state", json={"band": "D", "reason": "survival"})
    assert response.status_code == 200
    assert response.json()["metrics"] == {}


def test_reason_of_exactly_10000_chars_is_accepted(client: TestClient) -> None:
    reason = "r" * 10_000
    response = client.post("/core/cone/state", json={"band": "C", "reason": reason})
    assert response.status_code == 200
    assert response.json()["reason"] == reason


@pytest.mark.parametrize(
    "body",
    [
        # Bands in any case are accepted since #11: tests/api/test_clear_answers.py.
        {"band": "E", "reason": "no such band"},
        {"band": "", "reason": "empty band"},
        {"band": None, "reason": "null band"},
        {"reason": "missing band"},
        {"band": "A"},
        {"band": "A", "reason": ""},
        {"band": "A", "reason": "x" * 10_001},
        {"band": "A", "reason": "ok", "extra": 1},
        {"band": "A", "reason": "ok", "metrics": [1, 2]},
    ],
    ids=[
        "unknown-band",
        "empty-band",
        "null-band",
        "missing-band",
        "missing-reason",
        "empty-reason",
        "reason-too-long",
        "extra-field",
        "metrics-not-object",
    ],
)
def test_post_state_rejects_bad_input_with_422_and_changes_nothing(
    client: TestClient, data_dir: Path, body: dict[str, Any]
) -> None:
    response = client.post("/core/cone/state", json=body)
    assert response.status_code == 422
    assert client.get("/core/cone/state").json()["band"] == "B"
    assert not (data_dir / "cone_state.json").exists()
    assert _audit(data_dir) == []


def test_decide_returns_the_issue_fields(client: TestClient) -> None:
    response = client.get("/core/cone/decide", params={"engine": "fx_arbitrage", "action": "run"})
    assert response.status_code == 200
    body = response.json()
    assert {"allowed", "band", "engine", "action", "reason"} <= set(body)
    assert body["allowed"] is True
    assert body["band"] == "B"
    assert body["engine"] == "fx_arbitrage"
    assert body["action"] == "run"
    assert body["hard_cap_usd"] == 25000
    assert isinstance(body["reason"], str)
    assert body["reason"]


@pytest.mark.parametrize("band", ["A", "D"])
def test_decide_over_http_matches_the_issue_matrix(client: TestClient, band: str) -> None:
    assert client.post("/core/cone/state", json={"band": band, "reason": "t"}).status_code == 200
    for engine in ALL_ENGINES:
        for action in ACTIONS:
            response = client.get("/core/cone/decide", params={"engine": engine, "action": action})
            assert response.status_code == 200
            body = response.json()
            assert body["allowed"] is expected_allowed(band, engine, action), (engine, action)
            assert body["engine_class"] == CLASS_OF[engine]
            assert body["hard_cap_usd"] == HARD_CAPS_USD.get(engine)


def test_decide_audits_allow_and_deny(client: TestClient, data_dir: Path) -> None:
    client.get("/core/cone/decide", params={"engine": "storage_units", "action": "run"})
    client.get("/core/cone/decide", params={"engine": "storage_units", "action": "scale"})
    events = _audit(data_dir)
    assert [e["event"] for e in events] == ["CONE_ALLOW", "CONE_DENY"]
    assert all(e["actor"] == "local" for e in events)
    decisions = [e.record for e in open_json(data_dir).scan_log_forward(DECISIONS)]
    assert [(d["action"], d["allowed"]) for d in decisions] == [("run", True), ("scale", False)]


def test_decide_unknown_engine_is_404_naming_the_known_engines(
    client: TestClient, data_dir: Path
) -> None:
    response = client.get("/core/cone/decide", params={"engine": "moon_base", "action": "run"})
    assert response.status_code == 404
    body = response.json()
    assert "moon_base" in body["detail"]
    for engine in ALL_ENGINES:
        assert engine in body["detail"]
    assert sorted(body["known_engines"]) == sorted(ALL_ENGINES)
    assert _audit(data_dir) == []


@pytest.mark.parametrize(
    "params",
    [
        # Actions in any case are accepted since #11: tests/api/test_clear_answers.py.
        {"engine": "flips", "action": "fly"},
        {"engine": "flips", "action": ""},
        {"engine": "flips"},
        {"action": "run"},
        {"engine": "", "action": "run"},
    ],
    ids=[
        "unknown-action",
        "empty-action",
        "no-action",
        "no-engine",
        "empty-engine",
    ],
)
def test_decide_bad_query_is_422(
    client: TestClient, data_dir: Path, params: dict[str, str]
) -> None:
    response = client.get("/core/cone/decide", params=params)
    assert response.status_code == 422
    assert _audit(data_dir) == []


def test_legacy_cone_state_served_unchanged(data_dir: Path, client: TestClient) -> None:
    path = data_dir / "cone_state.json"
    legacy = {"band": "C", "reason": "old", "updated_at": "2025-12-01T10:00:00", "ui": {"x": 1}}
    path.write_text(json.dumps(legacy, indent=4) + "\n", encoding="utf-8")
    before = path.read_bytes()
    response = client.get("/core/cone/state")
    assert response.status_code == 200
    body = response.json()
    assert body["band"] == "C"
    assert body["reason"] == "old"
    assert body["updated_at"] == "2025-12-01T10:00:00"  # unknown keys are kept
    assert body["ui"] == {"x": 1}
    decided = client.get("/core/cone/decide", params={"engine": "brrrr", "action": "optimize"})
    assert decided.json()["band"] == "C"
    assert decided.json()["allowed"] is False
    client.get("/core/status/ryg")
    assert path.read_bytes() == before


@pytest.mark.parametrize(
    "content",
    [b'{"band": "B", "reas', b'{"band": "Q", "reason": "x"}'],
    ids=["truncated", "invalid-band"],
)
def test_corrupt_cone_state_is_503_naming_the_file_bytes_kept(
    data_dir: Path, client: TestClient, content: bytes
) -> None:
    path = data_dir / "cone_state.json"
    path.write_bytes(content)
    responses = [
        client.get("/core/cone/state"),
        client.post("/core/cone/state", json={"band": "A", "reason": "overwrite?"}),
        client.get("/core/cone/decide", params={"engine": "flips", "action": "run"}),
    ]
    for response in responses:
        assert response.status_code == 503
        assert "cone_state.json" in response.json()["detail"]
    assert path.read_bytes() == content
    assert _audit(data_dir) == []


@pytest.mark.parametrize(
    "body",
    [
        {"band": "A", "reason": "   \n\t "},
        {"band": "A", "reason": "big", "metrics": {"blob": "x" * 10_001}},
    ],
)
def test_empty_reasons_and_oversized_metrics_are_422(
    client: TestClient, data_dir: Path, body: dict[str, object]
) -> None:
    assert client.post("/core/cone/state", json=body).status_code == 422
    assert not (data_dir / "cone_state.json").exists()
