"""Store.read_cached: reuses a parsed document only while it is unchanged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from valhalla_gov.compose import open_json
from valhalla_gov.cone.store import CONE_STATE
from valhalla_gov.storage.protocol import Store


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
    if store.blocking:
        # A database may be written by another replica: it is always read.
        assert parse.calls == calls + 2
    else:
        assert parse.calls == calls
        assert first is second


def test_another_process_writing_is_seen_at_once(tmp_path: Path) -> None:
    # Two JsonStore objects on one dir stand for two worker processes.
    reader, writer = open_json(tmp_path / "data"), open_json(tmp_path / "data")
    parse = CountingParser()
    assert reader.read_cached(CONE_STATE, parse) == {"parsed": None}
    with writer.transaction() as txn:
        txn.write_document(CONE_STATE, {"band": "D"})
    assert reader.read_cached(CONE_STATE, parse) == {"parsed": {"band": "D"}}
