"""A full disk: every write fails with StorageUnavailableError and leaves the
files exactly as they were; once space is back, writes work again."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.audit.helpers import record_event
from tests.conftest import FakeClock
from tests.storage.helpers import fill_up
from valhalla_gov.audit.service import verify_chain
from valhalla_gov.audit.store import AUDIT_LOG
from valhalla_gov.compose import open_json
from valhalla_gov.cone.store import CONE_STATE
from valhalla_gov.storage.errors import StorageUnavailableError
from valhalla_gov.storage.json_store import append_line, read_json, write_json

BIG = "x" * 20_000  # more than the slack left in any partly used page


def listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_write_json_on_a_full_disk_keeps_the_old_document(tiny_fs: Path) -> None:
    path = tiny_fs / "cone_state.json"
    write_json(path, {"band": "B"})
    old = path.read_bytes()
    filler = fill_up(tiny_fs)

    with pytest.raises(StorageUnavailableError) as info:
        write_json(path, {"band": "C", "pad": BIG})
    assert info.value.path == str(path)
    assert "no space left" in str(info.value)
    assert path.read_bytes() == old
    assert listing(tiny_fs) == ["cone_state.json", "filler.bin"]  # no temp file

    filler.unlink()
    write_json(path, {"band": "C", "pad": BIG})
    assert read_json(path) == {"band": "C", "pad": BIG}
    assert listing(tiny_fs) == ["cone_state.json"]


def test_append_line_on_a_full_disk_leaves_no_partial_line(tiny_fs: Path) -> None:
    path = tiny_fs / "audit.log"
    append_line(path, b'{"n":0}\n')
    old = path.read_bytes()
    filler = fill_up(tiny_fs)

    big_line = b'{"pad":"' + BIG.encode() + b'"}\n'
    with pytest.raises(StorageUnavailableError) as info:
        append_line(path, big_line)
    assert info.value.path == str(path)
    assert path.read_bytes() == old

    filler.unlink()
    assert append_line(path, big_line) == len(old)
    assert path.read_bytes() == old + big_line


def test_store_writes_on_a_full_disk_fail_cleanly_and_recover(tiny_fs: Path) -> None:
    store = open_json(tiny_fs / "data")
    with store.transaction() as txn:
        txn.write_document(CONE_STATE, {"band": "B"})
        txn.append_log(AUDIT_LOG, {"n": 0})
    doc = store.doc_path(CONE_STATE)
    log = store.log_path(AUDIT_LOG)
    doc_before, log_before = doc.read_bytes(), log.read_bytes()
    files_before = listing(store.data_dir)
    filler = fill_up(tiny_fs)

    with (
        pytest.raises(StorageUnavailableError, match="no space left"),
        store.transaction() as txn,
    ):
        txn.write_document(CONE_STATE, {"band": "C", "pad": BIG})
    with (
        pytest.raises(StorageUnavailableError, match="no space left"),
        store.transaction() as txn,
    ):
        txn.append_log(AUDIT_LOG, {"n": 1, "pad": BIG})
    assert doc.read_bytes() == doc_before
    assert log.read_bytes() == log_before
    assert listing(store.data_dir) == files_before

    filler.unlink()
    with store.transaction() as txn:
        txn.write_document(CONE_STATE, {"band": "C"})
        txn.append_log(AUDIT_LOG, {"n": 1, "pad": BIG})
    assert store.read_document(CONE_STATE) == {"band": "C"}
    assert [e.record["n"] for e in store.scan_log_forward(AUDIT_LOG)] == [0, 1]


def test_a_torn_tail_on_a_full_disk_is_kept_and_reported(tiny_fs: Path) -> None:
    store = open_json(tiny_fs / "data")
    with store.transaction() as txn:
        txn.append_log(AUDIT_LOG, {"n": 0})
    log = store.log_path(AUDIT_LOG)
    torn = b'{"n":1,"pad":"' + b"y" * 9000  # an unfinished earlier write
    with open(log, "ab") as fh:
        fh.write(torn)
    log_before = log.read_bytes()
    files_before = listing(store.data_dir)
    filler = fill_up(tiny_fs)

    # Moving the torn bytes aside needs space: the append is refused (503),
    # not crashed (500), and neither the log nor a half side file changes.
    with (
        pytest.raises(StorageUnavailableError, match="no space left"),
        store.transaction() as txn,
    ):
        txn.append_log(AUDIT_LOG, {"n": 2})
    assert log.read_bytes() == log_before
    assert listing(store.data_dir) == files_before

    filler.unlink()
    with store.transaction() as txn:
        txn.append_log(AUDIT_LOG, {"n": 2})
    assert (store.data_dir / f"audit.log.torn-{len(log_before) - len(torn)}").read_bytes() == torn
    assert [e.record["n"] for e in store.scan_log_forward(AUDIT_LOG)] == [0, 2]


def test_audit_chain_stays_valid_through_a_full_disk(tiny_fs: Path, clock: FakeClock) -> None:
    store = open_json(tiny_fs / "data")
    record_event(store=store, event="before", payload={}, actor="op", clock=clock)
    log_before = store.log_path(AUDIT_LOG).read_bytes()
    filler = fill_up(tiny_fs)

    with pytest.raises(StorageUnavailableError):
        record_event(store=store, event="during", payload={"pad": BIG}, actor="op", clock=clock)
    assert store.log_path(AUDIT_LOG).read_bytes() == log_before

    filler.unlink()
    record_event(store=store, event="after", payload={"pad": BIG}, actor="op", clock=clock)
    result = verify_chain(store=store)
    assert (result.ok, result.events, result.first_bad_seq) == (True, 2, None)
    assert [e.record["event"] for e in store.scan_log_forward(AUDIT_LOG)] == ["before", "after"]
