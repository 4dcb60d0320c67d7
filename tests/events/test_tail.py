"""Reading the audit log forward from a seq, on every backend."""

from __future__ import annotations

from typing import Any

import pytest

from tests.audit.helpers import record_event
from tests.conftest import FakeClock
from valhalla_gov.audit.store import AUDIT_LOG
from valhalla_gov.errors import InvalidInputError
from valhalla_gov.events.router import parse_last_event_id, sse_event
from valhalla_gov.events.tail import Position, read_after, start_position
from valhalla_gov.storage.protocol import Store


def _write(store: Store, clock: FakeClock, count: int) -> None:
    for n in range(count):
        clock.advance(seconds=1)
        record_event(store=store, event="TEST_EVENT", payload={"n": n}, actor="t", clock=clock)


def _drain(store: Store, position: Position, limit: int = 1000) -> tuple[list[int], Position]:
    seqs: list[int] = []
    while True:
        records, position = read_after(store, position, limit)
        seqs += [int(r["seq"]) for r in records]
        if len(records) < limit:
            return seqs, position


def test_a_new_reader_starts_at_the_end_and_sees_only_what_follows(
    store: Store, clock: FakeClock
) -> None:
    assert start_position(store, None) == Position(None, 0)
    _write(store, clock, 3)
    position = start_position(store, None)
    assert position.last_seq == 3
    assert _drain(store, position)[0] == []
    _write(store, clock, 2)
    seqs, position = _drain(store, position)
    assert seqs == [4, 5]
    assert _drain(store, position)[0] == []  # nothing twice


def test_resume_sends_exactly_what_came_after_the_id(store: Store, clock: FakeClock) -> None:
    _write(store, clock, 10)
    for last in (0, 1, 5, 9):
        assert _drain(store, start_position(store, last))[0] == list(range(last + 1, 11))
    assert _drain(store, start_position(store, 10))[0] == []


def test_an_empty_log_starts_from_its_first_record(store: Store, clock: FakeClock) -> None:
    position = start_position(store, 7)  # an id from a log that is gone: start fresh
    _write(store, clock, 2)
    assert _drain(store, position)[0] == [1, 2]


def test_an_id_beyond_the_newest_starts_at_the_end(store: Store, clock: FakeClock) -> None:
    _write(store, clock, 3)
    position = start_position(store, 99)
    assert position.last_seq == 3
    _write(store, clock, 1)
    assert _drain(store, position)[0] == [4]


def test_replay_goes_out_in_slices_without_gaps(store: Store, clock: FakeClock) -> None:
    _write(store, clock, 25)
    position = start_position(store, 2)
    seen: list[int] = []
    for _ in range(10):
        records, position = read_after(store, position, 4)
        assert len(records) <= 4
        seen += [int(r["seq"]) for r in records]
    assert seen == list(range(3, 26))


def test_legacy_lines_before_the_chain_are_not_sent(store: Store, clock: FakeClock) -> None:
    with store.transaction() as txn:
        # The earlier implementation's lines: no seq, actor, prev or hash.
        txn.append_log(AUDIT_LOG, {"ts_utc": "2025-01-01T00:00:00Z", "event": "OLD", "payload": {}})
    position = start_position(store, None)
    assert position.last_seq == 0
    _write(store, clock, 2)
    records, _ = read_after(store, position, 10)
    assert [r["event"] for r in records] == ["TEST_EVENT", "TEST_EVENT"]
    assert _drain(store, start_position(store, 0))[0] == [1, 2]


def test_log_version_changes_with_every_append(store: Store, clock: FakeClock) -> None:
    versions = {store.log_version(AUDIT_LOG)}
    for _ in range(3):
        _write(store, clock, 1)
        versions.add(store.log_version(AUDIT_LOG))
    assert len(versions) == 4
    assert store.log_version(AUDIT_LOG) == store.log_version(AUDIT_LOG)


def test_sse_event_is_one_event_whatever_the_payload_holds() -> None:
    record: dict[str, Any] = {
        "seq": 7,
        "event": "GO_SESSION_END",
        "payload": {"notes": "line one\nline two\r\n\u2028 done \ud800"},
    }
    text = sse_event(record)
    assert text.endswith("\n\n")
    lines = text[:-2].split("\n")
    assert lines[0] == "id: 7"
    assert lines[1] == "event: GO_SESSION_END"
    assert lines[2].startswith("data: {")
    assert len(lines) == 3


def test_last_event_id_parsing() -> None:
    assert parse_last_event_id(None) is None
    assert parse_last_event_id("") is None
    assert parse_last_event_id(" 42 ") == 42
    for bad in ("-1", "4.2", "abc", "\u00b2", "9" * 19):
        with pytest.raises(InvalidInputError):
            parse_last_event_id(bad)
