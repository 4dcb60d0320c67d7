"""Two `valhalla serve` replicas on one PostgreSQL database (and one Redis)."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.auth.test_rate_limits import REDIS_URL, redis_up
from tests.conftest import FakeClock, _truncate, join_all, need
from tests.live.server import LiveServer
from valhalla_gov.audit.service import verify_chain
from valhalla_gov.auth.service import create_token
from valhalla_gov.compose import open_sql

pytestmark = [pytest.mark.live]


def test_replicas_share_one_truth(tmp_path: Path, pg_url: str, clock: FakeClock) -> None:
    need(redis_up(), "Redis on 127.0.0.1:6379 is needed: apt-get install redis-server")
    _truncate(pg_url)
    name = f"replica-{uuid.uuid4().hex[:10]}"
    store = open_sql(pg_url)
    _, token = create_token(store=store, name=name, scopes=["operator"], actor="t", clock=clock)
    headers = {"Authorization": f"Bearer {token}"}
    env = {
        "VALHALLA_DATABASE_URL": pg_url,
        "VALHALLA_REDIS_URL": REDIS_URL,
    }
    with (
        LiveServer(tmp_path / "a", workers=2, env=env) as one,
        LiveServer(tmp_path / "b", workers=2, env=env) as two,
    ):
        results: list[httpx.Response] = []
        lock = threading.Lock()
        barrier = threading.Barrier(20)

        def start(url: str) -> None:
            with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
                barrier.wait(30)
                resp = http.post("/core/go/start_session", json={"notes": "race"})
            with lock:
                results.append(resp)

        threads = [threading.Thread(target=start, args=((one, two)[n % 2].url,)) for n in range(20)]
        for t in threads:
            t.start()
        join_all(threads)
        assert sorted(r.status_code for r in results) == [200] + [409] * 19
        winner = next(r.json() for r in results if r.status_code == 200)

        # Started through one replica, ended through the other.
        seen_by_two = httpx.get(f"{two.url}/core/go/session", headers=headers).json()
        assert seen_by_two["id"] == winner["id"]
        ended = httpx.post(f"{two.url}/core/go/end_session", json={"notes": "bye"}, headers=headers)
        assert ended.status_code == 200
        for _ in range(3):
            again = httpx.post(f"{one.url}/core/go/start_session", json={}, headers=headers)
            assert again.status_code == 200
            httpx.post(f"{two.url}/core/go/end_session", json={}, headers=headers)
        history_one = httpx.get(f"{one.url}/core/go/sessions", headers=headers).json()
        history_two = httpx.get(f"{two.url}/core/go/sessions", headers=headers).json()
        assert history_one == history_two
        assert len(history_one["items"]) == 4
        assert history_one["items"][-1]["id"] == winner["id"]
        assert httpx.get(f"{one.url}/core/audit/verify", headers=headers).json()["ok"] is True
    assert verify_chain(store=store).ok
    store.close()


def test_a_write_on_one_replica_is_read_by_the_next_get_on_the_other(
    tmp_path: Path, pg_url: str
) -> None:
    """Each replica caches reads per store generation: a write through one
    must be what the very next read through the other returns, with the
    reader's cache warm (it has just answered the same GET)."""
    _truncate(pg_url)
    env = {"VALHALLA_DATABASE_URL": pg_url}
    with (
        LiveServer(tmp_path / "a", env=env) as one,
        LiveServer(tmp_path / "b", env=env) as two,
        # One owner credential for the database, its file in the first's data dir.
        httpx.Client(base_url=one.url, timeout=30, headers=one.headers) as a,
        httpx.Client(base_url=two.url, timeout=30, headers=one.headers) as b,
    ):
        toggles = 0
        for n, band in enumerate("ABCDBA"):
            writer, reader = (a, b) if n % 2 == 0 else (b, a)
            before = reader.get("/core/go/session").json()
            reader.get("/core/cone/state")  # warm
            started = writer.post("/core/go/start_session", json={"notes": f"round {n}"})
            assert started.status_code == 200, started.text
            seen = reader.get("/core/go/session").json()
            assert seen["active"] is True
            assert seen["id"] == started.json()["id"] != before["id"]
            set_band = writer.post("/core/cone/state", json={"band": band, "reason": f"r{n}"})
            assert set_band.status_code == 200, set_band.text
            assert reader.get("/core/cone/state").json()["band"] == band
            assert reader.get("/core/status/ryg").json()["cone_band"] == band
            step = "preflight_view_dashboard"
            checklist = reader.get("/core/go/checklist").json()
            done_before = next(s["done"] for s in checklist["steps"] if s["id"] == step)
            toggled = writer.post(
                "/core/go/complete", json={"step_id": step, "done": not done_before}
            )
            if toggled.status_code == 200:  # band D may refuse "done"
                toggles += 1
                after = reader.get("/core/go/checklist").json()
                assert next(s["done"] for s in after["steps"] if s["id"] == step) is not done_before
            ended = reader.post("/core/go/end_session", json={"notes": f"end {n}"})
            assert ended.status_code == 200
            assert ended.json()["active"] is False
            assert writer.get("/core/go/session").json()["active"] is False
        assert toggles >= 4
        history = a.get("/core/go/sessions").json()["items"]
        assert len(history) == 6
        assert b.get("/core/go/sessions").json()["items"] == history
        assert a.get("/core/audit/verify").json()["ok"] is True
