"""The store protocol, run against every backend: documents, logs, cursor
scans and transactions."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from typing import Any

import pytest

from tests.storage.helpers import bulk_pairs
from valhalla_gov.audit.store import AUDIT_LOG
from valhalla_gov.compose import SCHEMA
from valhalla_gov.cone.store import CONE_STATE, DECISIONS
from valhalla_gov.go.store import PROGRESS
from valhalla_gov.health.store import THRESHOLDS
from valhalla_gov.storage import json_store, sql_backend
from valhalla_gov.storage.encoding import loads
from valhalla_gov.storage.errors import InvalidCursorError
from valhalla_gov.storage.protocol import Log, Store

CHUNK = 64 * 1024


def append(store: Store, log: Log, *records: dict[str, Any]) -> None:
    with store.transaction() as txn:
        for record in records:
            txn.append_log(log, record)


def backward(store: Store, log: Log = AUDIT_LOG) -> list[dict[str, Any]]:
    return [entry.record for entry in store.scan_log(log)]


def forward(store: Store, log: Log = AUDIT_LOG) -> list[dict[str, Any]]:
    return [entry.record for entry in store.scan_log_forward(log)]


def padded(n: int) -> dict[str, Any]:
    """Records from a few bytes to well over one 64 KiB read chunk."""
    sizes = [0, 5, CHUNK - 40, 17, CHUNK + 3, 2 * CHUNK + 11, 900, CHUNK // 2]
    return {"n": n, "pad": "p" * sizes[n % len(sizes)]}


# -- documents -------------------------------------------------------------


def test_documents_start_missing(store: Store) -> None:
    assert [store.read_document(name) for name in SCHEMA.documents] == [None] * len(
        SCHEMA.documents
    )


@pytest.mark.parametrize(
    "doc",
    [
        {"session": None},
        {"band": "C", "nested": {"list": [1, 2.5, "ß✓", None, False]}},
        [1, "two", {"three": 3}],
        "just a string",
    ],
)
def test_document_round_trip(store: Store, doc: Any) -> None:
    with store.transaction() as txn:
        txn.write_document(CONE_STATE, doc)
        assert txn.read_document(CONE_STATE) == doc
    assert store.read_document(CONE_STATE) == doc


def test_documents_are_separate_and_replaced_whole(store: Store) -> None:
    # go_session is left out: a backend may keep it as a view over the
    # session history rather than as a plain document.
    with store.transaction() as txn:
        txn.write_document(CONE_STATE, {"band": "B", "old": True})
        txn.write_document(THRESHOLDS, {"deny_rate": 0.5})
    with store.transaction() as txn:
        txn.write_document(CONE_STATE, {"band": "A"})
    assert store.read_document(CONE_STATE) == {"band": "A"}
    assert store.read_document(THRESHOLDS) == {"deny_rate": 0.5}
    assert store.read_document(PROGRESS) is None


def test_data_survives_reopening(store: Store, reopen: Callable[[], Store]) -> None:
    with store.transaction() as txn:
        txn.write_document(PROGRESS, {"progress": {"s1": {"done": True, "notes": None}}})
        txn.append_log(AUDIT_LOG, {"n": 1})
        txn.append_log(AUDIT_LOG, {"n": 2})
    again = reopen()
    assert again.read_document(PROGRESS) == {"progress": {"s1": {"done": True, "notes": None}}}
    assert backward(again) == [{"n": 2}, {"n": 1}]


# -- logs ------------------------------------------------------------------


def test_empty_logs_scan_empty(store: Store) -> None:
    for log in SCHEMA.logs:
        assert backward(store, log) == []
        assert forward(store, log) == []
    with store.transaction() as txn:
        assert txn.last_log_record(AUDIT_LOG) is None


def test_log_order_and_round_trip(store: Store) -> None:
    records = [
        {"n": 0, "text": "plain"},
        {"n": 1, "text": 'Grüße ✓ \u2028 line\nbreak "quoted" \\ slash', "x": [1.5, None]},
        {"n": 2, "nested": {"b": {"c": [True, False]}}},
    ]
    append(store, AUDIT_LOG, *records)
    assert forward(store) == records
    assert backward(store) == records[::-1]
    with store.transaction() as txn:
        assert txn.last_log_record(AUDIT_LOG) == records[-1]


def test_logs_are_separate(store: Store) -> None:
    append(store, AUDIT_LOG, {"log": "audit"})
    append(store, DECISIONS, {"log": "decisions"})
    assert backward(store, AUDIT_LOG) == [{"log": "audit"}]
    assert backward(store, DECISIONS) == [{"log": "decisions"}]


def test_last_log_record_sees_appends_in_the_same_transaction(store: Store) -> None:
    with store.transaction() as txn:
        txn.append_log(AUDIT_LOG, {"n": 1})
        assert txn.last_log_record(AUDIT_LOG) == {"n": 1}
        txn.append_log(AUDIT_LOG, {"n": 2})
        assert txn.last_log_record(AUDIT_LOG) == {"n": 2}


@pytest.mark.parametrize("page", [1, 3, 7, 50])
def test_backward_cursor_pages_cover_every_record_once(store: Store, page: int) -> None:
    records = [padded(n) for n in range(24)]
    append(store, AUDIT_LOG, *records)
    seen: list[int] = []
    cursor: str | None = None
    for _ in range(100):
        batch = list(itertools.islice(store.scan_log(AUDIT_LOG, before=cursor), page))
        if not batch:
            break
        seen.extend(entry.record["n"] for entry in batch)
        assert [entry.record for entry in batch] == [records[n] for n in seen[-len(batch) :]]
        cursor = batch[-1].cursor
    assert seen == list(range(23, -1, -1))


@pytest.mark.parametrize("page", [1, 3, 7, 50])
def test_forward_cursor_pages_cover_every_record_once(store: Store, page: int) -> None:
    records = [padded(n) for n in range(24)]
    append(store, AUDIT_LOG, *records)
    seen: list[int] = []
    cursor: str | None = None
    for _ in range(100):
        batch = list(itertools.islice(store.scan_log_forward(AUDIT_LOG, after=cursor), page))
        if not batch:
            break
        seen.extend(entry.record["n"] for entry in batch)
        assert [entry.record for entry in batch] == [records[n] for n in seen[-len(batch) :]]
        cursor = batch[-1].cursor
    assert seen == list(range(24))


def test_every_cursor_resumes_just_past_its_record(store: Store) -> None:
    records = [padded(n) for n in range(16)]
    append(store, AUDIT_LOG, *records)
    newest_first = list(store.scan_log(AUDIT_LOG))
    for index, entry in enumerate(newest_first):
        rest = [e.record["n"] for e in store.scan_log(AUDIT_LOG, before=entry.cursor)]
        assert rest == [e.record["n"] for e in newest_first[index + 1 :]]
    oldest_first = list(store.scan_log_forward(AUDIT_LOG))
    for index, entry in enumerate(oldest_first):
        rest = [e.record["n"] for e in store.scan_log_forward(AUDIT_LOG, after=entry.cursor)]
        assert rest == [e.record["n"] for e in oldest_first[index + 1 :]]


def test_backward_cursor_is_stable_while_the_log_grows(store: Store) -> None:
    append(store, AUDIT_LOG, *[padded(n) for n in range(6)])
    first = list(itertools.islice(store.scan_log(AUDIT_LOG), 2))
    append(store, AUDIT_LOG, *[padded(n) for n in range(100, 104)])
    rest = [e.record["n"] for e in store.scan_log(AUDIT_LOG, before=first[-1].cursor)]
    assert [e.record["n"] for e in first] == [5, 4]
    assert rest == [3, 2, 1, 0]


def test_forward_cursor_picks_up_later_appends(store: Store) -> None:
    append(store, AUDIT_LOG, *[padded(n) for n in range(3)])
    entries = list(store.scan_log_forward(AUDIT_LOG))
    end = entries[-1].cursor
    assert list(store.scan_log_forward(AUDIT_LOG, after=end)) == []
    append(store, AUDIT_LOG, padded(3), padded(4))
    later = list(store.scan_log_forward(AUDIT_LOG, after=end))
    assert [e.record["n"] for e in later] == [3, 4]
    assert list(store.scan_log_forward(AUDIT_LOG, after=later[-1].cursor)) == []


def test_scan_log_filters_on_the_kind_field(store: Store) -> None:
    field = "event"
    assert AUDIT_LOG.kind_field == field
    append(store, AUDIT_LOG, *[{field: "a" if n % 3 == 0 else "b", "n": n} for n in range(10)])
    assert [e.record["n"] for e in store.scan_log(AUDIT_LOG, kind="a")] == [9, 6, 3, 0]
    first = list(itertools.islice(store.scan_log(AUDIT_LOG, kind="a"), 2))
    rest = store.scan_log(AUDIT_LOG, before=first[-1].cursor, kind="a")
    assert [e.record["n"] for e in rest] == [3, 0]
    assert list(store.scan_log(AUDIT_LOG, kind="none-such")) == []


@pytest.mark.parametrize("cursor", ["abc", "-1", "", "1.5", "²", "\u0661", " 8", "0x10", "8 "])
def test_invalid_cursor_is_refused(store: Store, cursor: str) -> None:
    append(store, AUDIT_LOG, {"n": 1}, {"n": 2})
    with pytest.raises(InvalidCursorError):
        list(store.scan_log(AUDIT_LOG, before=cursor))
    with pytest.raises(InvalidCursorError):
        list(store.scan_log_forward(AUDIT_LOG, after=cursor))


# -- transactions ----------------------------------------------------------


def increment(store: Store) -> None:
    with store.transaction() as txn:
        doc = txn.read_document(PROGRESS) or {"count": 0}
        txn.write_document(PROGRESS, {"count": doc["count"] + 1})


def test_transactions_exclude_each_other_across_threads_and_store_objects(
    store: Store, reopen: Callable[[], Store]
) -> None:
    # Half the threads use a second store object on the same data, as a
    # second worker or the CLI would: its lock must exclude this one's too.
    other = reopen()
    errors: list[BaseException] = []

    def work(target: Store) -> None:
        try:
            for _ in range(12):
                increment(target)
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s,)) for s in [store, other] * 4]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert store.read_document(PROGRESS) == {"count": 96}


def test_an_error_inside_a_transaction_releases_it(store: Store) -> None:
    with pytest.raises(RuntimeError, match="boom"), store.transaction():
        raise RuntimeError("boom")
    finished = threading.Event()

    def other_thread() -> None:
        increment(store)
        finished.set()

    thread = threading.Thread(target=other_thread, daemon=True)
    thread.start()
    assert finished.wait(10), "the transaction lock was not released after an error"
    assert store.read_document(PROGRESS) == {"count": 1}


# -- bulk scans --------------------------------------------------------------


def bulk(store: Store, log: Log = AUDIT_LOG) -> list[dict[str, Any]]:
    return [record for _text, record in bulk_pairs(store.scan_log_bulk(log))]


def test_bulk_scan_reads_what_the_forward_scan_reads(store: Store) -> None:
    records = [padded(n) for n in range(40)]
    records[3] = {"n": 3, "text": 'Grüße ✓ \u2028 "quoted" \\ slash', "x": [1.5, None, 1e-7]}
    records[5] = {"n": 5, "big": 2**70, "small": -(2**63)}
    append(store, AUDIT_LOG, *records)
    append(store, DECISIONS, {"other": "log"})
    pairs = bulk_pairs(store.scan_log_bulk(AUDIT_LOG))
    assert len(pairs) == len(records) == len(forward(store))
    for (text, record), expected in zip(pairs, records, strict=True):
        # The text parses exactly to the record; the fast parse may only
        # differ on integers past 64 bits.
        assert loads(text) == expected
        if expected["n"] != 5:
            assert record == expected
    assert bulk(store, DECISIONS) == [{"other": "log"}]


def test_bulk_scan_across_many_blocks_and_batches(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tiny blocks and batches, so records straddle every boundary.
    monkeypatch.setattr(json_store, "_BULK_BLOCK", 97)
    monkeypatch.setattr(sql_backend, "_BULK_BATCH", 7)
    records = [{"n": n, "pad": "x" * (n * 13 % 150)} for n in range(60)]
    append(store, AUDIT_LOG, *records)
    assert bulk(store) == records
    with store.transaction() as txn:
        txn.append_log(AUDIT_LOG, {"n": 60})
        # Inside a transaction the bulk scan sees its own appends.
        assert bulk(store)[-1] == {"n": 60}
