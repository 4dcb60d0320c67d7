"""A walk in parts (audit/parts.py) answers exactly what one walk answers.

Each test builds a chain of 60 events, walks it with 4 processes (the log is
cut into 4 parts of about 15 lines: MIN_PART_LINES is lowered) and compares
the whole answer with the walk in one process, on every backend. A tamper in
any part, at its first or last line, or a link broken exactly between two
parts (each part valid by itself), must fail at the same seq with the same
message: a part a worker skipped, or a link between parts left unchecked,
would make these pass.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.audit.helpers import LEGACY_LINES, synthetic_chain
from tests.audit.test_tamper import rewrite
from tests.conftest import make_store
from valhalla_gov.audit import parts
from valhalla_gov.audit.models import AuditVerifyResult
from valhalla_gov.audit.service import Anchor, chain_hash, check_part, verify_chain
from valhalla_gov.audit.store import AUDIT_LOG
from valhalla_gov.storage.protocol import Store

Records = list[dict[str, Any]]
COUNT = 60
WORKERS = 4


@pytest.fixture(autouse=True)
def small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parts, "MIN_PART_LINES", 1)


def _backend(request: pytest.FixtureRequest) -> str:
    return str(request.node.callspec.params["store"])


def _records() -> Records:
    return [json.loads(line) for line in synthetic_chain(COUNT)]


def _stored(request: pytest.FixtureRequest, tmp_path: Path, records: Records) -> Store:
    backend = _backend(request)
    rewrite(backend, tmp_path, records)
    return make_store(backend, tmp_path)


def _both(
    request: pytest.FixtureRequest, tmp_path: Path, store: Store, anchor: Anchor | None = None
) -> tuple[AuditVerifyResult, AuditVerifyResult]:
    """The answer in parts and the answer of one walk."""
    backend = _backend(request)
    workers = parts.Workers(WORKERS, lambda: make_store(backend, tmp_path))
    assert len(store.split_log(AUDIT_LOG, WORKERS, min_part=1)) == WORKERS - 1
    return (
        verify_chain(store=store, anchor=anchor, workers=workers),
        verify_chain(store=store, anchor=anchor),
    )


def _part_starts(store: Store) -> list[int]:
    """The index of each part's first record (the first part's is 0)."""
    cuts = store.split_log(AUDIT_LOG, WORKERS, min_part=1)
    return [
        0,
        *(sum(len(t) for t, _r in store.scan_log_bulk(AUDIT_LOG, until=cut)) for cut in cuts),
    ]


def _edit(records: Records, index: int) -> Records:
    # The same length: the parts stay where they were.
    out = copy.deepcopy(records)
    out[index]["actor"] = "BULK"
    return out


def _rechain(records: Records, index: int) -> Records:
    """From ``index`` on, a chain valid by itself that does not link to the
    line before: every hash in every part holds, the link at ``index`` does not."""
    out = copy.deepcopy(records)
    prev = "f" * 64
    for record in out[index:]:
        record["prev"] = prev
        body = {k: v for k, v in record.items() if k != "hash"}
        record["hash"] = prev = chain_hash(prev, body)
    return out


def test_a_clean_log_in_parts_is_the_clean_log(
    request: pytest.FixtureRequest, store: Store, tmp_path: Path
) -> None:
    store = _stored(request, tmp_path, _records())
    starts = _part_starts(store)
    assert starts == sorted(set(starts)), starts
    assert len(starts) == WORKERS, starts
    in_parts, whole = _both(request, tmp_path, store)
    assert in_parts == whole
    assert whole.ok
    assert whole.events == COUNT
    assert whole.head_seq == COUNT


@pytest.mark.parametrize("where", ["first", "last"])
@pytest.mark.parametrize("part", range(WORKERS))
def test_an_edit_in_any_part_fails_as_one_walk_does(
    request: pytest.FixtureRequest, store: Store, tmp_path: Path, part: int, where: str
) -> None:
    records = _records()
    starts = _part_starts(_stored(request, tmp_path, records))
    ends = [*starts[1:], COUNT]
    index = starts[part] if where == "first" else ends[part] - 1
    store = _stored(request, tmp_path, _edit(records, index))
    assert _part_starts(store) == starts
    in_parts, whole = _both(request, tmp_path, store)
    assert in_parts == whole
    assert not whole.ok, whole
    assert whole.first_bad_seq == index + 1, whole
    assert whole.events == index


@pytest.mark.parametrize("part", range(1, WORKERS))
def test_a_link_broken_between_two_parts_fails_as_one_walk_does(
    request: pytest.FixtureRequest, store: Store, tmp_path: Path, part: int
) -> None:
    records = _records()
    starts = _part_starts(_stored(request, tmp_path, records))
    store = _stored(request, tmp_path, _rechain(records, starts[part]))
    assert _part_starts(store) == starts
    in_parts, whole = _both(request, tmp_path, store)
    assert in_parts == whole
    assert not whole.ok, whole
    assert whole.first_bad_seq == starts[part] + 1, whole
    assert "expected seq" in str(whole.detail)


TAMPERS: dict[str, Callable[[Records, int], Records]] = {
    "delete": lambda r, i: [*r[:i], *r[i + 1 :]],
    "reorder": lambda r, i: [*r[: i - 1], r[i], r[i - 1], *r[i + 1 :]],
    "duplicate": lambda r, i: [*r[:i], r[i - 1], *r[i:]],
}


@pytest.mark.parametrize("tamper", list(TAMPERS))
def test_a_line_dropped_moved_or_repeated_at_a_boundary_fails_as_one_walk_does(
    request: pytest.FixtureRequest, store: Store, tmp_path: Path, tamper: str
) -> None:
    records = _records()
    index = _part_starts(_stored(request, tmp_path, records))[2]
    store = _stored(request, tmp_path, TAMPERS[tamper](records, index))
    in_parts, whole = _both(request, tmp_path, store)
    assert in_parts == whole
    assert not whole.ok, whole
    assert whole.first_bad_seq in (index, index + 1), whole


def test_an_anchor_in_a_later_part_is_found_or_refused_as_one_walk_does(
    request: pytest.FixtureRequest, store: Store, tmp_path: Path
) -> None:
    records = _records()
    store = _stored(request, tmp_path, records)
    seq = _part_starts(store)[2] + 3
    held = Anchor(seq, records[seq - 1]["hash"])
    in_parts, whole = _both(request, tmp_path, store, held)
    assert in_parts == whole
    assert whole.ok
    assert whole.anchored
    other = Anchor(seq, "0" * 64)
    in_parts, whole = _both(request, tmp_path, store, other)
    assert in_parts == whole
    assert not whole.ok
    assert whole.first_bad_seq == seq


@pytest.mark.parametrize("store", ["json"], indirect=True)
def test_legacy_lines_and_a_corrupt_line_in_a_middle_part_as_one_walk_does(
    request: pytest.FixtureRequest, store: Store, tmp_path: Path
) -> None:
    log = tmp_path / "data" / "audit.log"
    chain = synthetic_chain(COUNT)
    log.write_bytes(b"".join(line + b"\n" for line in [*LEGACY_LINES, *chain]))
    store = make_store("json", tmp_path)
    in_parts, whole = _both(request, tmp_path, store)
    assert in_parts == whole
    assert whole.ok
    assert whole.legacy_events == len(LEGACY_LINES)
    assert whole.events == COUNT
    index = _part_starts(store)[2] + 2
    lines = [*LEGACY_LINES, *chain]
    lines[index] = b"{not json" + b" " * (len(lines[index]) - 9)
    log.write_bytes(b"".join(line + b"\n" for line in lines))
    in_parts, whole = _both(request, tmp_path, store)
    assert in_parts == whole
    assert not whole.ok, whole
    assert whole.first_bad_seq == index - len(LEGACY_LINES) + 1, whole
    assert "audit.log" in str(whole.detail)


def test_a_part_that_is_not_clean_is_reported_by_its_worker(
    request: pytest.FixtureRequest, store: Store, tmp_path: Path
) -> None:
    """What the join relies on: a worker never calls a part with a bad line clean."""
    records = _records()
    store = _stored(request, tmp_path, records)
    starts = _part_starts(store)
    cuts = store.split_log(AUDIT_LOG, WORKERS, min_part=1)
    clean = check_part(store, cuts[0], cuts[1], None)
    assert isinstance(clean, parts.PartResult)
    assert (clean.first_seq, clean.last_seq) == (starts[1] + 1, starts[2])
    assert clean.first_prev == records[starts[1] - 1]["hash"]
    assert clean.last_hash == records[starts[2] - 1]["hash"]
    store = _stored(request, tmp_path, _edit(records, starts[2] - 1))
    cuts = store.split_log(AUDIT_LOG, WORKERS, min_part=1)  # new row ids on SQL
    assert _part_starts(store) == starts
    assert isinstance(check_part(store, cuts[0], cuts[1], None), str)


@pytest.mark.parametrize("store", ["json"], indirect=True)
def test_a_log_rewritten_shorter_under_the_parts_is_walked_whole(
    request: pytest.FixtureRequest, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _stored(request, tmp_path, _records())
    # A boundary the log no longer has (it was cut after the split).
    monkeypatch.setattr(type(store), "split_log", lambda *_a, **_k: ["999999"])
    workers = parts.Workers(WORKERS, lambda: make_store("json", tmp_path))
    result = verify_chain(store=store, workers=workers)
    assert result == verify_chain(store=store)
    assert result.ok
    assert result.events == COUNT
