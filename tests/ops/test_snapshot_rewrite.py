"""The two storage additions operations need, on every backend:
``Store.snapshot()`` (one consistent moment while writers go on or wait) and
``StoreTxn.rewrite_log`` (keep what a test keeps, all or nothing)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import join_all, make_store
from valhalla_gov.cone.store import CONE_STATE, DECISIONS
from valhalla_gov.storage.json_backend import JsonStore
from valhalla_gov.storage.protocol import Store


def _decisions(store: Store) -> list[dict[str, Any]]:
    return [entry.record for entry in store.scan_log_forward(DECISIONS)]


def _write(store: Store, n: int) -> None:
    with store.transaction() as txn:
        txn.append_log(DECISIONS, {"n": n})
        txn.write_document(CONE_STATE, {"n": n})


def test_a_snapshot_reads_one_moment_while_another_writer_writes(
    store: Store, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    backend = request.node.callspec.params["store"]
    _write(store, 1)
    other = make_store(backend, tmp_path)  # another worker on the same data
    done = threading.Event()

    def writer() -> None:
        _write(other, 2)
        done.set()

    with store.snapshot() as snap:
        thread = threading.Thread(target=writer)
        thread.start()
        # JSON: a copy made under the lock; SQL: one read transaction. Either
        # way the writer commits meanwhile and the snapshot does not see it.
        assert done.wait(10)
        assert [e.record for e in snap.scan_log_forward(DECISIONS)] == [{"n": 1}]
        assert [e.record for e in snap.scan_log(DECISIONS)] == [{"n": 1}]
        runs = list(snap.scan_log_bulk(DECISIONS))
        assert [record for _, records in runs for record in records] == [{"n": 1}]
        assert snap.read_document(CONE_STATE) == {"n": 1}
    join_all([thread])
    assert _decisions(store) == [{"n": 1}, {"n": 2}]
    assert store.read_document(CONE_STATE) == {"n": 2}
    if isinstance(store, JsonStore):  # the copy is gone with the snapshot
        assert not list(store.data_dir.glob(".snapshot-*"))


def test_a_json_snapshot_is_taken_under_the_lock_and_leaves_a_torn_line_out(
    tmp_path: Path,
) -> None:
    from valhalla_gov.compose import open_json

    store = open_json(tmp_path / "data")
    _write(store, 1)
    with (tmp_path / "data" / DECISIONS.file).open("ab") as log:
        log.write(b'{"n":2,"torn')  # an append that never finished
    other = open_json(tmp_path / "data")
    taken = threading.Event()

    def snapshot() -> None:
        with store.snapshot():
            taken.set()

    with other.transaction():  # a writer holds the lock: the snapshot waits
        thread = threading.Thread(target=snapshot)
        thread.start()
        assert not taken.wait(0.5)
    assert taken.wait(10)
    join_all([thread])
    with store.snapshot() as snap:
        assert [e.record for e in snap.scan_log_forward(DECISIONS)] == [{"n": 1}]
        copy = Path(str(snap.describe()).removeprefix("json:")) / DECISIONS.file
        assert copy.read_bytes() == b'{"n":1}\n'
        assert copy.stat().st_mode & 0o777 == 0o600


def test_rewrite_log_keeps_what_the_test_keeps_in_order(store: Store) -> None:
    with store.transaction() as txn:
        for n in range(10):
            txn.append_log(DECISIONS, {"n": n})
    seen: list[int] = []

    def keep(record: dict[str, Any]) -> bool:
        seen.append(record["n"])
        return bool(record["n"] % 3 == 0)

    with store.transaction() as txn:
        assert txn.rewrite_log(DECISIONS, keep) == 6
        txn.append_log(DECISIONS, {"n": 10})  # appends go on after it
        assert txn.last_log_record(DECISIONS) == {"n": 10}
    assert seen == list(range(10))  # each record once, oldest first
    assert _decisions(store) == [{"n": 0}, {"n": 3}, {"n": 6}, {"n": 9}, {"n": 10}]
    assert [e.record["n"] for e in store.scan_log(DECISIONS)] == [10, 9, 6, 3, 0]
    with store.transaction() as txn:
        assert txn.rewrite_log(DECISIONS, lambda record: True) == 0


def test_a_failed_transaction_takes_a_rewrite_back(store: Store) -> None:
    with store.transaction() as txn:
        for n in range(5):
            txn.append_log(DECISIONS, {"n": n})
    dropped: list[int] = []

    def prune_then_fail() -> None:
        with store.transaction() as txn:
            dropped.append(txn.rewrite_log(DECISIONS, lambda record: record["n"] > 2))
            raise RuntimeError("a later write of the same operation failed")

    with pytest.raises(RuntimeError):
        prune_then_fail()
    assert dropped == [3]
    assert _decisions(store) == [{"n": n} for n in range(5)]


def test_a_json_rewrite_keeps_the_stored_bytes_and_sets_a_torn_tail_aside(
    tmp_path: Path,
) -> None:
    from valhalla_gov.compose import open_json

    store = open_json(tmp_path / "data")
    path = tmp_path / "data" / DECISIONS.file
    path.write_bytes(b'{"n":1,  "kept":"as written"}\n{"n":2}\n{"n":3,"torn')
    with store.transaction() as txn:
        assert txn.rewrite_log(DECISIONS, lambda record: record["n"] == 1) == 1
    assert path.read_bytes() == b'{"n":1,  "kept":"as written"}\n'
    assert path.stat().st_mode & 0o777 == 0o600
    torn = list(path.parent.glob(f"{DECISIONS.file}.torn-*"))
    assert [p.read_bytes() for p in torn] == [b'{"n":3,"torn']
    time.sleep(0)  # nothing else left behind: no temp files
    assert not list(path.parent.glob(".*.tmp"))
