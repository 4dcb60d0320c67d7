"""Live tests: the real `valhalla serve` in a subprocess, driven over HTTP."""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.conftest import join_all
from tests.live.server import VALHALLA, LiveServer
from valhalla_gov.audit.service import verify_chain
from valhalla_gov.compose import open_json

pytestmark = pytest.mark.live


def test_session_workflow_over_http(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with LiveServer(data_dir) as server, server.client() as http:
        resp = http.get("/core/go/session")
        assert resp.status_code == 200
        assert "active" in resp.json()

        resp = http.post("/core/go/start_session", json={"notes": "Test"})
        assert resp.status_code == 200
        assert resp.json()["active"] is True
        session_id = resp.json()["id"]

        file_data = json.loads((data_dir / "go_session.json").read_text())
        assert file_data["session"]["active"] is True
        assert file_data["session"]["id"] == session_id

        assert (
            http.post("/core/go/complete", json={"step_id": "preflight_view_dashboard"}).json()[
                "session_id"
            ]
            == session_id
        )
        ended = http.post("/core/go/end_session", json={"notes": "done"})
        assert ended.status_code == 200
        assert ended.json()["steps_completed"] == ["preflight_view_dashboard"]
        history = http.get("/core/go/sessions").json()["items"]
        assert [s["id"] for s in history] == [session_id]
        assert http.get("/core/audit/verify").json()["ok"] is True
        assert http.get("/docs").status_code == 200
        assert "/core/go/start_session" in http.get("/openapi.json").json()["paths"]


def test_parallel_starts_across_worker_processes_give_exactly_one_session(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    results: list[httpx.Response] = []
    lock = threading.Lock()
    with LiveServer(data_dir, workers=4) as server:
        barrier = threading.Barrier(40)

        def start(n: int) -> None:
            with server.client(timeout=30) as http:
                barrier.wait(30)
                resp = http.post("/core/go/start_session", json={"notes": f"racer {n}"})
            with lock:
                results.append(resp)

        threads = [threading.Thread(target=start, args=(n,)) for n in range(40)]
        for t in threads:
            t.start()
        join_all(threads)
        codes = sorted(r.status_code for r in results)
        assert codes == [200] + [409] * 39
        winner = next(r for r in results if r.status_code == 200).json()
        assert {r.json()["session"]["id"] for r in results if r.status_code == 409} == {
            winner["id"]
        }
        current = httpx.get(f"{server.url}/core/go/session", headers=server.headers).json()
        assert current["id"] == winner["id"]
        assert current["notes"] == winner["notes"]
        starts = httpx.get(
            f"{server.url}/core/audit/events",
            params={"event": "GO_SESSION_START"},
            headers=server.headers,
        ).json()["items"]
        assert len(starts) == 1


def test_cli_beside_a_running_server_shares_the_invariants(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with LiveServer(data_dir, workers=2) as server, server.client() as http:
        cli = subprocess.run(
            [
                VALHALLA,
                "go",
                "start",
                "--notes",
                "from the cli",
                "--data-dir",
                str(data_dir),
                "--json",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert cli.returncode == 0, cli.stderr
        cli_session = json.loads(cli.stdout)
        conflict = http.post("/core/go/start_session", json={})
        assert conflict.status_code == 409
        assert conflict.json()["session"]["id"] == cli_session["id"]
        ended = http.post("/core/go/end_session", json={"notes": "ended over http"}).json()
        assert ended["id"] == cli_session["id"]
        again = subprocess.run(
            [VALHALLA, "go", "end", "--data-dir", str(data_dir), "--json"],
            capture_output=True,
            text=True,
            check=False,
        )
        # Ended over HTTP: the CLI sees it and refuses to end it again.
        assert again.returncode == 1
        assert again.stdout == ""
        assert f"the last one, {ended['id']}, ended {ended['ended_at_utc']}" in again.stderr
        refused = subprocess.run(
            [VALHALLA, "go", "start", "--data-dir", str(data_dir)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert refused.returncode == 0  # the last session ended, so a new start is fine
        second = subprocess.run(
            [VALHALLA, "go", "start", "--data-dir", str(data_dir)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert second.returncode == 1
        assert "already active" in second.stderr
    assert verify_chain(store=open_json(data_dir)).ok
