"""query_events: newest first, filters, limit and cursor pages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.audit.helpers import LEGACY_LINES, record_events, write_lines
from tests.conftest import FakeClock
from valhalla_gov.audit.models import AuditPage
from valhalla_gov.audit.service import MAX_PAGE, query_events
from valhalla_gov.audit.store import AUDIT_LOG
from valhalla_gov.storage.errors import InvalidCursorError
from valhalla_gov.storage.json_backend import JsonStore
from valhalla_gov.storage.protocol import Store

T0 = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)  # FakeClock's start; events are a minute apart


def at(minute: int) -> datetime:
    return T0 + timedelta(minutes=minute)


def numbers(page: AuditPage) -> list[int]:
    return [item.payload["i"] for item in page.items]


def all_pages(
    store: Store,
    limit: int,
    *,
    event: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[AuditPage]:
    pages: list[AuditPage] = []
    cursor: str | None = None
    for _ in range(1000):
        page = query_events(
            store=store, event=event, since=since, until=until, limit=limit, cursor=cursor
        )
        pages.append(page)
        if page.next_cursor is None:
            return pages
        cursor = page.next_cursor
    raise AssertionError("paging never ended")


@pytest.fixture
def twelve(store: Store, clock: FakeClock) -> Store:
    """Events i=0..11 at 09:00..09:11, named e0, e1, e2, e0, ..."""
    record_events(store, clock, 12)
    return store


def test_newest_first(twelve: Store) -> None:
    page = query_events(store=twelve)
    assert numbers(page) == list(range(11, -1, -1))
    assert [item.seq for item in page.items] == list(range(12, 0, -1))
    assert page.next_cursor is None


def test_empty_log(store: Store) -> None:
    assert query_events(store=store) == AuditPage(items=[], next_cursor=None)


@pytest.mark.parametrize("limit", [1, 4, 5, 11, 12, 13])
def test_cursor_pages_cover_everything_exactly_once(twelve: Store, limit: int) -> None:
    pages = all_pages(twelve, limit)
    assert [n for page in pages for n in numbers(page)] == list(range(11, -1, -1))
    assert len(pages) == -(-12 // limit)  # no empty trailing page
    assert all(len(page.items) == limit for page in pages[:-1])
    assert all(page.next_cursor is not None for page in pages[:-1])


def test_a_cursor_keeps_its_place_while_events_arrive(twelve: Store, clock: FakeClock) -> None:
    first = query_events(store=twelve, limit=5)
    record_events(twelve, clock, 3)  # three newer events
    second = query_events(store=twelve, limit=5, cursor=first.next_cursor)
    assert numbers(first) == [11, 10, 9, 8, 7]
    assert numbers(second) == [6, 5, 4, 3, 2]


def test_filter_by_event(twelve: Store) -> None:
    assert numbers(query_events(store=twelve, event="e1")) == [10, 7, 4, 1]
    pages = all_pages(twelve, 2, event="e1")
    assert [numbers(page) for page in pages] == [[10, 7], [4, 1]]
    assert numbers(query_events(store=twelve, event="nope")) == []


def test_since_and_until_are_inclusive(twelve: Store) -> None:
    assert numbers(query_events(store=twelve, since=at(5))) == [11, 10, 9, 8, 7, 6, 5]
    assert numbers(query_events(store=twelve, until=at(8))) == [8, 7, 6, 5, 4, 3, 2, 1, 0]
    assert numbers(query_events(store=twelve, since=at(5), until=at(8))) == [8, 7, 6, 5]
    assert numbers(query_events(store=twelve, since=at(4), until=at(4))) == [4]
    assert numbers(query_events(store=twelve, since=at(12))) == []
    assert numbers(query_events(store=twelve, until=at(-1))) == []
    between = query_events(store=twelve, since=at(5) - timedelta(seconds=30), until=at(5))
    assert numbers(between) == [5]


def test_filters_combine_and_page(twelve: Store) -> None:
    pages = all_pages(twelve, 1, event="e0", since=at(2), until=at(10))
    assert [numbers(page) for page in pages] == [[9], [6], [3]]


def test_a_full_page_that_reaches_since_has_no_next_cursor(twelve: Store) -> None:
    page = query_events(store=twelve, since=at(5), limit=7)
    assert numbers(page) == [11, 10, 9, 8, 7, 6, 5]
    assert page.next_cursor is None


def test_limit_is_capped_at_500(store: Store, clock: FakeClock) -> None:
    assert MAX_PAGE == 500
    with store.transaction() as txn:
        for n in range(MAX_PAGE + 1):
            txn.append_log(
                AUDIT_LOG,
                {"ts_utc": f"2026-01-01T09:00:00.{n:06d}Z", "event": "x", "payload": {"i": n}},
            )
    first = query_events(store=store, limit=10_000)
    assert len(first.items) == 500
    assert first.items[0].payload == {"i": 500}
    assert first.next_cursor is not None
    rest = query_events(store=store, limit=10_000, cursor=first.next_cursor)
    assert numbers(rest) == [0]
    assert rest.next_cursor is None


@pytest.mark.parametrize("limit", [0, -3])
def test_a_limit_below_one_gives_one(twelve: Store, limit: int) -> None:
    page = query_events(store=twelve, limit=limit)
    assert numbers(page) == [11]
    assert page.next_cursor is not None


@pytest.mark.parametrize("cursor", ["abc", "-1", "²"])
def test_a_bad_cursor_is_refused(twelve: Store, cursor: str) -> None:
    with pytest.raises(InvalidCursorError):
        query_events(store=twelve, cursor=cursor)


def test_legacy_lines_are_listed_and_filtered(jstore: JsonStore, clock: FakeClock) -> None:
    write_lines(jstore.log_path(AUDIT_LOG), LEGACY_LINES)
    record_events(jstore, clock, 1)
    page = query_events(store=jstore)
    assert [(item.event, item.seq) for item in page.items] == [
        ("e0", 1),
        ("go_end", None),
        ("go_start", None),
        ("cone_set", None),
    ]
    assert page.items[2].ts_utc == "2025-12-01T10:05:00.123456"  # returned as written
    assert page.items[2].hash is None
    # A naive legacy timestamp counts as UTC.
    naive = datetime(2025, 12, 1, 10, 5, 0, 123456, tzinfo=UTC)
    assert [i.event for i in query_events(store=jstore, since=naive).items] == [
        "e0",
        "go_end",
        "go_start",
    ]
    later = naive + timedelta(microseconds=1)
    assert [i.event for i in query_events(store=jstore, since=later).items] == ["e0", "go_end"]
    assert [i.event for i in query_events(store=jstore, until=naive).items] == [
        "go_start",
        "cone_set",
    ]
