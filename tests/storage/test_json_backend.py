"""The JSON-file backend's own promises: file names, torn last lines, corrupt
lines, byte-offset cursors and probe()."""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import unwritable
from tests.storage.helpers import bulk_pairs, remount_read_only
from valhalla_gov.audit.store import AUDIT_LOG
from valhalla_gov.compose import SCHEMA, open_json
from valhalla_gov.cone.store import CONE_STATE
from valhalla_gov.go.session_store import CURRENT
from valhalla_gov.storage import json_store
from valhalla_gov.storage.encoding import canonical_json
from valhalla_gov.storage.errors import (
    InvalidCursorError,
    StorageCorruptError,
    StorageUnavailableError,
)
from valhalla_gov.storage.json_backend import JsonStore
from valhalla_gov.storage.protocol import Document

BACKEND_LOGGER = "valhalla_gov.storage.json_backend"


def line(record: dict[str, Any]) -> bytes:
    return (canonical_json(record) + "\n").encode("utf-8")


def append(store: JsonStore, *records: dict[str, Any]) -> None:
    with store.transaction() as txn:
        for record in records:
            txn.append_log(AUDIT_LOG, record)


def backward(store: JsonStore) -> list[dict[str, Any]]:
    return [entry.record for entry in store.scan_log(AUDIT_LOG)]


def forward(store: JsonStore) -> list[dict[str, Any]]:
    return [entry.record for entry in store.scan_log_forward(AUDIT_LOG)]


def test_files_are_the_documented_ones(jstore: JsonStore) -> None:
    assert jstore.describe() == f"json:{jstore.data_dir.resolve()}"
    with jstore.transaction() as txn:
        txn.write_document(CURRENT, None)
        txn.append_log(AUDIT_LOG, {"ts_utc": "t", "event": "e", "payload": {}})
    assert json.loads((jstore.data_dir / "go_session.json").read_text()) == {"session": None}
    assert (jstore.data_dir / "audit.log").read_bytes() == line(
        {"ts_utc": "t", "event": "e", "payload": {}}
    )
    # The data-dir formats of ARCHITECTURE.md, as the features declare them.
    assert {doc.name: doc.file for doc in SCHEMA.documents} == {
        "go_session": "go_session.json",
        "cone_state": "cone_state.json",
        "go_progress": "go_progress.json",
        "thresholds": "thresholds.json",
        "health_mark": "health_mark.json",
        "tokens": "tokens.json",
        "signin_codes": "signin_codes.json",
        "webhooks": "webhooks.json",
        "webhook_outbox": "webhook_outbox.json",
    }
    assert {log.name: log.file for log in SCHEMA.logs} == {
        "audit": "audit.log",
        "go_sessions": "go_session_history.jsonl",
        "cone_decisions": "cone_decisions.jsonl",
        "server_errors": "server_errors.jsonl",
    }


def test_an_existing_data_dir_opens_unchanged(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    session = b'{\n  "session": {"active": false, "notes": "old"}\n}\n'
    legacy = b'{"ts_utc": "2025-12-01T10:00:00.000000Z", "event": "X", "payload": {"a": 1}}\n'
    (data / "go_session.json").write_bytes(session)
    (data / "audit.log").write_bytes(legacy)
    store = open_json(data)
    assert store.read_document(CURRENT) == {"active": False, "notes": "old"}
    assert backward(store) == [json.loads(legacy)]
    assert (data / "go_session.json").read_bytes() == session
    assert (data / "audit.log").read_bytes() == legacy


# -- torn last line ----------------------------------------------------------

TORN = [b'{"ts_utc":"2026-01-01T09:00', b'{"n":99}', b"\xff\xfe garbage"]
TORN_IDS = ["cut-json", "whole-json-no-newline", "binary"]


def log_with_torn_tail(store: JsonStore, torn: bytes) -> tuple[Path, int]:
    append(store, {"n": 0}, {"n": 1}, {"n": 2})
    path = store.log_path(AUDIT_LOG)
    size = path.stat().st_size
    with open(path, "ab") as fh:
        fh.write(torn)
    return path, size


@pytest.mark.parametrize("torn", TORN, ids=TORN_IDS)
def test_scans_skip_a_torn_last_line_and_warn(
    jstore: JsonStore, torn: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    path, cut = log_with_torn_tail(jstore, torn)
    raw = path.read_bytes()
    with caplog.at_level(logging.WARNING, logger=BACKEND_LOGGER):
        assert backward(jstore) == [{"n": 2}, {"n": 1}, {"n": 0}]
    assert [r.getMessage() for r in caplog.records] == [
        f"{path}: ignoring an incomplete last line at byte {cut} (a write that never finished)"
    ]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=BACKEND_LOGGER):
        entries = list(jstore.scan_log_forward(AUDIT_LOG))
    assert [e.record for e in entries] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert entries[-1].cursor == str(cut)
    assert len(caplog.records) == 1
    assert f"at byte {cut}" in caplog.records[0].getMessage()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=BACKEND_LOGGER):
        assert [r for _t, r in bulk_pairs(jstore.scan_log_bulk(AUDIT_LOG))] == [
            {"n": 0},
            {"n": 1},
            {"n": 2},
        ]
    assert [f"at byte {cut}" in r.getMessage() for r in caplog.records] == [True]
    with jstore.transaction() as txn:
        assert txn.last_log_record(AUDIT_LOG) == {"n": 2}
    assert path.read_bytes() == raw  # reading never changes the file


