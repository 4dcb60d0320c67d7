"""PACK I session rules, run against every storage backend."""

from __future__ import annotations

import pytest

from tests.conftest import FakeClock, health_now
from tests.go.racing import band_moves_just_before
from valhalla_gov.audit.service import query_events, verify_chain
from valhalla_gov.cone.service import set_cone_state
from valhalla_gov.errors import ConflictError, NotFoundError
from valhalla_gov.go import session_store
from valhalla_gov.go.playbook import load_playbook
from valhalla_gov.go.service import complete_step
from valhalla_gov.go.session_models import GoSession
from valhalla_gov.go.session_reads import get_session
from valhalla_gov.go.session_service import (
    end_session,
    get_session_by_id,
    list_sessions,
    start_session,
)
from valhalla_gov.health.publisher import HealthPublisher
from valhalla_gov.storage.json_backend import JsonStore
from valhalla_gov.storage.protocol import Store
from valhalla_gov.timeutil import parse_iso

SEED_FIELDS = (
    "active",
    "started_at_utc",
    "ended_at_utc",
    "cone_band",
    "status",
    "notes",
    "snapshot",
)


def _start(
    store: Store, clock: FakeClock, publisher: HealthPublisher, notes: str | None = "go"
) -> GoSession:
    return start_session(
        store=store, clock=clock, actor="alice", notes=notes, health=publisher.current()
    )


def _end(
    store: Store, clock: FakeClock, publisher: HealthPublisher, notes: str | None = "done"
) -> GoSession:
    return end_session(
        store=store, clock=clock, actor="bob", notes=notes, health=publisher.current()
    )


def test_inactive_default_when_no_session_ever(store: Store) -> None:
    session = get_session(store=store)
    dumped = session.model_dump()
    assert dumped["active"] is False
    for field in SEED_FIELDS[1:]:
        assert dumped[field] is None
    assert session.id is None


def test_start_captures_snapshot_of_cone_and_health(
    store: Store, clock: FakeClock, publisher: HealthPublisher
) -> None:
    set_cone_state(store=store, band="A", reason="kpis green", metrics=None, actor="o", clock=clock)
    session = _start(store, clock, publisher, "weekly review")
    assert session.active is True
    assert session.started_at_utc == "2026-01-01T09:00:00.000000Z"
    assert session.cone_band == "A"
    assert session.status == "green"
    assert session.notes == session.start_notes == "weekly review"
    assert session.started_by == "alice"
    assert session.snapshot is not None
    assert session.snapshot["cone"]["band"] == "A"
    assert session.snapshot["cone"]["reason"] == "kpis green"
    assert session.snapshot["status"]["status"] == "green"
    assert session.id is not None
    assert len(session.id) == 26
    assert get_session(store=store) == session
    starts = query_events(store=store, event="GO_SESSION_START").items
    assert [e.payload["session_id"] for e in starts] == [session.id]
    assert starts[0].actor == "alice"


def test_the_snapshot_reads_the_cone_inside_the_start_transaction(
    store: Store, clock: FakeClock, publisher: HealthPublisher
) -> None:
    set_cone_state(store=store, band="A", reason="kpis green", metrics=None, actor="o", clock=clock)
    health = publisher.current()  # judged at band A: green
    assert health.status == "green"
    racing = band_moves_just_before(store, clock, "D")
    session = start_session(store=racing, clock=clock, actor="alice", notes=None, health=health)
    assert session.snapshot is not None
    assert session.snapshot["cone"]["band"] == "D"
    assert session.snapshot["status"]["status"] == "red"  # a band-D snapshot is never green
    assert (session.cone_band, session.status) == ("D", "red")


def test_second_start_is_refused_and_leaves_the_active_session_untouched(
    store: Store, clock: FakeClock, publisher: HealthPublisher
) -> None:
    first = _start(store, clock, publisher, "first")
    clock.advance(seconds=30)
    with pytest.raises(ConflictError) as refused:
        _start(store, clock, publisher, "second")
    assert refused.value.body["session"]["id"] == first.id
    assert get_session(store=store) == first
    assert len(query_events(store=store, event="GO_SESSION_START").items) == 1


