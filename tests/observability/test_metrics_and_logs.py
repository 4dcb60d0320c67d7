"""GET /metrics, X-Request-ID and the JSON access log."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import owner_headers
from tests.live.server import LiveServer
from valhalla_gov.app import create_app
from valhalla_gov.observability.logs import JsonFormatter
from valhalla_gov.settings import Settings


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _value(text: str, name: str, **labels: str) -> float:
    return _samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_count_requests_by_route_template_and_report_state(client: TestClient) -> None:
    before = client.get("/metrics").text
    started = client.post("/core/go/start_session", json={"notes": "m"}).json()
    for _ in range(3):
        assert client.get(f"/core/go/sessions/{started['id']}").status_code == 200
    client.get("/core/go/sessions/UNKNOWN")
    after = client.get("/metrics")
    assert after.status_code == 200
    assert after.headers["content-type"].startswith("text/plain")
    text = after.text
    route = "/core/go/sessions/{session_id}"
    ok = _value(text, "valhalla_http_requests_total", route=route, method="GET", status="200")
    missing = _value(text, "valhalla_http_requests_total", route=route, method="GET", status="404")
    assert (
        ok - _value(before, "valhalla_http_requests_total", route=route, method="GET", status="200")
        == 3
    )
    assert (
        missing
        - _value(before, "valhalla_http_requests_total", route=route, method="GET", status="404")
        == 1
    )
    assert (
        _value(text, "valhalla_http_request_duration_seconds_count", route=route, method="GET") >= 4
    )
    assert _value(text, "valhalla_go_session_active") == 1
    assert _value(text, "valhalla_cone_band", band="B") == 1
    assert _value(text, "valhalla_cone_band", band="D") == 0
    assert _value(text, "valhalla_health_status", status="yellow") == 1
    assert _value(text, "valhalla_storage_up") == 1
    started_events = _value(text, "valhalla_audit_events_total", event="GO_SESSION_START")
    assert (
        started_events - _value(before, "valhalla_audit_events_total", event="GO_SESSION_START")
        == 1
    )
    # Paths never become labels: an unknown URL is "unmatched". The marker is
    # letters only, so no float in the exposition (a _created stamp) can hold it.
    client.get("/no/such/path/qzxvkw")
    assert "qzxvkw" not in client.get("/metrics").text


def test_rate_limit_rejections_are_counted(data_dir: Path) -> None:
    owner = owner_headers(data_dir)
    app = create_app(Settings(data_dir=data_dir, rate_limit_writes="1/minute"))
    with TestClient(app, client=("127.0.0.1", 1), headers=owner) as http:
        before = _value(
            http.get("/metrics").text, "valhalla_rate_limit_rejections_total", rule="writes"
        )
        http.post("/core/go/complete", json={"step_id": "preflight_view_dashboard"})
        assert http.post("/core/go/complete", json={"step_id": "intake_ready"}).status_code == 429
        after = _value(
            http.get("/metrics").text, "valhalla_rate_limit_rejections_total", rule="writes"
        )
    assert after - before == 1


def test_request_id_is_echoed_or_made(client: TestClient) -> None:
    given = client.get("/core/healthz", headers={"X-Request-ID": "abc-123.x_y"})
    assert given.headers["X-Request-ID"] == "abc-123.x_y"
    made = client.get("/core/healthz")
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["X-Request-ID"])
    hostile = client.get("/core/healthz", headers={"X-Request-ID": "bad id\twith spaces"})
    assert re.fullmatch(r"[0-9a-f]{32}", hostile.headers["X-Request-ID"])
    assert client.get("/nope").headers["X-Request-ID"]


def test_one_json_access_line_per_request_without_secrets(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "vgo_this-must-never-be-logged"
    with caplog.at_level(logging.INFO, logger="valhalla_gov.access"):
        client.post(
            "/core/go/start_session",
            json={"notes": "x"},
            headers={"X-Request-ID": "req-1", "Authorization": f"Bearer {secret}"},
        )
        client.post("/core/go/start_session", json={}, headers={"X-Request-ID": "req-2"})
    records = [r for r in caplog.records if r.name == "valhalla_gov.access"]
    lines = [json.loads(JsonFormatter().format(r)) for r in records]
    assert [(x["request_id"], x["route"], x["status"]) for x in lines] == [
        ("req-1", "/core/go/start_session", 401),
        ("req-2", "/core/go/start_session", 200),
    ]
    assert lines[1]["actor"] == "local"
    assert lines[1]["latency_ms"] > 0
    assert lines[1]["msg"] == "POST /core/go/start_session 200"
    assert secret not in caplog.text
    assert all(secret not in json.dumps(x) for x in lines)


@pytest.mark.live
def test_a_multi_worker_server_sums_its_workers_and_logs_json(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with LiveServer(data_dir, workers=2, log_level="info") as server:
        # A fresh connection per request (no keep-alive), so the kernel hands
        # them to either worker; sent until the access log shows both answered.
        sent = 0
        while sent < 30 or (len(_access_pids(server.log_path)) < 2 and sent < 400):
            with server.client() as http:
                assert http.get("/core/go/checklist").status_code == 200
            sent += 1
        pids = _access_pids(server.log_path)
        assert len(pids) >= 2, f"one worker answered all {sent} fresh connections"
        totals = set()
        for _ in range(6):
            with server.client() as http:
                totals.add(
                    _value(
                        http.get("/metrics").text,
                        "valhalla_http_requests_total",
                        route="/core/go/checklist",
                        method="GET",
                        status="200",
                    )
                )
        # Whichever worker answers the scrape, it reports every worker's requests.
        assert totals == {float(sent)}
        httpx.get(f"{server.url}/core/healthz", headers={"X-Request-ID": "live-req"})
    access = _access_lines(server.log_path)
    assert any(x.get("request_id") == "live-req" for x in access)
    assert len(access) >= sent + 1


def _access_lines(log_path: Path) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    return [x for x in lines if x.get("logger") == "valhalla_gov.access"]


def _access_pids(log_path: Path) -> set[int]:
    return {x["pid"] for x in _access_lines(log_path) if x.get("route") == "/core/go/checklist"}
