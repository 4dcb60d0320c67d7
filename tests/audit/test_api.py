"""GET /core/audit/events and /core/audit/verify over HTTP."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.audit.helpers import LEGACY_LINES, edit_line, record_event, record_events, write_lines
from tests.conftest import FakeClock, _truncate, owner_headers
from valhalla_gov.app import create_app
from valhalla_gov.audit.store import AUDIT_LOG
from valhalla_gov.compose import open_json, open_sql
from valhalla_gov.settings import Settings
from valhalla_gov.storage.json_backend import JsonStore

EVENTS = "/core/audit/events"
VERIFY = "/core/audit/verify"


@pytest.fixture
def side_store(data_dir: Path) -> JsonStore:
    """A second store on the app's data dir, as the CLI beside a server would be."""
    return open_json(data_dir)


def numbers(body: dict[str, object]) -> list[int]:
    items = body["items"]
    assert isinstance(items, list)
    return [item["payload"]["i"] for item in items]


def test_events_shape_and_order(
    client: TestClient, side_store: JsonStore, clock: FakeClock
) -> None:
    empty = client.get(EVENTS)
    assert empty.status_code == 200
    assert empty.json() == {"items": [], "next_cursor": None}

    record_events(side_store, clock, 3)
    response = client.get(EVENTS)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"items", "next_cursor"}
    assert body["next_cursor"] is None
    assert numbers(body) == [2, 1, 0]
    newest = body["items"][0]
    assert {"ts_utc", "event", "payload", "seq", "actor", "prev", "hash"} <= set(newest)
    assert (newest["seq"], newest["actor"], newest["event"]) == (3, "op", "e2")
    assert newest["ts_utc"] == "2026-01-01T09:02:00.000000Z"


def test_events_cursor_pages(client: TestClient, side_store: JsonStore, clock: FakeClock) -> None:
    record_events(side_store, clock, 7)
    seen: list[int] = []
    cursor: str | None = None
    for _ in range(10):
        params: dict[str, str | int] = {"limit": 3}
        if cursor is not None:
            params["cursor"] = cursor
        body = client.get(EVENTS, params=params).json()
        seen.extend(numbers(body))
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == [6, 5, 4, 3, 2, 1, 0]


def test_events_filters(client: TestClient, side_store: JsonStore, clock: FakeClock) -> None:
    record_events(side_store, clock, 9)  # 09:00..09:08, e0 e1 e2 e0 ...
    assert numbers(client.get(EVENTS, params={"event": "e2"}).json()) == [8, 5, 2]
    window = {"since": "2026-01-01T09:02:00Z", "until": "2026-01-01T09:05:00Z"}
    assert numbers(client.get(EVENTS, params=window).json()) == [5, 4, 3, 2]
    # Another zone, same instants.
    shifted = {"since": "2026-01-01T11:02:00+02:00", "until": "2026-01-01T11:05:00+02:00"}
    assert numbers(client.get(EVENTS, params=shifted).json()) == [5, 4, 3, 2]
    both = client.get(EVENTS, params={**window, "event": "e0"}).json()
    assert numbers(both) == [3]


@pytest.mark.parametrize("limit", [1, 500])
def test_events_limit_bounds_accepted(client: TestClient, limit: int) -> None:
    assert client.get(EVENTS, params={"limit": limit}).status_code == 200


@pytest.mark.parametrize("limit", [501, 0, -1, "many"])
def test_events_limit_out_of_range_is_422(client: TestClient, limit: int | str) -> None:
    assert client.get(EVENTS, params={"limit": limit}).status_code == 422


@pytest.mark.parametrize("cursor", ["abc", "-5", "²", "1", "999999"])
def test_events_bad_cursor_is_422(
    client: TestClient, side_store: JsonStore, clock: FakeClock, cursor: str
) -> None:
    record_events(side_store, clock, 2)
    raw = side_store.log_path(AUDIT_LOG).read_bytes()
    response = client.get(EVENTS, params={"cursor": cursor})
    assert response.status_code == 422
    assert "cursor" in response.json()["detail"][0]["msg"]
    assert side_store.log_path(AUDIT_LOG).read_bytes() == raw