def test_end_keeps_start_snapshot_and_records_the_end(
    store: Store, clock: FakeClock, publisher: HealthPublisher
) -> None:
    started = _start(store, clock, publisher, "morning")
    set_cone_state(store=store, band="C", reason="cash tight", metrics=None, actor="o", clock=clock)
    clock.advance(minutes=90)
    ended = _end(store, clock, publisher, "wrapped up")
    assert ended.active is False
    assert ended.id == started.id
    assert ended.started_at_utc == started.started_at_utc
    assert ended.ended_at_utc == "2026-01-01T10:30:00.000000Z"
    assert ended.duration_seconds == 5400.0
    assert ended.snapshot == started.snapshot
    assert ended.cone_band == "B"
    assert ended.end_snapshot is not None
    assert ended.end_snapshot["cone"]["band"] == "C"
    assert ended.end_snapshot["status"]["status"] == "red"
    assert (ended.start_notes, ended.end_notes, ended.notes) == (
        "morning",
        "wrapped up",
        "wrapped up",
    )
    assert (ended.started_by, ended.ended_by) == ("alice", "bob")
    assert get_session(store=store) == ended
    history = list_sessions(store=store).items
    assert history == [ended]
    ends = query_events(store=store, event="GO_SESSION_END").items
    assert [e.payload["session_id"] for e in ends] == [started.id]


def test_end_without_notes_keeps_the_start_notes(
    store: Store, clock: FakeClock, publisher: HealthPublisher
) -> None:
    _start(store, clock, publisher, "plan the week")
    ended = _end(store, clock, publisher, "   ")
    assert ended.notes == "plan the week"
    assert ended.end_notes is None


def test_end_with_no_session_ever_returns_inactive_default_and_writes_nothing(
    store: Store, clock: FakeClock, publisher: HealthPublisher
) -> None:
    result = _end(store, clock, publisher)
    assert result == GoSession(active=False)
    assert session_store.load_session(store=store) is None
    assert query_events(store=store).items == []


def test_end_twice_returns_the_same_session_unchanged(
    store: Store, clock: FakeClock, publisher: HealthPublisher
) -> None:
    _start(store, clock, publisher)
    clock.advance(seconds=10)
    first_end = _end(store, clock, publisher, "first end")
    clock.advance(seconds=10)
    second_end = _end(store, clock, publisher, "second end")
    assert second_end == first_end
    assert second_end.ended_at_utc == "2026-01-01T09:00:10.000000Z"
    assert len(list_sessions(store=store).items) == 1
    assert len(query_events(store=store, event="GO_SESSION_END").items) == 1


def test_sessions_never_overlap_even_when_the_clock_steps_back(
    store: Store, clock: FakeClock, publisher: HealthPublisher
) -> None:
    _start(store, clock, publisher)
    clock.advance(hours=1)
    ended = _end(store, clock, publisher)
    clock.advance(minutes=-30)
    restarted = _start(store, clock, publisher)
    assert restarted.started_at_utc is not None
    assert ended.ended_at_utc is not None
    assert parse_iso(restarted.started_at_utc) >= parse_iso(ended.ended_at_utc)
    assert restarted.id is not None
    assert ended.id is not None
    assert restarted.id > ended.id


def _run_sessions(
    store: Store, clock: FakeClock, publisher: HealthPublisher, count: int
) -> list[str]:
    ids = []
    for n in range(count):
        started = _start(store, clock, publisher, f"session {n}")
        clock.advance(minutes=5)
        _end(store, clock, publisher)
        clock.advance(hours=1)
        assert started.id is not None
        ids.append(started.id)
    return ids


def test_history_pages_newest_first_with_cursors(
    store: Store, clock: FakeClock, publisher: HealthPublisher
) -> None:
    ids = _run_sessions(store, clock, publisher, 7)
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = list_sessions(store=store, limit=3, cursor=cursor)
        seen.extend(s.id or "" for s in page.items)
        pages += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == list(reversed(ids))
    assert pages == 3


def test_history_filters_on_start_time(
    store: Store, clock: FakeClock, publisher: HealthPublisher
) -> None:
    ids = _run_sessions(store, clock, publisher, 5)
    # Session n starts at 09:00 + n * 65 minutes: 09:00, 10:05, 11:10, 12:15, 13:20.
    since = parse_iso("2026-01-01T10:00:00Z")
    until = parse_iso("2026-01-01T12:30:00Z")
    page = list_sessions(store=store, since=since, until=until)
    assert [s.id for s in page.items] == [ids[3], ids[2], ids[1]]
    assert [s.id for s in list_sessions(store=store, since=since).items] == ids[:0:-1]


def test_get_session_by_id_finds_current_and_history(
    store: Store, clock: FakeClock, publisher: HealthPublisher
) -> None:
    ids = _run_sessions(store, clock, publisher, 3)
    current = _start(store, clock, publisher)
    assert current.id is not None
    assert get_session_by_id(store=store, session_id=current.id) == current
    for session_id in ids:
        assert get_session_by_id(store=store, session_id=session_id).id == session_id
    with pytest.raises(NotFoundError):
        get_session_by_id(store=store, session_id="01ZZZZZZZZZZZZZZZZZZZZZZZZ")
    with pytest.raises(NotFoundError):
        get_session_by_id(store=store, session_id="00000000000000000000000000")


