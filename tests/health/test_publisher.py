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
from valhalla_gov.health.publisher import MAX_AGE, HealthPublisher
from valhalla_gov.health.store import MARK, THRESHOLDS
from valhalla_gov.storage.protocol import Store


def _band(store: Store, clock: FakeClock, band: str) -> None:
    set_cone_state(store=store, band=band, reason="t", metrics=None, actor="t", clock=clock)  # type: ignore[arg-type]


def _changes(store: Store) -> list[tuple[str, str]]:
    page = query_events(store=store, event="HEALTH_CHANGED")
    return [(e.payload["from"], e.payload["to"]) for e in reversed(page.items)]


def test_the_light_is_judged_once_until_something_changes(
    store: Store, clock: FakeClock, publisher: HealthPublisher
) -> None:
    first = publisher.current()
    assert publisher.current() is first  # nothing changed: the same light
    _band(store, clock, "D")  # an audited change: judged again at once
    after = publisher.current()
    assert after is not first
    assert (after.status, after.cone_band) == ("red", "D")
    assert publisher.current() is after
    publisher.forget()  # a signal that is not audited changed here
    assert publisher.current() is not after


def test_an_unaudited_change_shows_once_the_light_ages(
    store: Store, clock: FakeClock, publisher: HealthPublisher
) -> None:
    _band(store, clock, "A")
    assert publisher.current().status == "green"
    with store.transaction() as txn:  # by hand, not audited
        txn.write_document(THRESHOLDS, {"errors_red": 1, "deny_window": 0})
    assert publisher.current().status == "green"  # not seen yet: no audited change
    clock.advance(seconds=MAX_AGE.total_seconds() + 1)
    light = publisher.current()
    assert light.status == "red"
    assert "thresholds.json" in light.checks["thresholds"].detail
    clock.advance(seconds=-60)  # a clock stepped back: judged again too
    assert publisher.current() is not light


def test_a_new_data_dir_gets_no_write_until_the_light_changes(
    tmp_path: Path, clock: FakeClock
) -> None:
    store = open_json(tmp_path / "data")
    publisher = HealthPublisher(store=store, clock=clock)
    assert publisher.record_change(publisher.current()) is False
    assert sorted(p.name for p in store.data_dir.iterdir() if not p.name.startswith(".")) == []
    _band(store, clock, "D")
    assert publisher.record_change(publisher.current()) is True
    assert publisher.record_change(publisher.current()) is False  # recorded once
    assert _changes(store) == [("yellow", "red")]
    assert store.read_document(MARK) == {"status": "red", "at_utc": "2026-01-01T09:00:00.000000Z"}


def test_workers_seeing_one_change_record_it_once(
    store: Store, clock: FakeClock, publisher: HealthPublisher
) -> None:
    other = HealthPublisher(store=store, clock=clock)  # another worker or replica
    for light in (publisher, other):
        light.record_change(light.current())
    _band(store, clock, "A")
    assert [light.record_change(light.current()) for light in (publisher, other)] == [True, False]
    _band(store, clock, "C")
    assert [light.record_change(light.current()) for light in (other, publisher)] == [True, False]
    assert _changes(store) == [("yellow", "green"), ("green", "red")]


def test_a_change_while_no_process_watched_is_recorded_at_the_next_start(
    store: Store, clock: FakeClock, publisher: HealthPublisher
) -> None:
    _band(store, clock, "A")
    publisher.record_change(publisher.current())
    _band(store, clock, "D")
    publisher.record_change(publisher.current())  # mark: red
    # The server stops; the band is moved back with no server running.
    _band(store, clock, "A")
    restarted = HealthPublisher(store=store, clock=clock)
    assert restarted.record_change(restarted.current()) is True
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
