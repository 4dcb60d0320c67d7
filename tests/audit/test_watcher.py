"""ChainWatcher: health's incremental chain check.

It verifies only what is new since its last look (plus that the last line it
verified is unchanged), and on first use only a bounded window of the newest
lines: health's cost does not grow with the log. The full walk is verify_chain.
"""

from __future__ import annotations

import os

import pytest
import sqlalchemy

from tests.audit.helpers import edit_line, lines, record_events, synthetic_chain, write_lines
from tests.conftest import FakeClock
from valhalla_gov.audit.service import HEALTH_WINDOW, ChainWatcher, verify_chain
from valhalla_gov.audit.store import AUDIT_LOG
from valhalla_gov.storage.json_backend import JsonStore
from valhalla_gov.storage.protocol import Store
from valhalla_gov.storage.sql_backend import SqlStore


def test_passes_on_an_empty_and_a_clean_growing_log(
    store: Store, clock: FakeClock, watcher: ChainWatcher
) -> None:
    assert watcher.check(store) is None
    record_events(store, clock, 3)
    assert watcher.check(store) is None
    record_events(store, clock, 4)
    assert watcher.check(store) is None
    assert watcher.check(store) is None


def test_catches_an_edit_among_new_lines(
    jstore: JsonStore, clock: FakeClock, watcher: ChainWatcher
) -> None:
    record_events(jstore, clock, 3)
    assert watcher.check(jstore) is None
    record_events(jstore, clock, 3)  # seq 4..6, i = 0..2
    path = jstore.log_path(AUDIT_LOG)
    edit_line(path, 4, lambda b: b.replace(b'"i":1', b'"i":9'))
    problem = watcher.check(jstore)
    assert problem is not None
    assert "near seq 5" in problem
    assert watcher.check(jstore) is not None  # still reported, not forgotten


def test_catches_a_same_length_edit_of_the_last_verified_line(
    jstore: JsonStore, clock: FakeClock, watcher: ChainWatcher
) -> None:
    record_events(jstore, clock, 3)
    assert watcher.check(jstore) is None
    path = jstore.log_path(AUDIT_LOG)
    size = path.stat().st_size
    edit_line(path, 2, lambda b: b.replace(b'"i":2', b'"i":8'))  # hash field kept
    assert path.stat().st_size == size
    assert watcher.check(jstore) == "the last verified audit line changed or disappeared"


@pytest.mark.parametrize("how", ["drop-last", "shorten-last", "lengthen-last", "empty"])
def test_catches_truncation_or_resizing_of_the_verified_tail(
    jstore: JsonStore, clock: FakeClock, watcher: ChainWatcher, how: str
) -> None:
    record_events(jstore, clock, 4)
    assert watcher.check(jstore) is None
    path = jstore.log_path(AUDIT_LOG)
    all_lines = lines(path)
    if how == "drop-last":
        write_lines(path, all_lines[:-1])
    elif how == "shorten-last":
        edit_line(path, 3, lambda b: b.replace(b'"actor":"op"', b'"actor":"o"'))
    elif how == "lengthen-last":
        edit_line(path, 3, lambda b: b.replace(b'"actor":"op"', b'"actor":"opp"'))
    else:
        os.truncate(path, 0)
    assert watcher.check(jstore) == "the last verified audit line changed or disappeared"


def test_recovers_once_the_log_is_repaired(
    jstore: JsonStore, clock: FakeClock, watcher: ChainWatcher
) -> None:
    record_events(jstore, clock, 5)
    assert watcher.check(jstore) is None
    path = jstore.log_path(AUDIT_LOG)
    good = path.read_bytes()
    edit_line(path, 4, lambda b: b.replace(b'"i":4', b'"i":5'))
    assert watcher.check(jstore) is not None
    assert watcher.check(jstore) is not None  # re-checked from scratch: still broken
    path.write_bytes(good)
    assert watcher.check(jstore) is None
    record_events(jstore, clock, 2)
    assert watcher.check(jstore) is None