def test_steps_completed_during_the_session_are_recorded(
    store: Store, clock: FakeClock, publisher: HealthPublisher
) -> None:
    playbook = load_playbook(None)
    complete_step(
        store=store,
        health=health_now(store),
        playbook=playbook,
        step_id="intake_ready",
        done=True,
        notes=None,
        actor="a",
        clock=clock,
    )
    _start(store, clock, publisher)
    for step in ("preflight_view_dashboard", "confirm_boring_sop", "preflight_view_dashboard"):
        complete_step(
            store=store,
            health=health_now(store),
            playbook=playbook,
            step_id=step,
            done=True,
            notes=None,
            actor="a",
            clock=clock,
        )
    ended = _end(store, clock, publisher)
    assert ended.steps_completed == ["preflight_view_dashboard", "confirm_boring_sop"]
    step_events = query_events(store=store, event="GO_STEP_SET").items
    assert [e.payload["session_id"] for e in reversed(step_events)] == [None] + [ended.id] * 3


def _crash_after_history_append(store: Store, started: GoSession) -> None:
    """What an end that died between its two writes leaves behind: the ended
    record in the history, go_session.json still saying active (JSON only;
    on SQL both are one row, written in one transaction)."""
    with store.transaction() as txn:
        session_store.append_history(
            txn,
            {
                **started.model_dump(),
                "active": False,
                "ended_at_utc": "2026-01-01T09:00:05.000000Z",
                "notes": "ended before the crash",
            },
        )


def _recovered_ends(store: Store) -> list[str]:
    events = query_events(store=store, event="GO_SESSION_END").items
    return [e.payload["session_id"] for e in events if e.payload.get("recovered")]


def test_an_end_interrupted_after_the_history_append_is_finished_by_the_next_end(
    store: Store, clock: FakeClock, publisher: HealthPublisher
) -> None:
    started = _start(store, clock, publisher)
    _crash_after_history_append(store, started)
    clock.advance(minutes=5)
    ended = _end(store, clock, publisher, "the retry")
    # The end that reached the history happened; the retry gets it unchanged.
    assert ended.active is False
    assert ended.ended_at_utc == "2026-01-01T09:00:05.000000Z"
    assert ended.notes == "ended before the crash"
    assert get_session(store=store).active is False
    assert [s.id for s in list_sessions(store=store).items] == [started.id]
    assert _recovered_ends(store) == ([started.id] if isinstance(store, JsonStore) else [])
    assert verify_chain(store=store).ok


def test_an_end_interrupted_after_the_history_append_does_not_block_a_start(
    store: Store, clock: FakeClock, publisher: HealthPublisher
) -> None:
    started = _start(store, clock, publisher)
    _crash_after_history_append(store, started)
    clock.advance(minutes=5)
    restarted = _start(store, clock, publisher, "next")
    assert restarted.id != started.id
    assert [s.id for s in list_sessions(store=store).items] == [started.id]
    assert _recovered_ends(store) == ([started.id] if isinstance(store, JsonStore) else [])
    # A step completed now belongs to the new session, not the ended one.
    complete_step(
        store=store,
        health=health_now(store),
        playbook=load_playbook(None),
        step_id="preflight_view_dashboard",
        done=True,
        notes=None,
        actor="a",
        clock=clock,
    )
    assert get_session(store=store).steps_completed == ["preflight_view_dashboard"]


def test_an_ended_session_missing_from_history_is_archived_before_a_new_start(
    store: Store, clock: FakeClock, publisher: HealthPublisher
) -> None:
    legacy_ended = {
        "active": False,
        "started_at_utc": "2025-12-01T08:00:00.000000Z",
        "ended_at_utc": "2025-12-01T09:00:00.000000Z",
        "cone_band": "B",
        "status": "yellow",
        "notes": "old",
        "snapshot": {"cone": {}, "status": {}},
    }
    with store.transaction() as txn:
        session_store.save_session(txn, legacy_ended)
    before = get_session(store=store)
    assert before.id is not None
    assert before.id == get_session(store=store).id
    new = _start(store, clock, publisher)
    history = list_sessions(store=store).items
    assert [s.id for s in history] == [before.id]
    assert history[0].notes == "old"
    assert new.id != before.id
    assert verify_chain(store=store).ok
