"""Inside a transaction each file is read once: what the lock holder read or
wrote is kept until it lets go, and that never hides a change."""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FakeClock, health_now
from valhalla_gov.audit.store import AUDIT_LOG
from valhalla_gov.compose import open_json
from valhalla_gov.cone.service import set_cone_state
from valhalla_gov.cone.store import CONE_STATE
from valhalla_gov.go.session_service import end_session, start_session
from valhalla_gov.storage import json_store
from valhalla_gov.storage.protocol import Store, StoreTxn


class Boom(Exception):
    pass


def test_nested_transactions_see_each_others_writes(store: Store) -> None:
    with store.transaction() as txn:
        txn.write_document(CONE_STATE, {"band": "A"})
    with store.transaction() as outer:
        assert outer.read_document(CONE_STATE) == {"band": "A"}
        with store.transaction() as inner:
            inner.write_document(CONE_STATE, {"band": "B"})
        assert outer.read_document(CONE_STATE) == {"band": "B"}
        assert store.read_document(CONE_STATE) == {"band": "B"}
    assert store.read_document(CONE_STATE) == {"band": "B"}


def test_an_inner_failure_taken_back_is_what_the_outer_reads(tmp_path: Path) -> None:
    # JSON only: a nested transaction there takes back its own writes (on
    # SQL it is the outer one, which rolls back as a whole).
    store = open_json(tmp_path / "data")

    def failing_inner(outer: StoreTxn) -> None:
        with store.transaction() as inner:
            inner.write_document(CONE_STATE, {"band": "C"})
            assert outer.read_document(CONE_STATE) == {"band": "C"}
            raise Boom

    with store.transaction() as outer:
        outer.write_document(CONE_STATE, {"band": "B"})
        with pytest.raises(Boom):
            failing_inner(outer)
        assert outer.read_document(CONE_STATE) == {"band": "B"}
        assert store.read_document(CONE_STATE) == {"band": "B"}
    assert store.read_document(CONE_STATE) == {"band": "B"}


def test_the_last_record_is_the_one_just_appended_and_a_copy(store: Store) -> None:
    with store.transaction() as txn:
        assert txn.last_log_record(AUDIT_LOG) is None
        txn.append_log(AUDIT_LOG, {"n": 1, "payload": {"k": "v"}})
        last = txn.last_log_record(AUDIT_LOG)
        assert last == {"n": 1, "payload": {"k": "v"}}
        assert last is not None
        last["payload"]["k"] = "changed by the caller"
        assert txn.last_log_record(AUDIT_LOG) == {"n": 1, "payload": {"k": "v"}}
        txn.append_many(AUDIT_LOG, [{"n": 2}, {"n": 3}])
        assert txn.last_log_record(AUDIT_LOG) == {"n": 3}
    with store.transaction() as txn:
        assert txn.last_log_record(AUDIT_LOG) == {"n": 3}


def test_every_document_read_is_the_callers_own_copy(store: Store) -> None:
    # Reads are served from a cache: a caller that changes what it got must
    # not change what the next reader gets, in a transaction or outside.
    value = {"band": "B", "engines": {"run": ["a"]}}
    with store.transaction() as txn:
        txn.write_document(CONE_STATE, value)
        inside = txn.read_document(CONE_STATE)
        assert inside == value
        inside["engines"]["run"].append("changed in the transaction")
        assert txn.read_document(CONE_STATE) == value
    for _ in range(2):  # a read from the database, then one from the cache
        outside = store.read_document(CONE_STATE)
        assert outside == value
        outside["engines"]["run"].append("changed by the caller")
    assert store.read_document(CONE_STATE) == value
    assert store.probe(write=False) == []


def test_a_document_read_outside_a_transaction_is_read_again(tmp_path: Path) -> None:
    # Outside the lock another process may write at any time.
    store = open_json(tmp_path / "data")
    with store.transaction() as txn:
        txn.write_document(CONE_STATE, {"band": "A"})
    store.doc_path(CONE_STATE).write_text('{"band": "D"}')
    assert store.read_document(CONE_STATE) == {"band": "D"}
    with store.transaction() as txn:
        assert txn.read_document(CONE_STATE) == {"band": "D"}


@contextlib.contextmanager
def _counting_reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[collections.Counter[str]]:
    opened: collections.Counter[str] = collections.Counter()

    def counting_open(path: Any, *args: Any, **kwargs: Any) -> Any:
        opened[Path(path).name] += 1
        return open(path, *args, **kwargs)

    real_read_bytes = json_store.read_bytes

    def counting_read_bytes(path: Path) -> bytes | None:  # documents: os-level reads
        opened[Path(path).name] += 1
        return real_read_bytes(path)

    monkeypatch.setattr(json_store, "open", counting_open, raising=False)
    monkeypatch.setattr(json_store, "read_bytes", counting_read_bytes)
    yield opened
    monkeypatch.undo()


def test_start_and_end_read_each_document_once(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_json(tmp_path / "data")
    set_cone_state(store=store, band="A", reason="t", metrics=None, actor="t", clock=clock)
    health = health_now(store)
    start_session(store=store, clock=clock, actor="t", notes=None, health=health)
    end_session(store=store, clock=clock, actor="t", notes=None, health=health)
    for operation in (start_session, end_session):
        with _counting_reads(monkeypatch) as opened:
            operation(store=store, clock=clock, actor="t", notes=None, health=health)
        documents = {name: n for name, n in opened.items() if name.endswith(".json")}
        # The session and the cone (for the snapshot) are read, each once.
        assert {"go_session.json", "cone_state.json"} <= set(documents), opened
        assert set(documents.values()) == {1}, opened
