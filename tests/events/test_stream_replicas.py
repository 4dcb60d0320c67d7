"""Event streams across two ``valhalla serve`` replicas on one PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import httpx2 as httpx
import pytest

from tests.conftest import _truncate
from tests.events.sse import Stream
from tests.live.server import LiveServer

pytestmark = pytest.mark.live


def test_a_write_on_one_replica_reaches_streams_on_the_other(tmp_path: Path, pg_url: str) -> None:
    _truncate(pg_url)
    env = {
        "VALHALLA_DATABASE_URL": pg_url,
        "VALHALLA_RATE_LIMIT_FAIL_OPEN": "true",
        # The safety-net poll (60 s) and the keep-alive read (15 s) are both
        # slower than the wait below: only LISTEN/NOTIFY can deliver in time,
        # so this proves the notification path.
        "VALHALLA_EVENTS_POLL_SECONDS": "60",
    }
    one = LiveServer(tmp_path / "a", workers=2, env=env)
    two = LiveServer(tmp_path / "b", env=env)
    with one, two:  # each starts on entry and stops (its whole process group) on exit
        # One owner credential for the database: the first replica's data dir
        # holds its file, and the second knows it from the database.
        assert not (tmp_path / "b" / "owner.token").exists()
        owner = one.headers
        url = f"{one.url}/core/events/stream"
        watchers = [Stream(url, headers=owner).start() for _ in range(3)]
        try:
            with httpx.Client(base_url=two.url, timeout=30, headers=owner) as http:
                assert http.post("/core/go/start_session", json={"notes": "r"}).status_code == 200
                assert (
                    # Band B, as it boots: the light stays yellow, so no
                    # HEALTH_CHANGED joins the events counted here.
                    http.post("/core/cone/state", json={"band": "B", "reason": "r"}).status_code
                    == 200
                )
                assert http.post("/core/go/end_session", json={"notes": "r"}).status_code == 200
            for watcher in watchers:
                events = watcher.take(3, timeout=8)
                assert [e.event for e in events] == [
                    "GO_SESSION_START",
                    "CONE_SET",
                    "GO_SESSION_END",
                ]
                assert [int(e.id or 0) for e in events] == [1, 2, 3]
        finally:
            for watcher in watchers:
                watcher.stop()

        # Resume on the other replica from what the first one sent.
        with one.client(timeout=30) as http:
            http.post("/core/cone/state", json={"band": "B", "reason": "later"})
        resumed = Stream(
            f"{two.url}/core/events/stream", headers={"Last-Event-ID": "1", **owner}
        ).start()
        try:
            events = resumed.take(3, timeout=10)
            assert [int(e.id or 0) for e in events] == [2, 3, 4]
            assert resumed.quiet(0.5) == []
        finally:
            resumed.stop()
    _truncate(pg_url)
