"""The audit hash chain: log_event builds it, verify_chain walks it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from tests.audit.helpers import (
    LEGACY_LINES,
    edit_line,
    lines,
    record_event,
    record_events,
    scan_records,
    synthetic_chain,
    without_keys,
    write_lines,
)
from tests.conftest import FakeClock
from valhalla_gov.audit.models import AuditEvent
from valhalla_gov.audit.service import GENESIS, chain_hash, log_event, verify_chain
from valhalla_gov.audit.store import AUDIT_LOG
from valhalla_gov.cone.store import CONE_STATE
from valhalla_gov.storage.encoding import canonical_json
from valhalla_gov.storage.errors import StorageCorruptError
from valhalla_gov.storage.json_backend import JsonStore
from valhalla_gov.storage.protocol import Store


def expected_hash(prev: str, body: dict[str, Any]) -> str:
    """The documented formula, spelled out independently of the service."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(prev.encode() + b"\n" + canonical.encode()).hexdigest()


# -- log_event -------------------------------------------------------------


def test_log_event_builds_the_chain(store: Store, clock: FakeClock) -> None:
    returned = []
    for n, actor in enumerate(["alice", "bob", "alice"]):
        returned.append(
            record_event(
                store=store, event=f"ev{n}", payload={"n": n, "t": "✓"}, actor=actor, clock=clock
            )
        )
        clock.advance(seconds=90)
    records = scan_records(store)

    assert [r["seq"] for r in records] == [1, 2, 3]
    assert [r["actor"] for r in records] == ["alice", "bob", "alice"]
    assert [r["event"] for r in records] == ["ev0", "ev1", "ev2"]
    assert [r["payload"] for r in records] == [{"n": n, "t": "✓"} for n in range(3)]
    assert [r["ts_utc"] for r in records] == [
        "2026-01-01T09:00:00.000000Z",
        "2026-01-01T09:01:30.000000Z",
        "2026-01-01T09:03:00.000000Z",
    ]
    assert records[0]["prev"] == GENESIS == "0" * 64
    for before, record in zip([None, *records], records, strict=False):
        if before is not None:
            assert record["prev"] == before["hash"]
        body = {k: v for k, v in record.items() if k != "hash"}
        assert record["hash"] == expected_hash(record["prev"], body)
    assert set(records[0]) == {"ts_utc", "event", "payload", "seq", "actor", "prev", "hash"}
    assert [e.model_dump() for e in returned] == records


def test_log_event_joins_the_callers_transaction(store: Store, clock: FakeClock) -> None:
    with store.transaction() as txn:
        txn.write_document(CONE_STATE, {"band": "C"})
        first = log_event(txn, event="cone_set", payload={"band": "C"}, actor="op", clock=clock)
        second = log_event(txn, event="note", payload={}, actor="op", clock=clock)
    assert (first.seq, second.seq) == (1, 2)
    assert second.prev == first.hash
    assert store.read_document(CONE_STATE) == {"band": "C"}
    assert verify_chain(store=store).events == 2


def test_timestamps_are_stored_in_utc_with_z(store: Store) -> None:
    plus_two = timezone(timedelta(hours=2))
    event = record_event(
        store=store,
        event="x",
        payload={},
        actor="op",
        clock=lambda: datetime(2026, 3, 1, 11, 30, 0, 5, tzinfo=plus_two),
    )
    assert event.ts_utc == "2026-03-01T09:30:00.000005Z"
    assert scan_records(store)[0]["ts_utc"] == "2026-03-01T09:30:00.000005Z"


def test_a_naive_clock_is_refused_and_nothing_is_written(store: Store) -> None:
    with pytest.raises(ValueError, match="naive"):
        record_event(
            store=store, event="x", payload={}, actor="op", clock=lambda: datetime(2026, 1, 1)
        )
    assert scan_records(store) == []


def test_log_event_will_not_chain_onto_a_corrupt_last_line(
    jstore: JsonStore, clock: FakeClock
) -> None:
    record_events(jstore, clock, 2)
    path = jstore.log_path(AUDIT_LOG)
    with open(path, "ab") as fh:
        fh.write(b"{oops}\n")
    raw = path.read_bytes()
    with pytest.raises(StorageCorruptError, match=r"audit\.log"):
        record_event(store=jstore, event="x", payload={}, actor="op", clock=clock)
    assert path.read_bytes() == raw


