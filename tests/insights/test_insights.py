"""GET /core/go/insights and its service, on every backend."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from tests.conftest import FakeClock
from valhalla_gov.cone.service import set_cone_state
from valhalla_gov.errors import InvalidInputError
from valhalla_gov.go.playbook import load_playbook
from valhalla_gov.go.service import complete_step
from valhalla_gov.go.session_service import end_session, start_session
from valhalla_gov.go.session_store import HISTORY
from valhalla_gov.health.publisher import HealthPublisher
from valhalla_gov.insights.service import MAX_BUCKETS, bucket_start, get_insights
from valhalla_gov.storage.protocol import Store

MONDAY = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday


def _session(
    store: Store,
    clock: FakeClock,
    publisher: HealthPublisher,
    *,
    at: datetime,
    minutes: float,
    steps: int = 0,
) -> None:
    clock.now = at
    start_session(store=store, clock=clock, actor="t", notes=None, health=publisher.current())
    playbook = load_playbook(None)
    for step in playbook.steps[:steps]:
        complete_step(
            store=store,
            playbook=playbook,
            step_id=step.id,
            done=True,
            notes=None,
            actor="t",
            clock=clock,
            health=publisher.current(),
        )
    clock.advance(minutes=minutes)
    end_session(store=store, clock=clock, actor="t", notes=None, health=publisher.current())
    # Progress is per playbook run: the next session ticks its steps anew.
    for step in playbook.steps[:steps]:
        complete_step(
            store=store,
            playbook=playbook,
            step_id=step.id,
            done=False,
            notes=None,
            actor="t",
            clock=clock,
            health=publisher.current(),
        )


def test_weekly_buckets_count_sum_median_steps_bands_statuses(
    store: Store, clock: FakeClock, publisher: HealthPublisher
) -> None:
    # Week 1: three sessions of 10, 20 and 60 minutes, band B then C.
    _session(store, clock, publisher, at=MONDAY, minutes=10, steps=1)
    _session(store, clock, publisher, at=MONDAY.replace(day=3), minutes=20, steps=2)
    clock.now = MONDAY.replace(day=4)
    set_cone_state(store=store, band="C", reason="r", metrics=None, actor="t", clock=clock)
    _session(store, clock, publisher, at=MONDAY.replace(day=8, hour=23), minutes=60)
    # Week 2 is empty; week 3 has one session of 5 minutes.
    _session(store, clock, publisher, at=MONDAY.replace(day=17), minutes=5)

    report = get_insights(
        store=store,
        since=MONDAY.replace(hour=0),
        until=MONDAY.replace(day=22),
        bucket="week",
        now=clock(),
    )
    assert [i.start for i in report.items] == [
        "2026-03-02T00:00:00.000000Z",
        "2026-03-09T00:00:00.000000Z",
        "2026-03-16T00:00:00.000000Z",
    ]
    first, empty, third = report.items
    assert first.sessions == 3
    assert first.total_seconds == pytest.approx(90 * 60)
    assert first.median_seconds == pytest.approx(20 * 60)
    assert first.steps_completed == 3
    assert first.bands == {"A": 0, "B": 2, "C": 1, "D": 0}
    # Band B is yellow; band C turns the light red.
    assert first.statuses == {"green": 0, "yellow": 2, "red": 1}
    assert empty.sessions == 0
    assert empty.median_seconds is None
    assert empty.total_seconds == 0
    assert third.sessions == 1
    assert third.median_seconds == pytest.approx(300)

    daily = get_insights(
        store=store,
        since=MONDAY.replace(day=3),
        until=MONDAY.replace(day=3, hour=23),
        bucket="day",
        now=clock(),
    )
    assert [(i.start, i.sessions) for i in daily.items] == [("2026-03-03T00:00:00.000000Z", 1)]

    monthly = get_insights(
        store=store, since=MONDAY.replace(day=1), until=None, bucket="month", now=clock()
    )
    assert [(i.start, i.sessions) for i in monthly.items] == [("2026-03-01T00:00:00.000000Z", 4)]


def test_since_and_until_filter_on_the_start_time(
    store: Store, clock: FakeClock, publisher: HealthPublisher
) -> None:
    for day in (2, 3, 4):
        _session(store, clock, publisher, at=MONDAY.replace(day=day), minutes=1)
    report = get_insights(
        store=store,
        since=MONDAY.replace(day=3, hour=0),
        until=MONDAY.replace(day=3, hour=23),
        bucket="week",
        now=clock(),
    )
    assert [i.sessions for i in report.items] == [1]


def test_the_default_range_is_the_last_twelve_buckets(store: Store, clock: FakeClock) -> None:
    now = datetime(2026, 12, 15, 12, tzinfo=UTC)
    report = get_insights(store=store, since=None, until=None, bucket="month", now=now)
    assert len(report.items) == 12
    assert report.items[0].start == "2026-01-01T00:00:00.000000Z"
    assert report.items[-1].start == "2026-12-01T00:00:00.000000Z"
    assert all(i.sessions == 0 for i in report.items)


def test_bad_ranges_are_refused_before_any_work(store: Store, clock: FakeClock) -> None:
    with pytest.raises(InvalidInputError, match="since is later"):
        get_insights(
            store=store, since=MONDAY, until=MONDAY.replace(day=1), bucket="day", now=MONDAY
        )
    with pytest.raises(InvalidInputError, match=f"more than {MAX_BUCKETS} days"):
        get_insights(
            store=store,
            since=datetime(2000, 1, 1, tzinfo=UTC),
            until=None,
            bucket="day",
            now=MONDAY,
        )


def test_legacy_sessions_without_duration_or_band_fields_are_counted(
    store: Store, clock: FakeClock
) -> None:
    with store.transaction() as txn:
        # The earlier implementation's shape: the seven seed fields only.
        txn.append_log(
            HISTORY,
            {
                "active": False,
                "started_at_utc": "2026-03-02T10:00:00Z",
                "ended_at_utc": "2026-03-02T10:30:00Z",
                "cone_band": None,
                "status": None,
                "notes": "old",
                "snapshot": {"cone": {"band": "D"}, "status": {"status": "red"}},
            },
        )
    report = get_insights(
        store=store,
        since=MONDAY.replace(hour=0),
        until=MONDAY.replace(day=8),
        bucket="week",
        now=MONDAY,
    )
    (item,) = report.items
    assert item.sessions == 1
    assert item.total_seconds == 1800
    assert item.bands["D"] == 1
    assert item.statuses["red"] == 1


def test_week_buckets_start_on_monday_and_months_roll_over_the_year() -> None:
    sunday = datetime(2026, 3, 8, 23, 59, tzinfo=UTC)
    assert bucket_start(sunday, "week") == datetime(2026, 3, 2, tzinfo=UTC)
    from valhalla_gov.insights.service import next_start

    assert next_start(datetime(2026, 12, 1, tzinfo=UTC), "month") == datetime(
        2027, 1, 1, tzinfo=UTC
    )
    assert next_start(datetime(2026, 1, 1, tzinfo=UTC), "month") == datetime(2026, 2, 1, tzinfo=UTC)


def test_insights_route(client: TestClient) -> None:
    client.post("/core/go/start_session", json={"notes": "a"})
    client.post("/core/go/complete", json={"step_id": "preflight_view_dashboard"})
    client.post("/core/go/end_session", json={"notes": "b"})
    body = client.get("/core/go/insights", params={"bucket": "day"}).json()
    assert set(body) == {"bucket", "since", "until", "items"}
    assert len(body["items"]) == 12
    today = body["items"][-1]
    assert set(today) == {
        "start",
        "sessions",
        "total_seconds",
        "median_seconds",
        "steps_completed",
        "bands",
        "statuses",
    }
    assert today["sessions"] == 1
    assert today["steps_completed"] == 1
    assert today["bands"]["B"] == 1
    assert today["statuses"]["yellow"] == 1
    for params in (
        {"bucket": "year"},
        {"since": "yesterday"},
        {"since": "2026-03-05T00:00:00.000000Z", "until": "2026-03-01T00:00:00.000000Z"},
        {"since": "1900-01-01T00:00:00.000000Z", "bucket": "day"},
        # Buckets that would reach past year 1 or year 9999 (found by the fuzz).
        {"until": "0001-01-01T00:00:00Z"},
        {"since": "9999-12-01T00:00:00Z", "until": "9999-12-31T00:00:00Z", "bucket": "month"},
    ):
        resp = client.get("/core/go/insights", params=params)
        assert resp.status_code == 422, params


def test_times_with_an_offset_or_no_zone_are_taken_as_utc(client: TestClient) -> None:
    def window(**params: str) -> tuple[str, str]:
        resp = client.get("/core/go/insights", params={"bucket": "day", **params})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        return body["since"], body["until"]

    utc = window(since="2026-03-05T00:00:00Z", until="2026-03-06T12:00:00Z")
    # The same instants, written with an offset: converted, not compared raw.
    assert window(since="2026-03-05T02:00:00+02:00", until="2026-03-06T07:00:00-05:00") == utc
    # No zone at all: read as UTC.
    assert window(since="2026-03-05T00:00:00", until="2026-03-06T12:00:00") == utc
    assert utc[0].startswith("2026-03-05T00:00:00")
