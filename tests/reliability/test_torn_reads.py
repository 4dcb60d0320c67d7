"""Reads racing an append (found by the soak).

Readers take no lock: a GET may scan a log while another request (another
thread or worker) appends to it. ``write(2)`` to a file is not atomic for a
reader: the file grows as the line is copied in, so a reader can read a
line's first part only. That unfinished last line was never acknowledged and
must be skipped, as a torn tail is; but the JSON backend decides "torn" by
looking at the file *again* (``JsonStore._is_torn_tail``: size and last byte
now), and by then the append has finished: the half line it read is parsed,
and the read fails with StorageCorruptError (HTTP 503 "does not parse as
JSON"), or /core/audit/verify reports a broken chain.

The reproduction is deterministic: the file iterator is wrapped so that the
append finishes right after the reader has read the half line.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.audit.helpers import record_event
from valhalla_gov.audit.service import chain_hash, verify_chain
from valhalla_gov.audit.store import AUDIT_LOG
from valhalla_gov.compose import open_json
from valhalla_gov.go.session_store import HISTORY
from valhalla_gov.storage import encoding, json_store
from valhalla_gov.storage.json_backend import JsonStore
from valhalla_gov.storage.protocol import Log
from valhalla_gov.timeutil import utc_now

pytestmark = [pytest.mark.reliability]

Iterate = Callable[..., Iterator[Any]]


class FinishTheAppend:
    """``real`` (a json_store line iterator, whatever it yields), except that
    the rest of the unfinished line lands on disk as soon as the reader has
    read the unfinished part. ``calls`` proves the reader went through it."""

    def __init__(self, real: Iterate, path: Path, rest: bytes, *, at_end: bool) -> None:
        self.real, self.path, self.rest, self.at_end = real, path, rest, at_end
        self.calls = 0

    def _finish(self) -> None:
        with open(self.path, "ab") as fh:
            fh.write(self.rest)
        self.rest = b""

    def __call__(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        self.calls += 1
        items = self.real(*args, **kwargs)
        if self.at_end:  # forward: the half line is the last item read
            read = list(items)
            self._finish()
            yield from read
            return
        first = next(items, None)  # backward: the half line is the first item read
        self._finish()
        if first is not None:
            yield first
        yield from items


def _half_appended(store: JsonStore, log: Log, record: dict[str, Any]) -> tuple[Path, bytes]:
    """Write the first half of ``record``'s line, as an append in progress
    has; return the path and the half still to come."""
    path = store.log_path(log)
    line = (encoding.canonical_json(record) + "\n").encode()
    with open(path, "ab") as fh:
        fh.write(line[: len(line) // 2])
    return path, line[len(line) // 2 :]


def backward_read_races_an_append(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Scan the session history newest first while an ended session is being
    appended; returns the ids read (raises while the bug is there)."""
    store = open_json(tmp_path / "backward")
    with store.transaction() as txn:
        txn.append_log(HISTORY, {"id": "A", "active": False, "pad": "a" * 100})
    path, rest = _half_appended(store, HISTORY, {"id": "B", "active": False, "pad": "b" * 6000})
    racing = FinishTheAppend(json_store.iter_lines_backward, path, rest, at_end=False)
    with monkeypatch.context() as patch:
        patch.setattr(json_store, "iter_lines_backward", racing)
        ids = [entry.record["id"] for entry in store.scan_log(HISTORY)]
    assert racing.calls, "the reproduction no longer reaches the reader: update it"
    return ids


def test_a_backward_scan_racing_an_append_skips_the_unfinished_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # B was not acknowledged when the reader read it: only A is there to see.
    assert backward_read_races_an_append(tmp_path, monkeypatch) in (["A"], ["B", "A"])


def test_verify_racing_an_append_does_not_report_a_broken_chain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_json(tmp_path / "forward")
    for n in range(3):
        record_event(store=store, event="E", payload={"n": n}, actor="t", clock=utc_now)
    # The next audit line, half-way through its append: not acknowledged yet.
    last = next(e.record for e in store.scan_log(AUDIT_LOG))
    body = {
        "ts_utc": last["ts_utc"],
        "event": "E",
        "payload": {"pad": "c" * 6000},
        "seq": last["seq"] + 1,
        "actor": "t",
        "prev": last["hash"],
    }
    record = {**body, "hash": chain_hash(last["hash"], body)}
    path, rest = _half_appended(store, AUDIT_LOG, record)
    # verify reads the log in blocks (the bulk scan).
    racing = FinishTheAppend(json_store.iter_line_blocks, path, rest, at_end=True)
    monkeypatch.setattr(json_store, "iter_line_blocks", racing)
    result = verify_chain(store=store)
    assert racing.calls, "the reproduction no longer reaches the reader: update it"
    assert result.ok, result


def test_the_reproduction_fails_the_read_that_the_bug_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keeps the reproduction honest: without the race, the same data reads fine."""
    store = open_json(tmp_path / "plain")
    with store.transaction() as txn:
        txn.append_log(HISTORY, {"id": "A", "active": False})
    _half_appended(store, HISTORY, {"id": "B", "active": False, "pad": "b" * 6000})
    assert [e.record["id"] for e in store.scan_log(HISTORY)] == ["A"]
