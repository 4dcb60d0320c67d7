"""GO endpoints through the HTTP layer: status codes, bodies, files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.conftest import FakeClock


def test_session_lifecycle_over_http(client: TestClient, data_dir: Path, clock: FakeClock) -> None:
    inactive = client.get("/core/go/session")
    assert inactive.status_code == 200
    assert inactive.json()["active"] is False
    started = client.post("/core/go/start_session", json={"notes": "Test"})
    assert started.status_code == 200
    body = started.json()
    assert body["active"] is True
    assert set(body["snapshot"]) == {"cone", "status"}
    assert body["started_at_utc"].endswith("Z")
    on_disk = json.loads((data_dir / "go_session.json").read_text())
    assert on_disk["session"]["active"] is True
    assert on_disk["session"]["id"] == body["id"]

    conflict = client.post("/core/go/start_session", json={"notes": "again"})
    assert conflict.status_code == 409
    assert conflict.json()["session"]["id"] == body["id"]
    assert "already active" in conflict.json()["detail"]

    clock.advance(seconds=42)
    ended = client.post("/core/go/end_session", json={"notes": "done"})
    assert ended.status_code == 200
    assert ended.json()["duration_seconds"] == 42.0
    assert ended.json()["ended_at_utc"].endswith("Z")
    again = client.post("/core/go/end_session", json={})
    assert again.status_code == 200
    assert again.json() == ended.json()

    history = client.get("/core/go/sessions").json()
    assert [s["id"] for s in history["items"]] == [body["id"]]
    assert history["next_cursor"] is None
    one = client.get(f"/core/go/sessions/{body['id']}")
    assert one.status_code == 200
    assert one.json()["notes"] == "done"
    assert client.get("/core/go/sessions/NOPE").status_code == 404


def test_end_with_none_ever_started_is_the_inactive_default(client: TestClient) -> None:
    response = client.post("/core/go/end_session", json={"notes": "x"})
    assert response.status_code == 200
    assert response.json()["active"] is False
    assert response.json()["started_at_utc"] is None


@pytest.mark.parametrize(
    "body",
    [
        {"notes": "x" * 10_001},
        {"notes": 5},
        {"notes": "ok", "extra": 1},
        [1, 2],
    ],
)
def test_bad_session_bodies_are_422_and_change_nothing(
    client: TestClient, data_dir: Path, body: object
) -> None:
    assert client.post("/core/go/start_session", json=body).status_code == 422
    assert not (data_dir / "go_session.json").exists()


def test_notes_at_the_limit_are_accepted(client: TestClient) -> None:
    assert client.post("/core/go/start_session", json={"notes": "x" * 10_000}).status_code == 200


def test_history_paging_and_bad_cursor(client: TestClient, clock: FakeClock) -> None:
    ids = []
    for _ in range(5):
        ids.append(client.post("/core/go/start_session", json={}).json()["id"])
        clock.advance(minutes=1)
        client.post("/core/go/end_session", json={})
        clock.advance(minutes=1)
    first = client.get("/core/go/sessions", params={"limit": 2}).json()
    second = client.get(
        "/core/go/sessions", params={"limit": 2, "cursor": first["next_cursor"]}
    ).json()
    third = client.get(
        "/core/go/sessions", params={"limit": 2, "cursor": second["next_cursor"]}
    ).json()
    got = [s["id"] for page in (first, second, third) for s in page["items"]]
    assert got == ids[::-1]
    assert third["next_cursor"] is None
    assert client.get("/core/go/sessions", params={"cursor": "abc"}).status_code == 422
    assert client.get("/core/go/sessions", params={"limit": 501}).status_code == 422
    since = client.get("/core/go/sessions", params={"since": "2026-01-01T09:04:00Z"}).json()
    assert [s["id"] for s in since["items"]] == ids[:1:-1]


def test_playbook_endpoints(client: TestClient) -> None:
    checklist = client.get("/core/go/checklist").json()
    assert set(checklist) >= {"cone_band", "status", "steps", "blocked_reasons"}
    assert set(checklist["steps"][0]) >= {
        "id",
        "title",
        "why",
        "band_min",
        "blocked_if_red",
        "done",
        "notes",
        "blocked",
    }
    nxt = client.get("/core/go/next_step").json()
    assert set(nxt) >= {"cone_band", "status", "next_step", "message"}
    assert nxt["next_step"]["id"] == "preflight_view_dashboard"
    done = client.post(
        "/core/go/complete",
        json={"step_id": "preflight_view_dashboard", "done": True, "notes": "ok"},
    )
    assert done.status_code == 200
    assert done.json() == {
        "ok": True,
        "step_id": "preflight_view_dashboard",
        "done": True,
        "notes": "ok",
        "session_id": None,
    }
    assert client.get("/core/go/next_step").json()["next_step"]["id"] == "set_opportunistic_caps"
    unfit = client.get("/core/go/checklist").json()["steps"]
    assert all(s["fit_reason"] is None for s in unfit)
    kept = client.post(
        "/core/go/complete", json={"step_id": "preflight_view_dashboard", "done": False}
    )
    assert kept.json()["notes"] == "ok"  # notes left out: kept
    cleared = client.post(
        "/core/go/complete", json={"step_id": "preflight_view_dashboard", "notes": None}
    )
    assert cleared.json()["notes"] is None
    client.post("/core/cone/state", json={"band": "D", "reason": "cash crunch"})
    refused = client.post("/core/go/complete", json={"step_id": "intake_ready"})
    assert refused.status_code == 409
    # Unfit in band D (it needs B) and blocked by red health: the band is the
    # real reason, since fixing the health would not make it doable.
    assert "needs band B or better; the cone is at D" in refused.json()["detail"]
    missing = client.post("/core/go/complete", json={"step_id": "nope"})
    assert missing.status_code == 404
    assert "unknown step" in missing.json()["detail"]
    assert client.post("/core/go/complete", json={"done": True}).status_code == 422


def test_summary_has_session_next_checklist_health(client: TestClient) -> None:
    client.post("/core/go/start_session", json={"notes": "s"})
    summary = client.get("/core/go/summary").json()
    assert set(summary) == {"session", "next", "checklist", "health"}
    assert summary["session"]["active"] is True
    assert summary["health"]["status"] == "yellow"
    assert summary["health"]["cone_band"] == "B"
    assert summary["health"]["cone_state"]["reason"].startswith("Boot default")
    assert summary["next"]["next_step"]["id"] == "preflight_view_dashboard"


def test_summary_keeps_the_upstream_page_bindings(client: TestClient) -> None:
    """The earlier GO page binds session.active, next.next_step.title,
    checklist.steps, health.status and health.cone.band."""
    client.post("/core/cone/state", json={"band": "C", "reason": "stabilize the funnel"})
    client.post("/core/go/start_session", json={"notes": "bindings"})
    summary = client.get("/core/go/summary").json()
    assert summary["session"]["active"] is True
    assert isinstance(summary["next"]["next_step"]["title"], str)
    assert summary["next"]["next_step"]["title"]
    steps = summary["checklist"]["steps"]
    assert len(steps) == summary["checklist"]["total"] > 0
    assert steps[0]["id"] == "preflight_view_dashboard"
    assert summary["health"]["status"] in {"green", "yellow", "red"}
    cone = summary["health"]["cone"]
    assert cone["band"] == "C"
    assert cone["reason"] == "stabilize the funnel"
    assert cone["updated_at_utc"].endswith("Z")
    assert cone["updated_by"]
    assert "metrics" in cone
    # What health.cone held before (the band letter) is an additive field.
    assert summary["health"]["cone_band"] == "C"
    assert summary["health"]["cone_state"] == cone


def test_corrupt_session_file_is_503_naming_it_and_never_overwritten(
    client: TestClient, data_dir: Path
) -> None:
    path = data_dir / "go_session.json"
    path.write_bytes(b'{"session": {"active": tru')
    for method, url in (
        ("GET", "/core/go/session"),
        ("POST", "/core/go/start_session"),
        ("POST", "/core/go/end_session"),
        ("GET", "/core/go/summary"),
    ):
        response = client.request(method, url, json={} if method == "POST" else None)
        assert response.status_code == 503, url
        assert response.json()["file"].endswith("go_session.json")
        assert "go_session.json" in response.json()["detail"]
    assert path.read_bytes() == b'{"session": {"active": tru'
    ready = client.get("/core/readyz")
    assert ready.status_code == 503
    assert any("go_session.json" in r for r in ready.json()["reasons"])


def test_a_wrong_shape_session_file_is_503_too(client: TestClient, data_dir: Path) -> None:
    (data_dir / "go_session.json").write_text('["not", "a", "session"]')
    assert client.post("/core/go/start_session", json={}).status_code == 503
    assert (data_dir / "go_session.json").read_text() == '["not", "a", "session"]'


@pytest.mark.parametrize(
    ("url", "body", "field"),
    [
        ("/core/go/start_session", {"notes": "\ud800"}, "notes"),
        ("/core/go/complete", {"step_id": "intake_ready", "notes": "bad \udfff"}, "notes"),
        ("/core/cone/state", {"band": "A", "reason": "\ud83d"}, "reason"),
        (
            "/core/cone/state",
            {"band": "A", "reason": "ok", "metrics": {"k": ["\ud800"]}},
            "metrics",
        ),
    ],
)
def test_unstorable_text_is_422_and_changes_nothing(
    client: TestClient, data_dir: Path, url: str, body: dict[str, object], field: str
) -> None:
    # Escaped lone surrogates are valid JSON but not storable UTF-8.
    before = {p.name: p.read_bytes() for p in data_dir.iterdir() if not p.name.startswith(".")}
    assert sorted(before) == ["owner.token", "tokens.json"]  # the credential the client sends
    raw = json.dumps(body)
    response = client.post(url, content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][:2] == ["body", field]
    after = {p.name: p.read_bytes() for p in data_dir.iterdir() if not p.name.startswith(".")}
    assert after == before


def test_a_record_that_is_not_an_audit_event_is_503(client: TestClient, data_dir: Path) -> None:
    (data_dir / "audit.log").write_text('{"ts_utc": "2026-01-01T00:00:00Z", "event": "X"}\n{}\n')
    response = client.get("/core/audit/events")
    assert response.status_code == 503
    assert "audit.log" in response.json()["detail"]


def test_the_go_page_is_served_with_a_strict_policy(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-cache"
    script = client.get("/ui/js/app.js")
    assert script.status_code == 200
    assert script.headers["cache-control"] == "no-cache"
    assert client.get("/ui/nope.js").status_code == 404
