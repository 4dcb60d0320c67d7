"""GET /core/events/stream on the real ``valhalla serve``: several workers,
resume with Last-Event-ID, keep-alives, limits, scopes."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.conftest import FakeClock
from tests.events.sse import Stream
from tests.live.server import LiveServer
from valhalla_gov.auth.service import create_token, revoke_token
from valhalla_gov.compose import open_json

pytestmark = pytest.mark.live

FAST = {"VALHALLA_EVENTS_KEEPALIVE_SECONDS": "1"}


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """Three workers on one data dir: writes and streams land on any of them."""
    home = tmp_path_factory.mktemp("events-workers")
    with LiveServer(home / "data", workers=3, env=FAST) as live:
        _settle_health(live)
        yield live


def _settle_health(server: LiveServer) -> None:
    """Band D, and its HEALTH_CHANGED recorded: the tests' writes keep band D,
    so the only events from here on are theirs."""
    with server.client() as http:
        assert http.post("/core/cone/state", json={"band": "D", "reason": "settle"})
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        with server.client() as http:
            found = http.get("/core/audit/events?event=HEALTH_CHANGED").json()
        if found["items"]:
            return
        time.sleep(0.1)
    raise AssertionError("no HEALTH_CHANGED after the band moved to D")


def _stream(server: LiveServer, **headers: str) -> Stream:
    return Stream(f"{server.url}/core/events/stream", headers={**server.headers, **headers}).start()


def _writes(server: LiveServer, count: int) -> None:
    """``count`` audited writes, from several connections at once (so several workers)."""

    def one(n: int) -> None:
        with server.client(timeout=30) as http:
            reason = f"event test {n}"
            assert http.post("/core/cone/state", json={"band": "D", "reason": reason})

    threads = [threading.Thread(target=one, args=(n,)) for n in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _newest_seq(server: LiveServer) -> int:
    items = httpx.get(
        f"{server.url}/core/audit/events?limit=1", headers=server.headers, timeout=10
    ).json()["items"]
    return int(items[0]["seq"]) if items else 0


def test_every_write_reaches_every_stream_on_every_worker_in_order(workers: LiveServer) -> None:
    base = _newest_seq(workers)
    streams = [_stream(workers) for _ in range(6)]
    try:
        for s in streams:
            assert s.status == 200
        _writes(workers, 12)
        expected = list(range(base + 1, base + 13))
        for s in streams:
            events = s.take(12)
            assert [int(e.id or 0) for e in events] == expected
            assert {e.event for e in events} == {"CONE_SET"}
            for e in events:
                record = e.record
                assert record["seq"] == int(e.id or 0)
                assert record["event"] == e.event
                assert record["payload"]["reason"].startswith("event test")
                assert {"ts_utc", "actor", "prev", "hash"} <= set(record)
            assert s.quiet(0.5) == []  # nothing twice
    finally:
        for s in streams:
            s.stop()


def test_resume_with_last_event_id_replays_then_goes_live(workers: LiveServer) -> None:
    first = _stream(workers)
    try:
        _writes(workers, 3)
        seen = first.take(3)
    finally:
        first.stop()
    last = int(seen[-1].id or 0)
    _writes(workers, 4)  # missed while away
    again = _stream(workers, **{"Last-Event-ID": str(last)})
    try:
        replayed = again.take(4)
        assert [int(e.id or 0) for e in replayed] == list(range(last + 1, last + 5))
        _writes(workers, 2)  # then live, without a gap or a repeat
        live = again.take(2)
        assert [int(e.id or 0) for e in live] == [last + 5, last + 6]
        assert again.quiet(0.5) == []
    finally:
        again.stop()


def test_keep_alive_comments_flow_while_nothing_happens(workers: LiveServer) -> None:
    stream = _stream(workers)
    try:
        stream.quiet(2.6)
        # The opening comment, then one keep-alive per second at this setting.
        assert stream.comments.count(": keep-alive") >= 2
        assert stream.status == 200
    finally:
        stream.stop()


def test_bad_last_event_id_is_422(workers: LiveServer) -> None:
    resp = httpx.get(
        f"{workers.url}/core/events/stream",
        headers={"Last-Event-ID": "not-a-number", **workers.headers},
    )
    assert resp.status_code == 422
    assert resp.json()["detail"][0]["loc"] == ["header", "Last-Event-ID"]


def test_streams_per_client_are_bounded(tmp_path: Path) -> None:
    env = {**FAST, "VALHALLA_EVENTS_MAX_STREAMS": "2"}
    with LiveServer(tmp_path / "data", env=env) as live:
        one, two = _stream(live), _stream(live)
        refused = httpx.get(f"{live.url}/core/events/stream", headers=live.headers, timeout=10)
        assert refused.status_code == 429
        assert "at most 2 event streams" in refused.json()["detail"]
        assert int(refused.headers["Retry-After"]) > 0
        one.stop()
        assert one.closed.wait(10)
        # The closed stream's place is free again (the server sees the
        # disconnect at its next write, a keep-alive within a second).
        for _ in range(50):
            third = Stream(f"{live.url}/core/events/stream", headers=live.headers).start()
            if third.status == 200:
                break
            third.closed.wait(1)
        assert third.status == 200
        third.stop()
        two.stop()


def test_the_stream_needs_the_viewer_scope_and_ends_when_the_token_is_revoked(
    tmp_path: Path,
) -> None:
    store = open_json(tmp_path / "data")
    _, token = create_token(
        store=store, name="watcher", scopes=["viewer"], actor="t", clock=FakeClock()
    )
    with LiveServer(tmp_path / "data", env=FAST) as live:
        url = f"{live.url}/core/events/stream"
        assert httpx.get(url, timeout=10).status_code == 401
        bad = httpx.get(url, headers={"Authorization": "Bearer vgo_nope"}, timeout=10)
        assert bad.status_code == 401
        stream = Stream(url, headers={"Authorization": f"Bearer {token}"}).start()
        assert stream.status == 200
        revoke_token(store=store, name="watcher", actor="t", clock=FakeClock())
        # The revocation itself is an audited event; then the stream ends.
        assert stream.closed.wait(10)
        names = []
        while not stream.events.empty():
            names.append(stream.events.get_nowait().event)
        assert names[-1] == "stream-end"


def test_a_revoked_tokens_stream_ends_while_events_keep_flowing(tmp_path: Path) -> None:
    """Reproduced: revoked, a stream went on (24 events in the next 20 s)
    because its right was checked at keep-alives only, which never come while
    events flow. It is checked on a timer, and before each batch."""
    store = open_json(tmp_path / "data")
    _, token = create_token(
        store=store, name="watcher", scopes=["viewer"], actor="t", clock=FakeClock()
    )
    # The default 15 s keep-alive: a check at keep-alives alone would come too late.
    with LiveServer(tmp_path / "data") as live:
        stream = Stream(
            f"{live.url}/core/events/stream", headers={"Authorization": f"Bearer {token}"}
        ).start()
        stop = threading.Event()

        def keep_writing() -> None:
            with live.client() as http:
                while not stop.is_set():
                    http.post("/core/cone/decide", json={"engine": "flips", "action": "run"})
                    time.sleep(0.1)

        writer = threading.Thread(target=keep_writing, daemon=True)
        writer.start()
        try:
            stream.take(3)  # events flow
            revoke_token(store=store, name="watcher", actor="t", clock=FakeClock())
            # Ten events a second flow meanwhile: no keep-alive is ever due.
            assert stream.closed.wait(10), "the stream went on after its token was revoked"
        finally:
            stop.set()
            writer.join(10)
        names = []
        while not stream.events.empty():
            names.append(stream.events.get_nowait().event)
        assert names[-1] == "stream-end"
