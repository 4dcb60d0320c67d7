"""HealthPublisher: health judged once per change and published, HEALTH_CHANGED
recorded once per change, always; session snapshots agree with their cone."""

from __future__ import annotations

import time
from pathlib import Path

from tests.conftest import FakeClock
from tests.live.server import LiveServer
from valhalla_gov.audit.service import query_events
from valhalla_gov.compose import open_json
from valhalla_gov.cone.service import set_cone_state
from valhalla_gov.cone.store import CONE_STATE
from valhalla_gov.go.session_service import end_session, start_session
from valhalla_gov.health.publisher import MAX_AGE, PERIOD, HealthPublisher
from valhalla_gov.health.store import MARK, THRESHOLDS
from valhalla_gov.storage.protocol import Store


def _band(store: Store, clock: FakeClock, band: str) -> None:
    set_cone_state(store=store, band=band, reason="t", metrics=None, actor="t", clock=clock)  # type: ignore[arg-type]


def _changes(store: Store) -> list[tuple[str, str]]:
    page = query_events(store=store, event="HEALTH_CHANGED")
    return [(e.payload["from"], e.payload["to"]) for e in reversed(page.items)]


def test_the_light_is_published_not_judged_per_request(
    store: Store, clock: FakeClock, publisher: HealthPublisher
) -> None:
    first = publisher.current()  # nothing published yet: judged once
    _band(store, clock, "D")
    assert publisher.current() is first  # fresh: answered as published
    judged = publisher.judge()  # what the server's task does within moments
    assert (judged.status, judged.cone_band) == ("red", "D")
    assert publisher.current() is judged
    publisher.forget()  # a server error was recorded here: judged before the next answer
    assert publisher.current() is not judged


def test_a_stale_light_is_judged_before_it_is_answered(
    store: Store, clock: FakeClock, publisher: HealthPublisher
) -> None:
    _band(store, clock, "A")
    assert publisher.current().status == "green"
    with store.transaction() as txn:  # by hand, not audited
        txn.write_document(THRESHOLDS, {"errors_red": 1, "deny_window": 0})
    assert publisher.current().status == "green"  # still fresh
    clock.advance(seconds=MAX_AGE + 1)
    light = publisher.current()
    assert light.status == "red"
    assert "thresholds.json" in light.checks["thresholds"].detail
    clock.advance(seconds=-60)  # a clock stepped back: judged again too
    assert publisher.current() is not light


def test_the_task_judges_when_the_audit_log_moves_and_every_period(
    store: Store, clock: FakeClock, publisher: HealthPublisher
) -> None:
    judged = publisher._tick(-PERIOD)  # the first look judges
    light = publisher.current()
    assert publisher._tick(judged) == judged  # nothing moved, PERIOD not over: no judgement
    assert publisher.current() is light
    _band(store, clock, "D")
    assert publisher._tick(judged) > judged  # the audit log moved: judged at once
    assert publisher.current().status == "red"
    assert _changes(store) == [("yellow", "red")]


def test_a_new_data_dir_gets_no_write_until_the_light_changes(
    tmp_path: Path, clock: FakeClock
) -> None:
    store = open_json(tmp_path / "data")
    publisher = HealthPublisher(store=store, clock=clock)
    assert publisher.record_change(publisher.judge()) is False
    assert sorted(p.name for p in store.data_dir.iterdir() if not p.name.startswith(".")) == []
    _band(store, clock, "D")
    assert publisher.record_change(publisher.judge()) is True
    assert publisher.record_change(publisher.judge()) is False  # recorded once
    assert _changes(store) == [("yellow", "red")]
    assert store.read_document(MARK) == {"status": "red", "at_utc": "2026-01-01T09:00:00.000000Z"}


def test_workers_seeing_one_change_record_it_once(
    store: Store, clock: FakeClock, publisher: HealthPublisher
) -> None:
    other = HealthPublisher(store=store, clock=clock)  # another worker or replica
    for light in (publisher, other):
        light.record_change(light.judge())
    _band(store, clock, "A")
    assert [light.record_change(light.judge()) for light in (publisher, other)] == [True, False]
    _band(store, clock, "C")
    assert [light.record_change(light.judge()) for light in (other, publisher)] == [True, False]
    assert _changes(store) == [("yellow", "green"), ("green", "red")]


def test_a_change_while_no_process_watched_is_recorded_at_the_next_start(
    store: Store, clock: FakeClock, publisher: HealthPublisher
) -> None:
    _band(store, clock, "A")
    publisher.record_change(publisher.judge())
    _band(store, clock, "D")
    publisher.record_change(publisher.judge())  # mark: red
    # The server stops; the band is moved back with no server running.
    _band(store, clock, "A")
    restarted = HealthPublisher(store=store, clock=clock)
    assert restarted.record_change(restarted.judge()) is True
    assert _changes(store)[-1] == ("red", "green")


def test_a_snapshot_agrees_with_the_cone_its_transaction_read(
    store: Store, clock: FakeClock, publisher: HealthPublisher
) -> None:
    _band(store, clock, "A")
    green = publisher.current()
    assert green.status == "green"
    # The band moves after the light was published (here by hand, so nothing
    # tells the publisher): the snapshot still agrees with the cone it holds.
    with store.transaction() as txn:
        txn.write_document(CONE_STATE, {"band": "D", "reason": "outage"})
    session = start_session(store=store, clock=clock, actor="t", notes=None, health=green)
    assert session.snapshot is not None
    assert session.snapshot["cone"]["band"] == "D"
    assert session.snapshot["status"]["status"] == "red"
    assert session.snapshot["status"]["cone_band"] == "D"
    assert (session.cone_band, session.status) == ("D", "red")
    ended = end_session(store=store, clock=clock, actor="t", notes=None, health=green)
    assert ended.end_snapshot is not None
    assert ended.end_snapshot["status"]["status"] == "red"


def test_a_live_server_records_health_changes_with_no_webhook(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    store = open_json(data_dir)
    clock = FakeClock()
    with LiveServer(data_dir):
        time.sleep(1.5)  # the server's first light: the boot band, yellow
        _band(store, clock, "D")  # written beside the server, as `valhalla cone set` does
        deadline = time.monotonic() + 10
        while not _changes(store) and time.monotonic() < deadline:
            time.sleep(0.1)
    assert _changes(store) == [("yellow", "red")]