def test_a_torn_tail_is_not_part_of_the_chain(jstore: JsonStore, clock: FakeClock) -> None:
    record_events(jstore, clock, 3)
    path = jstore.log_path(AUDIT_LOG)
    # A whole, valid next record whose newline never reached the disk: never
    # acknowledged, so neither counted nor chained onto.
    last = scan_records(jstore)[-1]
    body = {**last, "seq": 4, "prev": last["hash"], "event": "lost"}
    del body["hash"]
    torn = canonical_json({**body, "hash": chain_hash(last["hash"], body)}).encode()
    with open(path, "ab") as fh:
        fh.write(torn)
    result = verify_chain(store=jstore)
    assert (result.ok, result.events) == (True, 3)
    event = record_event(store=jstore, event="next", payload={}, actor="op", clock=clock)
    assert event.seq == 4
    assert verify_chain(store=jstore).model_dump() == {
        "ok": True,
        "events": 4,
        "legacy_events": 0,
        "first_bad_seq": None,
        "detail": None,
        "head_seq": 4,
        "head_hash": event.hash,
        "anchored": False,
    }


# -- verify_chain ----------------------------------------------------------


def test_verify_an_empty_log(store: Store) -> None:
    result = verify_chain(store=store)
    assert (result.ok, result.events, result.legacy_events, result.first_bad_seq) == (
        True,
        0,
        0,
        None,
    )


def test_verify_a_clean_log(store: Store, clock: FakeClock) -> None:
    record_events(store, clock, 7)
    result = verify_chain(store=store)
    assert result.model_dump() == {
        "ok": True,
        "events": 7,
        "legacy_events": 0,
        "first_bad_seq": None,
        "detail": None,
        "head_seq": 7,
        "head_hash": scan_records(store)[-1]["hash"],
        "anchored": False,
    }


def _swap(all_lines: list[bytes], i: int, j: int) -> list[bytes]:
    out = list(all_lines)
    out[i], out[j] = out[j], out[i]
    return out


Tamper = Callable[[list[bytes]], list[bytes]]


def _edit(index: int, old: bytes, new: bytes) -> Tamper:
    def change(all_lines: list[bytes]) -> list[bytes]:
        out = list(all_lines)
        assert old in out[index]
        out[index] = out[index].replace(old, new)
        return out

    return change


def _strip(index: int, *keys: str) -> Tamper:
    def change(all_lines: list[bytes]) -> list[bytes]:
        out = list(all_lines)
        out[index] = without_keys(out[index], *keys)
        return out

    return change


def _forge(index: int, **changes: Any) -> Tamper:
    """Replace a line with a self-consistent forgery: its own hash is right."""

    def change(all_lines: list[bytes]) -> list[bytes]:
        out = list(all_lines)
        body = {k: v for k, v in json.loads(out[index]).items() if k != "hash"}
        body.update(changes)
        out[index] = canonical_json({**body, "hash": chain_hash(body["prev"], body)}).encode()
        return out

    return change


# (how the file is tampered with, first_bad_seq, events verified before it)
TAMPERING: dict[str, tuple[Tamper, int, int]] = {
    "edited-payload": (_edit(2, b'"i":2', b'"i":7'), 3, 2),
    "edited-event": (_edit(4, b'"event":"e1"', b'"event":"e2"'), 5, 4),
    "edited-actor": (_edit(0, b'"actor":"op"', b'"actor":"me"'), 1, 0),
    "edited-seq": (_edit(2, b'"seq":3', b'"seq":99'), 3, 2),
    "edited-hash": (lambda ls: _edit(2, ls[2][-10:-2], b"0" * 8)(ls), 3, 2),
    "dropped": (lambda ls: ls[:2] + ls[3:], 3, 2),
    "dropped-first": (lambda ls: ls[1:], 1, 0),
    "swapped": (lambda ls: _swap(ls, 2, 3), 3, 2),
    "last-moved-first": (lambda ls: ls[-1:] + ls[:-1], 1, 0),
    "duplicated": (lambda ls: ls[:3] + ls[2:], 4, 3),
    "hash-stripped": (_strip(2, "hash"), 3, 2),
    "chain-fields-stripped": (_strip(3, "seq", "actor", "prev", "hash"), 4, 3),
    "unparseable": (lambda ls: [*ls[:2], b"{garbage", *ls[3:]], 3, 2),
    "forged-prev": (_forge(2, prev="f" * 64), 3, 2),
    "forged-seq": (_forge(2, seq=7), 3, 2),
    "forged-payload": (_forge(3, payload={"i": 42}), 5, 4),
}