@pytest.mark.parametrize("torn", TORN, ids=TORN_IDS)
def test_next_append_moves_a_torn_line_aside(
    jstore: JsonStore, torn: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    path, cut = log_with_torn_tail(jstore, torn)
    good = path.read_bytes()[:cut]
    with caplog.at_level(logging.WARNING, logger=BACKEND_LOGGER):
        append(jstore, {"n": 3})
    side = path.with_name(f"audit.log.torn-{cut}")
    assert side.read_bytes() == torn
    assert path.read_bytes() == good + line({"n": 3})
    assert forward(jstore) == [{"n": 0}, {"n": 1}, {"n": 2}, {"n": 3}]
    assert backward(jstore) == [{"n": 3}, {"n": 2}, {"n": 1}, {"n": 0}]
    assert any(str(side) in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=BACKEND_LOGGER):
        assert len(forward(jstore)) == 4
    assert caplog.records == []  # the log is clean again


def test_a_second_torn_line_at_the_same_offset_keeps_the_first(jstore: JsonStore) -> None:
    path, cut = log_with_torn_tail(jstore, b'{"first":')
    append(jstore, {"n": 3})
    # The append at `cut` tore as well (a second crash): cut it back by hand.
    os.truncate(path, cut)
    with open(path, "ab") as fh:
        fh.write(b'{"second":')
    append(jstore, {"n": 4})
    assert path.with_name(f"audit.log.torn-{cut}").read_bytes() == b'{"first":'
    assert path.with_name(f"audit.log.torn-{cut}.1").read_bytes() == b'{"second":'
    assert forward(jstore) == [{"n": 0}, {"n": 1}, {"n": 2}, {"n": 4}]


def test_blank_bytes_after_the_last_line_are_not_torn(jstore: JsonStore) -> None:
    append(jstore, {"n": 0})
    path = jstore.log_path(AUDIT_LOG)
    with open(path, "ab") as fh:
        fh.write(b"  ")
    assert backward(jstore) == [{"n": 0}]
    append(jstore, {"n": 1})
    assert forward(jstore) == [{"n": 0}, {"n": 1}]
    assert sorted(p.name for p in jstore.data_dir.iterdir() if "torn" in p.name) == []
    assert path.read_bytes().endswith(b"\n")


# -- corrupt lines ---------------------------------------------------------


@pytest.mark.parametrize("bad", [b"not json", b"[1, 2]", b'{"n": 1', b"\xff"])
def test_a_corrupt_line_inside_the_log_fails_the_scan_naming_the_file(
    jstore: JsonStore, bad: bytes
) -> None:
    append(jstore, {"n": 0})
    path = jstore.log_path(AUDIT_LOG)
    bad_at = path.stat().st_size
    with open(path, "ab") as fh:
        fh.write(bad + b"\n")
    append(jstore, {"n": 2})
    raw = path.read_bytes()

    newest_first = jstore.scan_log(AUDIT_LOG)
    assert next(newest_first).record == {"n": 2}
    with pytest.raises(StorageCorruptError) as info:
        next(newest_first)
    assert info.value.path == str(path)
    assert "audit.log" in str(info.value)
    assert f"byte {bad_at}" in str(info.value)

    oldest_first = jstore.scan_log_forward(AUDIT_LOG)
    assert next(oldest_first).record == {"n": 0}
    with pytest.raises(StorageCorruptError, match=r"audit\.log"):
        next(oldest_first)

    bulk = jstore.scan_log_bulk(AUDIT_LOG)
    # The records before the bad line first, in a run of their own.
    assert next(bulk) == ([b'{"n":0}'], [{"n": 0}])
    with pytest.raises(StorageCorruptError, match=rf"audit\.log.*byte {bad_at}\b"):
        next(bulk)
    assert path.read_bytes() == raw


def test_the_bulk_scan_reads_lines_as_the_other_scans_do(jstore: JsonStore) -> None:
    path = jstore.log_path(AUDIT_LOG)
    # Blank lines, spaces, a NaN (the standard library reads it, orjson does
    # not) and a line that is not canonical: each read as scan_log_forward reads it.
    path.write_bytes(b'{"n":0}\n\n   \n{ "n" : 1 }\n{"n":NaN}\n\t\n{"n":3}\n{"n":0}\n{"n":"torn')
    expected = [e.record for e in jstore.scan_log_forward(AUDIT_LOG)]
    got = bulk_pairs(jstore.scan_log_bulk(AUDIT_LOG))
    assert [text for text, _r in got] == [
        b'{"n":0}',
        b'{ "n" : 1 }',
        b'{"n":NaN}',
        b'{"n":3}',
        b'{"n":0}',
    ]
    assert repr([r for _t, r in got]) == repr(expected)  # NaN != NaN: compare spellings
    assert len(expected) == 5


def test_a_corrupt_complete_last_line_is_corrupt_not_torn(jstore: JsonStore) -> None:
    append(jstore, {"n": 0})
    path = jstore.log_path(AUDIT_LOG)
    with open(path, "ab") as fh:
        fh.write(b'{"n": \n')
    raw = path.read_bytes()
    with pytest.raises(StorageCorruptError, match=r"audit\.log"):
        backward(jstore)
    with pytest.raises(StorageCorruptError, match=r"audit\.log"):
        forward(jstore)
    with pytest.raises(StorageCorruptError), jstore.transaction() as txn:
        txn.last_log_record(AUDIT_LOG)
    assert path.read_bytes() == raw
    assert [p.name for p in jstore.data_dir.iterdir() if "torn" in p.name] == []


def test_a_corrupt_document_names_its_file(jstore: JsonStore) -> None:
    path = jstore.doc_path(CONE_STATE)
    path.write_bytes(b'{"band": ')
    with pytest.raises(StorageCorruptError) as info:
        jstore.read_document(CONE_STATE)
    assert info.value.path == str(path)
    with pytest.raises(StorageCorruptError), jstore.transaction() as txn:
        txn.read_document(CONE_STATE)
    assert path.read_bytes() == b'{"band": '


# -- byte-offset cursors ---------------------------------------------------


def test_cursors_that_split_a_line_or_pass_the_end_are_refused(jstore: JsonStore) -> None:
    append(jstore, {"n": 0}, {"n": 1}, {"n": 2})
    path = jstore.log_path(AUDIT_LOG)
    size = path.stat().st_size
    starts = [int(e.cursor) for e in jstore.scan_log(AUDIT_LOG)]
    assert starts == [16, 8, 0]
    assert [e.cursor for e in jstore.scan_log_forward(AUDIT_LOG)] == ["8", "16", "24"]
    for cursor in ["1", "7", "9", "23", str(size + 1), "99999999999"]:
        with pytest.raises(InvalidCursorError):
            list(jstore.scan_log(AUDIT_LOG, before=cursor))
        with pytest.raises(InvalidCursorError):
            list(jstore.scan_log_forward(AUDIT_LOG, after=cursor))
    for cursor in ["0", "8", "16", str(size)]:
        list(jstore.scan_log(AUDIT_LOG, before=cursor))
        list(jstore.scan_log_forward(AUDIT_LOG, after=cursor))


def test_a_cursor_into_a_missing_log_is_refused(jstore: JsonStore) -> None:
    assert list(jstore.scan_log(AUDIT_LOG, before="0")) == []
    with pytest.raises(InvalidCursorError):
        list(jstore.scan_log(AUDIT_LOG, before="40"))


# -- probe -----------------------------------------------------------------


def test_probe_is_empty_when_healthy(jstore: JsonStore) -> None:
    with jstore.transaction() as txn:
        txn.write_document(CONE_STATE, {"band": "B"})
    assert jstore.probe() == []
    assert sorted(p.name for p in jstore.data_dir.iterdir()) == [
        ".valhalla.lock",
        "cone_state.json",
    ]


@pytest.mark.parametrize("doc", SCHEMA.documents, ids=lambda doc: doc.name)
def test_probe_names_a_corrupt_document(jstore: JsonStore, doc: Document) -> None:
    path = jstore.doc_path(doc)
    path.write_bytes(b"{ nope")
    problems = jstore.probe()
    assert len(problems) == 1
    assert doc.file in problems[0]
    assert "does not parse" in problems[0]
    assert path.read_bytes() == b"{ nope"


def test_concurrent_probes_do_not_trip_over_each_other(jstore: JsonStore) -> None:
    problems: list[str] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            for _ in range(150):
                problems.extend(jstore.probe())
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert problems == []


def test_probe_reports_a_data_dir_without_write_permission(tmp_path: Path) -> None:
    store = open_json(tmp_path / "data")
    with unwritable(store.data_dir):
        problems = store.probe()
    assert len(problems) == 1
    assert str(store.data_dir) in problems[0]
    assert "not writable" in problems[0]


def test_read_only_data_dir_is_reported_and_writes_fail_cleanly(tiny_fs: Path) -> None:
    store = open_json(tiny_fs / "data")
    with store.transaction() as txn:
        txn.write_document(CONE_STATE, {"band": "B"})
        txn.append_log(AUDIT_LOG, {"n": 0})
    doc_before = store.doc_path(CONE_STATE).read_bytes()
    log_before = store.log_path(AUDIT_LOG).read_bytes()
    remount_read_only(tiny_fs)

    problems = store.probe()
    assert len(problems) == 1
    assert str(store.data_dir) in problems[0]
    assert "not writable" in problems[0]
    # Refused with a 503-class error naming a file in the data dir (the lock
    # file or the document, whichever the file system refuses first).
    with pytest.raises(StorageUnavailableError) as info, store.transaction() as txn:
        txn.write_document(CONE_STATE, {"band": "D"})
    assert info.value.path.startswith(str(store.data_dir))
    with pytest.raises(StorageUnavailableError), store.transaction() as txn:
        txn.append_log(AUDIT_LOG, {"n": 1})
    assert store.read_document(CONE_STATE) == {"band": "B"}
    assert store.doc_path(CONE_STATE).read_bytes() == doc_before
    assert store.log_path(AUDIT_LOG).read_bytes() == log_before


def test_a_reading_scope_reads_each_file_once_and_a_write_inside_it_reads_afresh(
    jstore: JsonStore, tmp_path: Path
) -> None:
    other = open_json(jstore.data_dir)  # another worker on the same data dir
    with other.transaction() as txn:
        txn.write_document(CONE_STATE, {"band": "A"})
    opened: list[str] = []
    real_read = json_store.read_bytes

    def counting(path: Path) -> bytes | None:
        opened.append(path.name)
        return real_read(path)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(json_store, "read_bytes", counting)
        with jstore.reading():
            assert jstore.read_document(CONE_STATE) == {"band": "A"}
            with other.transaction() as txn:
                txn.write_document(CONE_STATE, {"band": "C"})
            opened.clear()
            # One consistent view for the scope: the file as first read, not read again.
            assert jstore.read_document(CONE_STATE) == {"band": "A"}
            assert opened == []
            with jstore.transaction() as txn:  # this thread writes: afresh after it
                txn.write_document(CURRENT, {"active": False})
            assert jstore.read_document(CONE_STATE) == {"band": "C"}
        assert jstore.read_document(CONE_STATE) == {"band": "C"}
