"""Store.read_cached: reuses a parsed document only while it is unchanged,
whoever changed it (another worker, another replica, SQL outside Valhalla)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy

from tests.conftest import make_store
from valhalla_gov.compose import SCHEMA
from valhalla_gov.cone.store import CONE_STATE
from valhalla_gov.storage.errors import StorageCorruptError
from valhalla_gov.storage.protocol import Store
from valhalla_gov.storage.sql_backend import SqlStore

_SOME_LOG = next(log for log in SCHEMA.logs if log.sql is None)


class CountingParser:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, raw: Any | None) -> dict[str, Any]:
        self.calls += 1
        return {"parsed": raw}


def test_a_changed_document_is_parsed_again_even_at_the_same_size(store: Store) -> None:
    parse = CountingParser()
    assert store.read_cached(CONE_STATE, parse) == {"parsed": None}
    for band in ("A", "B", "A", "C"):  # same length every time, written back to back
        with store.transaction() as txn:
            txn.write_document(CONE_STATE, {"band": band})
        assert store.read_cached(CONE_STATE, parse) == {"parsed": {"band": band}}
    calls = parse.calls
    first = store.read_cached(CONE_STATE, parse)
    second = store.read_cached(CONE_STATE, parse)
    assert first == second == {"parsed": {"band": "C"}}
    assert parse.calls == calls
    assert first is second


def test_another_process_writing_is_seen_at_once(store: Store, tmp_path: Path) -> None:
    # A second store object on the same data stands for another worker or replica.
    writer = make_store(_backend(store), tmp_path)
    parse = CountingParser()
    assert store.read_cached(CONE_STATE, parse) == {"parsed": None}
    for band in ("D", "A", "D"):
        with writer.transaction() as txn:
            txn.write_document(CONE_STATE, {"band": band})
        assert store.read_cached(CONE_STATE, parse) == {"parsed": {"band": band}}
        assert store.read_document(CONE_STATE) == {"band": band}


# The generation cache is the SQL backends' (JSON reads are keyed on the bytes).
SQL_ONLY = pytest.mark.parametrize("store", ["sqlite", "postgres"], indirect=True)


@SQL_ONLY
def test_any_write_anywhere_empties_the_cache_and_nothing_else_does(
    store: Store, tmp_path: Path
) -> None:
    writer = make_store(_backend(store), tmp_path)
    parse = CountingParser()
    with writer.transaction() as txn:
        txn.write_document(CONE_STATE, {"band": "B"})
    for _ in range(3):  # no write between: parsed once
        assert store.read_cached(CONE_STATE, parse) == {"parsed": {"band": "B"}}
    assert parse.calls == 1
    for who in (store, writer):  # its own write, another replica's: parsed again
        with who.transaction() as txn:
            txn.append_log(_SOME_LOG, {"event": "X"})
        assert store.read_cached(CONE_STATE, parse) == {"parsed": {"band": "B"}}
    assert parse.calls == 3


@SQL_ONLY
def test_cached_reads_in_a_reading_scope_share_one_generation_query(store: Store) -> None:
    assert isinstance(store, SqlStore)
    parse = CountingParser()
    store.read_cached(CONE_STATE, parse)  # cached
    sent: list[str] = []
    sqlalchemy.event.listen(
        store.engine, "before_cursor_execute", lambda *a: sent.append(str(a[2]))
    )
    with store.reading():
        for _ in range(3):
            store.read_cached(CONE_STATE, parse)
    queries = [s for s in sent if s != "BEGIN"]  # SQLite's driver-level BEGIN
    assert len(queries) == 1
    assert "store_generation" in queries[0]
    assert parse.calls == 1


@SQL_ONLY
def test_sql_edits_outside_valhalla_are_seen_once_they_bump_the_generation(
    store: Store,
) -> None:
    assert isinstance(store, SqlStore)
    parse = CountingParser()
    with store.transaction() as txn:
        txn.write_document(CONE_STATE, {"band": "B"})
    assert store.read_cached(CONE_STATE, parse) == {"parsed": {"band": "B"}}
    with store.engine.begin() as conn:
        conn.execute(
            sqlalchemy.text("UPDATE documents SET body = :b WHERE name = :n"),
            {"b": '{"band":"D"}', "n": CONE_STATE.name},
        )
        conn.execute(sqlalchemy.text("UPDATE store_generation SET n = n + 1"))
    assert store.read_cached(CONE_STATE, parse) == {"parsed": {"band": "D"}}


def _backend(store: Store) -> str:
    if isinstance(store, SqlStore):
        return "sqlite" if store.engine.dialect.name == "sqlite" else "postgres"
    return "json"


@SQL_ONLY
def test_a_missing_generation_row_refuses_writes_and_names_the_repair(store: Store) -> None:
    assert isinstance(store, SqlStore)
    with store.engine.begin() as conn:
        conn.execute(sqlalchemy.text("DELETE FROM store_generation"))
    with (
        pytest.raises(StorageCorruptError, match="INSERT INTO store_generation"),
        store.transaction() as txn,
    ):
        txn.write_document(CONE_STATE, {"band": "A"})
    assert store.read_document(CONE_STATE) is None  # nothing was written, reads still work
    with store.engine.begin() as conn:
        conn.execute(sqlalchemy.text("INSERT INTO store_generation (id, n) VALUES (1, 0)"))
    with store.transaction() as txn:
        txn.write_document(CONE_STATE, {"band": "A"})
    assert store.read_document(CONE_STATE) == {"band": "A"}


@SQL_ONLY
def test_a_written_value_its_parser_refuses_commits_and_the_next_read_reports_it(
    store: Store,
) -> None:
    def parse(raw: Any | None) -> dict[str, Any]:
        if raw is not None and raw.get("band") == "X":
            raise StorageCorruptError("cone_state", "band X is not a band")
        return {"parsed": raw}

    assert store.read_cached(CONE_STATE, parse) == {"parsed": None}  # a parsed entry to refresh
    with store.transaction() as txn:
        txn.write_document(CONE_STATE, {"band": "X"})  # commits, whatever the parser says
    assert store.read_document(CONE_STATE) == {"band": "X"}
    with pytest.raises(StorageCorruptError, match="band X"):
        store.read_cached(CONE_STATE, parse)
    with store.transaction() as txn:
        txn.write_document(CONE_STATE, {"band": "B"})
    assert store.read_cached(CONE_STATE, parse) == {"parsed": {"band": "B"}}