@pytest.mark.parametrize("case", sorted(TAMPERING))
def test_verify_catches_tampering(jstore: JsonStore, clock: FakeClock, case: str) -> None:
    record_events(jstore, clock, 6)
    path = jstore.log_path(AUDIT_LOG)
    tamper, first_bad, good_events = TAMPERING[case]
    original = lines(path)
    write_lines(path, tamper(original))
    assert lines(path) != original
    raw = path.read_bytes()

    result = verify_chain(store=jstore)
    assert result.ok is False
    assert result.first_bad_seq == first_bad
    assert result.events == good_events
    assert result.legacy_events == 0
    assert result.detail
    assert path.read_bytes() == raw  # verifying never repairs or rewrites


def test_verify_names_the_file_of_an_unparseable_line(jstore: JsonStore, clock: FakeClock) -> None:
    record_events(jstore, clock, 3)
    path = jstore.log_path(AUDIT_LOG)
    edit_line(path, 1, lambda _: b"not json")
    result = verify_chain(store=jstore)
    assert result.detail is not None
    assert str(path) in result.detail


# -- legacy lines ----------------------------------------------------------


def test_legacy_lines_are_counted_and_the_chain_starts_after_them(
    jstore: JsonStore, clock: FakeClock
) -> None:
    path = jstore.log_path(AUDIT_LOG)
    write_lines(path, LEGACY_LINES)
    only_legacy = verify_chain(store=jstore)
    assert (only_legacy.ok, only_legacy.events, only_legacy.legacy_events) == (True, 0, 3)

    record_events(jstore, clock, 2)
    all_lines = lines(path)
    assert all_lines[:3] == LEGACY_LINES  # kept byte for byte
    records = scan_records(jstore)[3:]
    assert [(r["seq"], r["prev"]) for r in records] == [(1, GENESIS), (2, records[0]["hash"])]
    result = verify_chain(store=jstore)
    assert result.model_dump() == {
        "ok": True,
        "events": 2,
        "legacy_events": 3,
        "first_bad_seq": None,
        "detail": None,
        "head_seq": 2,
        "head_hash": records[1]["hash"],
        "anchored": False,
    }


def test_a_legacy_looking_line_after_the_chain_fails(jstore: JsonStore, clock: FakeClock) -> None:
    record_events(jstore, clock, 2)
    path = jstore.log_path(AUDIT_LOG)
    with open(path, "ab") as fh:
        fh.write(LEGACY_LINES[0] + b"\n")
    record_events(jstore, clock, 1)  # restarts from GENESIS after a non-chained line
    result = verify_chain(store=jstore)
    assert (result.ok, result.first_bad_seq, result.events, result.legacy_events) == (
        False,
        3,
        2,
        0,
    )


def test_an_edit_before_a_long_clean_tail_is_still_found(jstore: JsonStore) -> None:
    path = jstore.log_path(AUDIT_LOG)
    write_lines(path, synthetic_chain(300))
    assert verify_chain(store=jstore).events == 300
    edit_line(path, 9, lambda b: b.replace(b'"i":10', b'"i":11'))
    result = verify_chain(store=jstore)
    assert (result.ok, result.first_bad_seq, result.events) == (False, 10, 9)


def test_verify_is_read_only_and_repeatable(jstore: JsonStore, clock: FakeClock) -> None:
    record_events(jstore, clock, 4)
    path = jstore.log_path(AUDIT_LOG)
    raw = path.read_bytes()
    first = verify_chain(store=jstore)
    assert verify_chain(store=jstore) == first
    assert path.read_bytes() == raw
    # The writes made the log and its derived kind index; verifying adds nothing.
    assert sorted(p.name for p in Path(jstore.data_dir).iterdir()) == [
        ".audit.log.kinds",
        ".valhalla.lock",
        "audit.log",
    ]


def test_events_round_trip_through_the_model(store: Store, clock: FakeClock) -> None:
    record_events(store, clock, 2)
    for record in scan_records(store):
        assert AuditEvent.model_validate(record).model_dump() == record
