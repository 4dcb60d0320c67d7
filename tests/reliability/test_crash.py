"""kill -9 of a multi-worker server during a write storm loses nothing acknowledged."""

from __future__ import annotations

import itertools
import json
import random
import threading
import time
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.live.server import LiveServer
from valhalla_gov.audit.service import verify_chain
from valhalla_gov.storage.json_backend import JsonStore
from valhalla_gov.timeutil import parse_iso

pytestmark = [pytest.mark.live, pytest.mark.slow]


class Acks:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.starts: set[str] = set()
        self.ends: dict[str, str] = {}


def _storm(url: str, acks: Acks, stop: threading.Event) -> None:
    with httpx.Client(base_url=url, timeout=5) as http:
        while not stop.is_set():
            try:
                started = http.post("/core/go/start_session", json={"notes": "storm"})
                if started.status_code == 200:
                    with acks.lock:
                        acks.starts.add(started.json()["id"])
                http.post("/core/go/complete", json={"step_id": "preflight_view_dashboard"})
                ended = http.post("/core/go/end_session", json={"notes": "storm end"})
                body = ended.json() if ended.status_code == 200 else {}
                if body.get("ended_at_utc"):
                    with acks.lock:
                        acks.ends[body["id"]] = body["ended_at_utc"]
            except httpx.TransportError:
                return


def _check_data_dir(data_dir: Path, acks: Acks) -> None:
    store = JsonStore(data_dir)
    for name in ("go_session.json", "go_progress.json"):
        json.loads((data_dir / name).read_text())  # parses
    history = [entry.record for entry in store.scan_log_forward("go_sessions")]
    current = json.loads((data_dir / "go_session.json").read_text())["session"]
    known = {s["id"]: s for s in history}
    if current is not None:
        known.setdefault(current["id"], current)
    missing = acks.starts - set(known)
    assert not missing, f"acknowledged starts lost: {missing}"
    for session_id, ended_at in acks.ends.items():
        assert session_id in {s["id"] for s in history}, f"acknowledged end lost: {session_id}"
        assert known[session_id]["ended_at_utc"] == ended_at
    assert len(history) == len({s["id"] for s in history}), "a session was archived twice"
    for earlier, later in itertools.pairwise(history):
        assert parse_iso(later["started_at_utc"]) >= parse_iso(earlier["ended_at_utc"])
    assert all(not s["active"] for s in history)
    result = verify_chain(store=store)
    assert result.ok, result


def test_kill_minus_nine_during_a_write_storm(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    acks = Acks()
    rng = random.Random(7)
    for _round in range(3):
        server = LiveServer(data_dir, workers=2).start()
        stop = threading.Event()
        threads = [threading.Thread(target=_storm, args=(server.url, acks, stop)) for _ in range(6)]
        for t in threads:
            t.start()
        time.sleep(rng.uniform(0.6, 1.5))
        server.kill()  # SIGKILL to the whole process group, mid-request
        stop.set()
        for t in threads:
            t.join(timeout=30)
        _check_data_dir(data_dir, acks)
    assert len(acks.starts) > 10, "the storm did not get going"
    with LiveServer(data_dir) as server:
        assert httpx.get(f"{server.url}/core/readyz").status_code == 200
        assert httpx.get(f"{server.url}/core/audit/verify").json()["ok"] is True
