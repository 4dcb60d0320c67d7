"""The JSON backend's kind index: filtered scans read only the lines they
return, and answer exactly what a scan of the whole log answers, whatever
state the derived index file is in (missing, torn, corrupt, stale, behind)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.storage.helpers import remount_read_only
from valhalla_gov.audit.store import AUDIT_LOG
from valhalla_gov.compose import open_json
from valhalla_gov.storage import json_index
from valhalla_gov.storage.encoding import canonical_bytes
from valhalla_gov.storage.errors import StorageCorruptError
from valhalla_gov.storage.json_backend import JsonStore

KINDS = ["GO_SESSION_START", "GO_SESSION_END", "go_session_start", "RARE", "ß✓", ""]
ABSENT = "NEVER_WRITTEN"


def append(store: JsonStore, *records: dict[str, Any]) -> None:
    with store.transaction() as txn:
        for record in records:
            txn.append_log(AUDIT_LOG, record)


def brute(store: JsonStore, kind: str) -> list[tuple[str, dict[str, Any]]]:
    """What a filtered scan must yield: the unfiltered scan, filtered here."""
    return [
        (e.cursor, e.record) for e in store.scan_log(AUDIT_LOG) if e.record.get("event") == kind
    ]


def filtered(store: JsonStore, kind: str, page: int) -> list[tuple[str, dict[str, Any]]]:
    """Every page of a filtered scan, each resumed from the last cursor."""
    out: list[tuple[str, dict[str, Any]]] = []
    cursor: str | None = None
    while True:
        got = []
        for entry in store.scan_log(AUDIT_LOG, before=cursor, kind=kind):
            got.append((entry.cursor, entry.record))
            if len(got) == page:
                break
        out += got
        if len(got) < page:
            return out
        cursor = got[-1][0]


def same_answers(store: JsonStore, page: int = 3) -> None:
    for kind in [*KINDS, ABSENT]:
        assert filtered(store, kind, page) == brute(store, kind), kind


_records = st.lists(
    st.one_of(
        st.builds(
            lambda kind, n: {"event": kind, "payload": {"n": n}, "seq": n},
            st.sampled_from(KINDS),
            st.integers(0, 10**6),
        ),
        # Legacy lines (no seq) and lines whose kind is no string, or missing.
        st.builds(lambda kind: {"event": kind, "ts_utc": "t"}, st.sampled_from(KINDS)),
        st.builds(lambda v: {"event": v}, st.one_of(st.none(), st.integers(), st.lists(st.none()))),
        st.just({"payload": {}}),
    ),
    max_size=40,
)

DAMAGES = ["none", "deleted", "truncated", "garbage", "zeros", "behind", "foreign", "shuffled"]


def damage(store: JsonStore, how: str, cut: int) -> None:
    """Do to the index file what a crash, a disk or a person may do."""
    log_path = store.log_path(AUDIT_LOG)
    path = json_index.sidecar_path(log_path)
    raw = path.read_bytes() if path.exists() else b""
    if how == "deleted":
        path.unlink(missing_ok=True)
    elif how == "truncated":
        path.write_bytes(raw[: cut % (len(raw) + 1)])
    elif how == "garbage":
        at = cut % (len(raw) + 1)
        path.write_bytes(raw[:at] + os.urandom(37) + raw[at + 37 :])
    elif how == "zeros":
        path.write_bytes(raw + b"\0" * (24 * (1 + cut % 3)))
    elif how == "behind":
        # A crash between the log append and the index append: lines the
        # index never heard of (written as the writer writes them).
        with open(log_path, "ab") as fh:
            for n in range(1 + cut % 4):
                fh.write(canonical_bytes({"event": KINDS[n % len(KINDS)], "late": n}) + b"\n")
    elif how == "foreign" and log_path.exists():
        # The log replaced by another one of the same length (a restore).
        lines = log_path.read_bytes().split(b"\n")[:-1]
        swapped = [line.replace(b'"GO_SESSION_START"', b'"GO_SESSION_END__"') for line in lines]
        log_path.write_bytes(b"".join(line + b"\n" for line in swapped))
    elif how == "shuffled":
        entries = [raw[i : i + 24] for i in range(24, len(raw), 24)]
        path.write_bytes(raw[:24] + b"".join(reversed(entries)))


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    records=_records,
    more=_records,
    blank_at=st.integers(0, 40),
    how=st.sampled_from(DAMAGES),
    cut=st.integers(0, 10**6),
    page=st.integers(1, 7),
)
def test_filtered_scans_answer_as_a_whole_scan(
    tmp_path_factory: pytest.TempPathFactory,
    records: list[dict[str, Any]],
    more: list[dict[str, Any]],
    blank_at: int,
    how: str,
    cut: int,
    page: int,
) -> None:
    data = tmp_path_factory.mktemp("data")
    store = open_json(data)
    append(store, *records[:blank_at])
    log_path = store.log_path(AUDIT_LOG)
    if records[:blank_at]:
        with open(log_path, "ab") as fh:
            fh.write(b"   \n\n")  # blank lines a person left: skipped by every scan
    append(store, *records[blank_at:])
    same_answers(store, page)  # warm: this store now holds the index in memory
    damage(store, how, cut)
    same_answers(store, page)  # the same store, which knew the index before
    same_answers(open_json(data), page)  # a new process
    append(store, *more)  # writers go on appending to whatever is there
    same_answers(store, page)
    same_answers(open_json(data), page)


def test_a_filtered_page_reads_only_its_lines(jstore: JsonStore) -> None:
    append(jstore, *({"event": "COMMON", "n": n} for n in range(3000)))
    append(jstore, {"event": "RARE", "n": 3000})
    append(jstore, *({"event": "COMMON", "n": n} for n in range(3001, 6000)))
    assert [e.record["n"] for e in jstore.scan_log(AUDIT_LOG, kind="RARE")] == [3000]
    assert list(jstore.scan_log(AUDIT_LOG, kind=ABSENT)) == []
    # Proof that the log itself is not walked: a corrupt line in the middle of
    # it goes unseen by filtered reads of other lines...
    path = jstore.log_path(AUDIT_LOG)
    raw = path.read_bytes()
    middle = raw.index(b'{"event":"COMMON","n":4000}')
    path.write_bytes(raw[:middle] + b"X" + raw[middle + 1 :])
    assert [e.record["n"] for e in jstore.scan_log(AUDIT_LOG, kind="RARE")] == [3000]
    # ...while the unfiltered scan meets it, as it always did.
    with pytest.raises(StorageCorruptError):
        list(jstore.scan_log(AUDIT_LOG))


def test_a_corrupt_log_line_fails_a_cold_filtered_scan_as_before(tmp_path: Path) -> None:
    store = open_json(tmp_path / "data")
    append(store, {"event": "A"}, {"event": "B"})
    path = store.log_path(AUDIT_LOG)
    json_index.sidecar_path(path).unlink()
    with open(path, "ab") as fh:
        fh.write(b"not json\n")
    append(store, {"event": "A"})
    # No index can be built over the bad line: the scan runs as before and
    # meets it (a clear error naming the file, never a wrong answer).
    entries = open_json(tmp_path / "data").scan_log(AUDIT_LOG, kind="B")
    with pytest.raises(StorageCorruptError, match=r"audit\.log"):
        list(entries)


def fail_after_an_append(store: JsonStore) -> None:
    with store.transaction() as txn:
        txn.append_log(AUDIT_LOG, {"event": "B", "n": 1})
        raise RuntimeError("the operation fails after its append")


def test_a_rolled_back_append_is_taken_out_of_the_index(jstore: JsonStore) -> None:
    append(jstore, {"event": "A", "n": 0})
    sidecar = json_index.sidecar_path(jstore.log_path(AUDIT_LOG))
    before = sidecar.read_bytes()
    with pytest.raises(RuntimeError, match="fails after"):
        fail_after_an_append(jstore)
    assert sidecar.read_bytes() == before
    append(jstore, {"event": "C", "n": 2})
    same_answers(jstore)
    assert [e.record["n"] for e in jstore.scan_log(AUDIT_LOG, kind="C")] == [2]
    assert list(jstore.scan_log(AUDIT_LOG, kind="B")) == []


def test_a_reader_rewrites_an_index_it_had_to_rebuild(tmp_path: Path) -> None:
    store = open_json(tmp_path / "data")
    append(store, *({"event": f"K{n % 5}", "pad": "x" * 200} for n in range(2000)))
    sidecar = json_index.sidecar_path(store.log_path(AUDIT_LOG))
    written = sidecar.read_bytes()
    assert len(written) == 24 + 24 * 2000  # one entry per line, after the header
    sidecar.unlink()
    reader = open_json(tmp_path / "data")
    assert len(list(reader.scan_log(AUDIT_LOG, kind="K3"))) == 400
    # Rebuilt from the log, byte for byte what the writer had written.
    assert sidecar.read_bytes() == written


@pytest.mark.parametrize("field", [0, 8, 16, 20], ids=["start", "end", "kind", "crc"])
def test_a_damaged_entry_is_never_read_as_another_line(tmp_path: Path, field: int) -> None:
    """One flipped byte in one entry (a bad sector, a stray write): the
    running CRC shows it, and the index is rebuilt from the log. Without the
    CRC a flipped kind would hide that line from its own event's filter."""
    store = open_json(tmp_path / "data")
    append(store, *({"event": "A", "n": n} for n in range(5)))
    sidecar = json_index.sidecar_path(store.log_path(AUDIT_LOG))
    raw = bytearray(sidecar.read_bytes())
    raw[24 + 2 * 24 + field] ^= 0x01
    sidecar.write_bytes(bytes(raw))
    fresh = open_json(tmp_path / "data")
    assert [e.record["n"] for e in fresh.scan_log(AUDIT_LOG, kind="A")] == [4, 3, 2, 1, 0]
    same_answers(fresh)


def test_a_read_only_data_dir_still_answers_filtered_reads(tiny_fs: Path) -> None:
    """The index cannot be written there: the reads still answer, from memory."""
    store = open_json(tiny_fs / "data")
    append(store, *({"event": "A" if n % 3 else "B", "pad": "x" * 50} for n in range(300)))
    # A damaged file, which a reader would rewrite (under the lock it cannot take).
    json_index.sidecar_path(store.log_path(AUDIT_LOG)).write_bytes(b"not an index")
    fresh = open_json(tiny_fs / "data")  # a server started before the remount
    remount_read_only(tiny_fs)
    assert len(list(fresh.scan_log(AUDIT_LOG, kind="B"))) == 100
    same_answers(fresh)