def test_an_unparseable_new_line_is_a_problem_naming_the_file(
    jstore: JsonStore, clock: FakeClock, watcher: ChainWatcher
) -> None:
    record_events(jstore, clock, 2)
    assert watcher.check(jstore) is None
    path = jstore.log_path(AUDIT_LOG)
    with open(path, "ab") as fh:
        fh.write(b"{garbage}\n")
    problem = watcher.check(jstore)
    assert problem is not None
    assert "audit.log" in problem


def test_first_use_reads_only_a_bounded_window(jstore: JsonStore, watcher: ChainWatcher) -> None:
    """A bad line older than the window passes the watcher but not verify_chain:
    health stays cheap on a huge log, the full walk is the verify endpoint."""
    path = jstore.log_path(AUDIT_LOG)
    chain = synthetic_chain(HEALTH_WINDOW + 200)
    write_lines(path, chain)
    assert verify_chain(store=jstore).ok is True

    chain[9] = b"this line is not even JSON"  # seq 10, far outside the window
    chain[20] = chain[20].replace(b'"i":21', b'"i":22')  # seq 21, edited
    write_lines(path, chain)
    assert watcher.check(jstore) is None
    result = verify_chain(store=jstore)
    assert (result.ok, result.first_bad_seq) == (False, 10)


def test_first_use_catches_an_edit_inside_the_window(jstore: JsonStore) -> None:
    path = jstore.log_path(AUDIT_LOG)
    chain = synthetic_chain(HEALTH_WINDOW + 200)
    chain[-50] = chain[-50].replace(b'"event":"tick"', b'"event":"tock"')
    write_lines(path, chain)
    problem = ChainWatcher().check(jstore)
    assert problem is not None
    assert f"near seq {HEALTH_WINDOW + 200 - 49}" in problem


def test_a_window_starting_in_legacy_lines_passes(jstore: JsonStore, clock: FakeClock) -> None:
    path = jstore.log_path(AUDIT_LOG)
    legacy = b'{"ts_utc":"2025-12-01T10:00:00.000000Z","event":"old","payload":{}}'
    write_lines(path, [legacy] * 5)
    record_events(jstore, clock, 3)
    assert ChainWatcher().check(jstore) is None


@pytest.mark.parametrize("store", ["sqlite", "postgres"], indirect=True)
def test_every_check_reads_even_at_an_unchanged_generation(
    store: Store, clock: FakeClock, watcher: ChainWatcher
) -> None:
    """A hand edit that does not bump the store generation is still seen at
    the next check: the watcher keeps no answer per generation."""
    assert isinstance(store, SqlStore)
    record_events(store, clock, 3)
    assert watcher.check(store) is None
    with store.engine.begin() as conn:
        conn.execute(
            sqlalchemy.text("UPDATE log_records SET body = replace(body, :old, :new)"),
            {"old": '"i":2', "new": '"i":8'},
        )
    assert watcher.check(store) == "the last verified audit line changed or disappeared"


@pytest.mark.parametrize("store", ["sqlite", "postgres"], indirect=True)
def test_lines_this_store_just_appended_are_read_back(
    store: Store, clock: FakeClock, watcher: ChainWatcher
) -> None:
    """The lines a write appended are checked as stored, not as the write
    handed them over: an edit between the write and the check is seen."""
    assert isinstance(store, SqlStore)
    record_events(store, clock, 2)
    assert watcher.check(store) is None
    record_events(store, clock, 1)  # i = 0, after the last verified line
    with store.engine.begin() as conn:
        conn.execute(
            sqlalchemy.text(
                "UPDATE log_records SET body = replace(body, :old, :new) "
                "WHERE id = (SELECT max(id) FROM log_records)"
            ),
            {"old": '"i":0', "new": '"i":7'},
        )
    problem = watcher.check(store)
    assert problem is not None
    assert "near seq 3" in problem