def test_events_bad_since_is_422(client: TestClient) -> None:
    assert client.get(EVENTS, params={"since": "yesterday"}).status_code == 422


def test_verify_shape_on_a_clean_log(
    client: TestClient, side_store: JsonStore, clock: FakeClock
) -> None:
    write_lines(side_store.log_path(AUDIT_LOG), LEGACY_LINES)
    record_events(side_store, clock, 4)
    response = client.get(VERIFY)
    assert response.status_code == 200
    body = response.json()
    assert {"ok", "events", "legacy_events", "first_bad_seq"} <= set(body)
    assert (body["ok"], body["events"], body["legacy_events"], body["first_bad_seq"]) == (
        True,
        4,
        3,
        None,
    )


def test_verify_reports_an_edited_line(
    client: TestClient, side_store: JsonStore, clock: FakeClock
) -> None:
    record_events(side_store, clock, 4)
    edit_line(side_store.log_path(AUDIT_LOG), 1, lambda b: b.replace(b'"i":1', b'"i":5'))
    body = client.get(VERIFY).json()
    assert (body["ok"], body["events"], body["first_bad_seq"]) == (False, 1, 2)


def test_a_corrupt_audit_line_is_503_naming_the_file(
    client: TestClient, side_store: JsonStore, clock: FakeClock
) -> None:
    record_events(side_store, clock, 3)
    path = side_store.log_path(AUDIT_LOG)
    edit_line(path, 1, lambda _: b'{"ts_utc": "2026-01-01T09:01:00.000000Z", "event": ')
    raw = path.read_bytes()

    response = client.get(EVENTS)
    assert response.status_code == 503
    assert "audit.log" in response.text
    assert response.json()["file"] == str(path)
    assert path.read_bytes() == raw

    verify = client.get(VERIFY)
    assert verify.status_code == 200
    assert (verify.json()["ok"], verify.json()["first_bad_seq"]) == (False, 2)
    assert "audit.log" in verify.json()["detail"]
    assert path.read_bytes() == raw
    assert sorted(p.name for p in path.parent.iterdir() if p.name.startswith("audit")) == [
        "audit.log"
    ]


@pytest.mark.parametrize(
    "value", ["\x00", "GO_SESSION\x00START", "\x1b[2J", "two\nlines", "tab\there", "x" * 201]
)
def test_an_event_filter_that_is_not_printable_text_is_422(client: TestClient, value: str) -> None:
    response = client.get(EVENTS, params={"event": value})
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["query", "event"]


@pytest.mark.parametrize("value", ["\x00", "12\x00", "\x7f"])
def test_a_cursor_that_is_not_printable_text_is_422(client: TestClient, value: str) -> None:
    response = client.get(EVENTS, params={"cursor": value})
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["query", "cursor"]


def test_an_event_name_in_any_script_is_a_filter(
    client: TestClient, side_store: JsonStore, clock: FakeClock
) -> None:
    record_event(store=side_store, event="été ✓", payload={"i": 1}, actor="op", clock=clock)
    record_events(side_store, clock, 2)
    assert numbers(client.get(EVENTS, params={"event": "été ✓"}).json()) == [1]


def test_a_nul_in_the_event_filter_is_422_on_postgresql(
    pg_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    """PostgreSQL refuses a NUL in a text parameter: it answered 503, with the
    SQL statement and the database URL in the body."""
    _truncate(pg_url)
    headers = owner_headers(tmp_path / "data", open_sql(pg_url))
    app = create_app(Settings(database_url=pg_url, data_dir=tmp_path / "data"), clock=clock)
    with TestClient(
        app, raise_server_exceptions=False, client=("127.0.0.1", 50000), headers=headers
    ) as pg:
        response = pg.get(EVENTS, params={"event": "GO\x00START"})
        assert response.status_code == 422, response.text
        assert "postgresql" not in response.text.lower()
        assert pg.get(EVENTS, params={"event": "GO_START"}).status_code == 200
