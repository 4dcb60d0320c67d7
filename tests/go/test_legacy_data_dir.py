"""A data dir written by the earlier implementation opens and works unchanged."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient

LEGACY_START = "2026-01-01T09:34:05.283144Z"
LEGACY_FILES = {
    "go_session.json": json.dumps(
        {
            "session": {
                "active": True,
                "started_at_utc": LEGACY_START,
                "ended_at_utc": None,
                "cone_band": "B",
                "status": "green",
                "notes": "Weekly review",
                "snapshot": {
                    "cone": {"band": "B", "reason": "Boot default", "metrics": {}},
                    "status": {"status": "green", "reasons": []},
                },
            }
        },
        indent=2,
    ),
    "cone_state.json": json.dumps(
        {"band": "B", "reason": "Boot default", "updated_at": "2025-12-31T08:00:00", "kpis": [1]}
    ),
    "go_progress.json": json.dumps(
        {"progress": {"preflight_view_dashboard": {"done": True, "notes": None}}}
    ),
    "audit.log": "".join(
        json.dumps(line) + "\n"
        for line in (
            {
                "ts_utc": "2025-12-31T08:00:00.000001Z",
                "event": "CONE_SET",
                "payload": {"band": "B"},
            },
            {
                "ts_utc": "2026-01-01T09:34:05.283144",
                "event": "GO_SESSION_START",
                "payload": {"session_id": LEGACY_START, "notes": "Weekly review"},
            },
        )
    ),
}


def _write_legacy(data_dir: Path) -> dict[str, bytes]:
    for name, text in LEGACY_FILES.items():
        (data_dir / name).write_text(text)
    return {name: (data_dir / name).read_bytes() for name in LEGACY_FILES}


def test_reads_change_no_byte_of_a_legacy_data_dir(client: TestClient, data_dir: Path) -> None:
    before = _write_legacy(data_dir)
    session = client.get("/core/go/session").json()
    assert session["active"] is True
    assert session["started_at_utc"] == LEGACY_START
    assert session["id"]
    assert session["id"] == client.get("/core/go/session").json()["id"]
    cone = client.get("/core/cone/state").json()
    assert cone["band"] == "B"
    assert cone["kpis"] == [1]
    checklist = client.get("/core/go/checklist").json()
    assert checklist["steps"][0]["done"] is True
    for url in (
        "/core/go/summary",
        "/core/status/ryg",
        "/core/audit/events",
        "/core/readyz",
        "/core/go/sessions",
        "/core/go/next_step",
    ):
        assert client.get(url).status_code == 200, url
    verify = client.get("/core/audit/verify").json()
    assert verify == {
        "ok": True,
        "events": 0,
        "legacy_events": 2,
        "first_bad_seq": None,
        "detail": None,
        "head_seq": 0,
        "head_hash": None,
        "anchored": False,
    }
    assert {name: (data_dir / name).read_bytes() for name in LEGACY_FILES} == before


def test_the_legacy_active_session_can_be_ended(client: TestClient, data_dir: Path) -> None:
    _write_legacy(data_dir)
    derived_id = client.get("/core/go/session").json()["id"]
    ended = client.post("/core/go/end_session", json={"notes": "closing the old one"})
    assert ended.status_code == 200
    body = ended.json()
    assert body["id"] == derived_id
    assert body["active"] is False
    assert body["started_at_utc"] == LEGACY_START
    assert body["snapshot"]["status"]["status"] == "green"  # the start snapshot is kept
    assert body["notes"] == "closing the old one"
    history = client.get("/core/go/sessions").json()["items"]
    assert [s["id"] for s in history] == [derived_id]
    assert client.get(f"/core/go/sessions/{derived_id}").status_code == 200
    events = client.get("/core/audit/events").json()["items"]
    assert events[0]["event"] == "GO_SESSION_END"
    assert events[0]["seq"] == 1
    assert events[0]["payload"]["session_id"] == derived_id
    assert client.get("/core/audit/verify").json()["legacy_events"] == 2
    assert client.get("/core/audit/verify").json()["ok"] is True
    # The legacy lines are still there, byte for byte, ahead of the chain.
    assert (data_dir / "audit.log").read_text().startswith(LEGACY_FILES["audit.log"])
    assert client.post("/core/go/start_session", json={}).status_code == 200
