"""A failed operation takes back its earlier writes: all or nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from valhalla_gov.storage.protocol import (
    DOC_CONE_STATE,
    DOC_GO_PROGRESS,
    LOG_AUDIT,
    LOG_SESSIONS,
    Store,
)


class Boom(Exception):
    pass


def _records(store: Store, log: str) -> list[dict[str, object]]:
    return [e.record for e in store.scan_log_forward(log)]


def test_an_exception_inside_a_transaction_undoes_every_write(store: Store) -> None:
    with store.transaction() as txn:
        txn.write_document(DOC_CONE_STATE, {"band": "B"})
        txn.append_log(LOG_AUDIT, {"n": 1})

    def failing_operation() -> None:
        with store.transaction() as txn:
            txn.write_document(DOC_CONE_STATE, {"band": "D"})
            txn.write_document(DOC_GO_PROGRESS, {"progress": {}})
            txn.append_log(LOG_AUDIT, {"n": 2})
            txn.append_many(LOG_AUDIT, [{"n": 3}, {"n": 4}])
            txn.append_log(LOG_SESSIONS, {"id": "01A", "active": False, "started_at_utc": "x"})
            raise Boom

    with pytest.raises(Boom):
        failing_operation()
    assert store.read_document(DOC_CONE_STATE) == {"band": "B"}
    assert store.read_document(DOC_GO_PROGRESS) is None
    assert _records(store, LOG_AUDIT) == [{"n": 1}]
    assert _records(store, LOG_SESSIONS) == []


def test_json_rollback_restores_the_exact_bytes(tmp_path: Path) -> None:
    from valhalla_gov.storage.json_backend import JsonStore

    store = JsonStore(tmp_path / "data")
    cone = tmp_path / "data" / "cone_state.json"
    cone.write_text('{"band": "C", "legacy": true}')
    original = cone.read_bytes()

    def failing_operation() -> None:
        with store.transaction() as txn:
            txn.write_document(DOC_CONE_STATE, {"band": "A"})
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
        txn.append_many(LOG_AUDIT, records())
    assert _records(store, LOG_AUDIT) == []
