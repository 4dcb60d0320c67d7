"""A failed operation takes back its earlier writes: all or nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from valhalla_gov.audit.store import AUDIT_LOG
from valhalla_gov.compose import open_json
from valhalla_gov.cone.store import CONE_STATE
from valhalla_gov.go.session_store import HISTORY
from valhalla_gov.go.store import PROGRESS
from valhalla_gov.storage.protocol import Log, Store


class Boom(Exception):
    pass


def _records(store: Store, log: Log) -> list[dict[str, object]]:
    return [e.record for e in store.scan_log_forward(log)]


def test_an_exception_inside_a_transaction_undoes_every_write(store: Store) -> None:
    with store.transaction() as txn:
        txn.write_document(CONE_STATE, {"band": "B"})
        txn.append_log(AUDIT_LOG, {"n": 1})

    def failing_operation() -> None:
        with store.transaction() as txn:
            txn.write_document(CONE_STATE, {"band": "D"})
            txn.write_document(PROGRESS, {"progress": {}})
            txn.append_log(AUDIT_LOG, {"n": 2})
            txn.append_many(AUDIT_LOG, [{"n": 3}, {"n": 4}])
            txn.append_log(HISTORY, {"id": "01A", "active": False, "started_at_utc": "x"})
            raise Boom

    with pytest.raises(Boom):
        failing_operation()
    assert store.read_document(CONE_STATE) == {"band": "B"}
    assert store.read_document(PROGRESS) is None
    assert _records(store, AUDIT_LOG) == [{"n": 1}]
    assert _records(store, HISTORY) == []


def test_json_rollback_restores_the_exact_bytes(tmp_path: Path) -> None:

    store = open_json(tmp_path / "data")
    cone = tmp_path / "data" / "cone_state.json"
    cone.write_text('{"band": "C", "legacy": true}')
    original = cone.read_bytes()

    def failing_operation() -> None:
        with store.transaction() as txn:
            txn.write_document(CONE_STATE, {"band": "A"})
            assert json.loads(cone.read_text()) == {"band": "A"}
            raise Boom

    with pytest.raises(Boom):
        failing_operation()
    assert cone.read_bytes() == original
    assert not (tmp_path / "data" / "go_progress.json").exists()


def test_a_source_failing_half_way_leaves_no_partial_bulk_append(store: Store) -> None:
    def records() -> Iterator[dict[str, object]]:
        yield {"n": 1}
        yield {"n": 2}
        raise Boom

    with pytest.raises(Boom), store.transaction() as txn:
        txn.append_many(AUDIT_LOG, records())
    assert _records(store, AUDIT_LOG) == []
