"""Health on the request path: it writes nothing, and what it keeps between
calls is exact (another worker's or replica's write shows at once)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import FakeClock, make_store
from valhalla_gov.audit.service import ChainWatcher
from valhalla_gov.compose import open_json
from valhalla_gov.cone.canon import load_canon
from valhalla_gov.cone.service import decide, set_cone_state
from valhalla_gov.go.session_service import end_session, start_session
from valhalla_gov.health.service import get_health_status
from valhalla_gov.health.store import SERVER_ERRORS, THRESHOLDS
from valhalla_gov.storage.protocol import Store
from valhalla_gov.timeutil import iso_z

CANON = load_canon(None)


def _deny(store: Store, clock: FakeClock, count: int) -> None:
    for _ in range(count):
        decide(
            store=store, canon=CANON, engine="storage_units", action="optimize", actor="t",
            clock=clock,
        )  # fmt: skip


def test_health_and_a_session_snapshot_write_no_file(
    data_dir: Path, clock: FakeClock, watcher: ChainWatcher
) -> None:
    store = open_json(data_dir)
    set_cone_state(store=store, band="A", reason="t", metrics=None, actor="t", clock=clock)
    # A file created in the dir (a probe) would move the dir's mtime to now.
    os.utime(data_dir, ns=(0, 0))
    for _ in range(3):
        assert get_health_status(store=store, clock=clock, watcher=watcher).status == "green"
    assert os.stat(data_dir).st_mtime_ns == 0
    assert sorted(p.name for p in data_dir.iterdir() if p.name.startswith(".probe")) == []


def test_other_workers_writes_show_at_once(
    store: Store, tmp_path: Path, clock: FakeClock, request: pytest.FixtureRequest
) -> None:
    backend = request.node.callspec.params["store"]
    other = make_store(backend, tmp_path)  # a second worker (or replica) on the same data
    watcher = ChainWatcher()
    set_cone_state(store=store, band="A", reason="t", metrics=None, actor="t", clock=clock)
    first = get_health_status(store=store, clock=clock, watcher=watcher)
    assert first.status == "green"
    assert get_health_status(store=store, clock=clock, watcher=watcher) == first.model_copy(
        update={"checked_at_utc": iso_z(clock())}
    )
    # Denials through the other worker: the first one's deny rate follows.
    _deny(other, clock, 25)
    health = get_health_status(store=store, clock=clock, watcher=watcher)
    assert health.checks["deny_rate"].status == "red"
    assert health.checks["deny_rate"].detail.startswith("deny rate 100% over the last 25")
    # A threshold change elsewhere re-judges the same decisions.
    with other.transaction() as txn:
        txn.write_document(THRESHOLDS, {"deny_window": 10, "deny_min_decisions": 10})
    health = get_health_status(store=store, clock=clock, watcher=watcher)
    assert health.checks["deny_rate"].detail.startswith("deny rate 100% over the last 10")
    # A server error recorded elsewhere turns the light red at once, and its
    # aging out turns it back.
    with other.transaction() as txn:
        txn.append_log(SERVER_ERRORS, {"ts_utc": iso_z(clock()), "error": "RuntimeError"})
    assert (
        get_health_status(store=store, clock=clock, watcher=watcher).checks["server_errors"].status
        == "red"
    )
    clock.advance(minutes=14)
    assert (
        get_health_status(store=store, clock=clock, watcher=watcher).checks["server_errors"].status
        == "red"
    )
    clock.advance(minutes=2)
    assert (
        get_health_status(store=store, clock=clock, watcher=watcher).checks["server_errors"].status
        == "green"
    )
    # A band set elsewhere.
    set_cone_state(store=other, band="C", reason="t", metrics=None, actor="t", clock=clock)
    assert get_health_status(store=store, clock=clock, watcher=watcher).cone_band == "C"


def test_an_error_counted_before_the_clock_stepped_back_is_recounted(
    data_dir: Path, clock: FakeClock, watcher: ChainWatcher
) -> None:
    store = open_json(data_dir)
    set_cone_state(store=store, band="A", reason="t", metrics=None, actor="t", clock=clock)
    with store.transaction() as txn:
        txn.append_log(SERVER_ERRORS, {"ts_utc": iso_z(clock()), "error": "RuntimeError"})
    clock.advance(minutes=20)
    assert get_health_status(store=store, clock=clock, watcher=watcher).status == "green"
    clock.advance(minutes=-10)  # the wall clock stepped back: the error is recent again
    assert get_health_status(store=store, clock=clock, watcher=watcher).status == "red"


def test_session_snapshots_see_the_current_health(
    data_dir: Path, clock: FakeClock, watcher: ChainWatcher
) -> None:
    store = open_json(data_dir)
    set_cone_state(store=store, band="A", reason="t", metrics=None, actor="t", clock=clock)
    start_session(store=store, clock=clock, actor="t", notes=None, watcher=watcher)
    ended = end_session(store=store, clock=clock, actor="t", notes=None, watcher=watcher)
    assert ended.end_snapshot is not None
    assert ended.end_snapshot["status"]["status"] == "green"
    _deny(open_json(data_dir), clock, 25)
    started = start_session(store=store, clock=clock, actor="t", notes=None, watcher=watcher)
    assert started.status == "red"
    assert started.snapshot is not None
    assert started.snapshot["status"]["checks"]["deny_rate"]["status"] == "red"
